import CKVM
import Glibc
import Testing
@testable import KVM

/// The KVM notifier wrappers: struct building without a VM, then the ioctls on this machine's
/// /dev/kvm (skipped without one).
@Suite struct KVMNotifierTests {
    static let hasKVM = access("/dev/kvm", R_OK | W_OK) == 0

    @Test func routingTableIsBuiltFromParallelArrays() throws {
        let table = try GSIRoutingTable([
            .irqchip(gsi: 9, chip: .picSlave, pin: 1),
            .msi(gsi: 30, address: 0x1_FEE0_1000, data: 0x4041),
        ])
        #expect(table.declaredCount == 2)
        let first = table.entry(0)
        #expect(first.gsi == 9 && first.type == ckvm_KVM_IRQ_ROUTING_IRQCHIP())
        #expect(first.chip == ckvm_KVM_IRQCHIP_PIC_SLAVE() && first.pin == 1)
        let second = table.entry(1)
        #expect(second.gsi == 30 && second.type == ckvm_KVM_IRQ_ROUTING_MSI())
        #expect(second.address == 0x1_FEE0_1000 && second.data == 0x4041)
    }

    @Test func routingTableRejectsTooManyEntries() {
        let routes = (0...UInt32(GSIRoute.maximumTableSize)).map { GSIRoute.msi(gsi: $0, address: 0xFEE0_0000, data: 0) }
        #expect(throws: KVMError.self) { try GSIRoutingTable(routes) }
    }

    @Test func pcDefaultsMatchKVMCreateIRQChip() {
        let d = GSIRoute.pcDefaults
        #expect(d.count == 40)
        #expect(d.filter { $0 == .irqchip(gsi: 0, chip: .ioapic, pin: 0) }.count == 1)
        #expect(d.contains(.irqchip(gsi: 7, chip: .picMaster, pin: 7)))
        #expect(d.contains(.irqchip(gsi: 12, chip: .picSlave, pin: 4)))
        #expect(d.contains(.irqchip(gsi: 23, chip: .ioapic, pin: 23)))
        #expect(!d.contains { if case .irqchip(gsi: 16, chip: .picSlave, _) = $0 { true } else { false } })
    }

    @Test(arguments: [
        (3, IOEventSpace.mmio, UInt64(0xD000_0000), UInt64?.none),   // bad length
        (2, .pio, 0xFFFF, nil),                                     // port range crosses 0xFFFF
        (4, .pio, 0x1_0000, nil),                                   // not a port
        (8, .mmio, UInt64.max - 3, nil),                            // address overflows
        (0, .mmio, 0xD000_0000, 1),                                 // datamatch without length
        (1, .pio, 0x510, 0x100),                                    // datamatch wider than length
    ])
    func ioeventfdArgumentsAreChecked(length: Int, space: IOEventSpace, address: UInt64, datamatch: UInt64?) {
        #expect(throws: KVMError.self) {
            try KVMVirtualMachine.ioeventfd(3, address: address, length: length, space: space, datamatch: datamatch)
        }
    }

    @Test func ioeventfdStructFlags() throws {
        let r = try KVMVirtualMachine.ioeventfd(7, address: 0x510, length: 2, space: .pio, datamatch: 0xBEEF)
        #expect(r.fd == 7 && r.addr == 0x510 && r.len == 2 && r.datamatch == 0xBEEF)
        #expect(r.flags == ckvm_KVM_IOEVENTFD_FLAG_PIO() | ckvm_KVM_IOEVENTFD_FLAG_DATAMATCH())
        let m = try KVMVirtualMachine.ioeventfd(7, address: 0xD000_0000, length: 8, space: .mmio, datamatch: .max)
        #expect(m.flags == ckvm_KVM_IOEVENTFD_FLAG_DATAMATCH())
    }

    @Test(.enabled(if: hasKVM, "needs a usable /dev/kvm"))
    func notifierIoctlsOnThisKVM() throws {
        let system = try KVMSystem()
        for cap in [KVMSystem.Capability.irqfd, .ioeventfd, .signalMSI, .irqRouting] {
            #expect(try system.capability(cap) > 0, "\(cap)")
        }
        let vm = try system.createVM()
        try vm.createIRQChip()
        let efd = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        #expect(efd >= 0)
        defer { close(efd) }

        try vm.assignIRQFD(efd, gsi: 5)
        #expect(throws: KVMError.self) { try vm.assignIRQFD(efd, gsi: 5) } // EBUSY: same eventfd twice
        try vm.deassignIRQFD(efd, gsi: 5)

        try vm.assignIOEventFD(efd, address: 0x510, length: 2, space: .pio, datamatch: 1)
        try vm.assignIOEventFD(efd, address: 0xD000_0000, length: 4, space: .mmio)
        #expect(throws: KVMError.self) { try vm.assignIOEventFD(efd, address: 0xD000_0000, length: 4, space: .mmio) }
        try vm.deassignIOEventFD(efd, address: 0x510, length: 2, space: .pio, datamatch: 1)
        try vm.deassignIOEventFD(efd, address: 0xD000_0000, length: 4, space: .mmio)
        #expect(throws: KVMError.self) { try vm.deassignIOEventFD(efd, address: 0xD000_0000, length: 4, space: .mmio) }

        try vm.setGSIRouting(GSIRoute.pcDefaults + [.msi(gsi: 24, address: 0xFEE0_0000, data: 0x30)])
        try vm.assignIRQFD(efd, gsi: 24)
        try vm.deassignIRQFD(efd, gsi: 24)
        try vm.setGSIRouting(GSIRoute.pcDefaults)
        // No vCPU, so no APIC matches: not delivered (KVM's -1 arrives as EPERM).
        #expect(try vm.signalMSI(address: 0xFEE0_0000, data: 0x30) == false)
        // A vCPU whose APIC the guest never software-enabled blocks it.
        let vcpu = try vm.createVCPU(id: 0)
        #expect(try vm.signalMSI(address: 0xFEE0_0000, data: 0x30) == false)
        _ = vcpu
    }

    @Test(.enabled(if: hasKVM, "needs a usable /dev/kvm"))
    func irqchipNotifiersNeedTheInKernelIrqchip() throws {
        let vm = try KVMSystem().createVM()
        let efd = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        defer { close(efd) }
        #expect(throws: KVMError.self) { try vm.setGSIRouting(GSIRoute.pcDefaults) }
        #expect(throws: KVMError.self) { try vm.signalMSI(address: 0xFEE0_0000, data: 0x30) }
        // ioeventfds need no irqchip.
        try vm.assignIOEventFD(efd, address: 0x510, length: 1, space: .pio)
        try vm.deassignIOEventFD(efd, address: 0x510, length: 1, space: .pio)
    }
}
