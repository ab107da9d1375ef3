import VMSpec
import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// Which bus a KVM_IOEVENTFD registration watches.
public enum IOEventSpace: Equatable, Sendable {
    /// Guest-physical memory writes (a trapped MMIO page).
    case mmio
    /// x86 port I/O (`out`).
    case pio
}

/// One of the in-kernel interrupt controllers KVM_CREATE_IRQCHIP made (x86).
public enum IRQChip: Equatable, Sendable {
    case picMaster, picSlave, ioapic

    var number: UInt32 {
        switch self {
        case .picMaster: ckvm_KVM_IRQCHIP_PIC_MASTER()
        case .picSlave: ckvm_KVM_IRQCHIP_PIC_SLAVE()
        case .ioapic: ckvm_KVM_IRQCHIP_IOAPIC()
        }
    }
}

/// One entry of a GSI routing table (`struct kvm_irq_routing_entry`): where raising `gsi` goes.
public enum GSIRoute: Equatable, Sendable {
    /// Input `pin` of an in-kernel interrupt controller. A GSI may have several irqchip routes
    /// (GSIs 0-15 drive both a PIC pin and an IOAPIC pin).
    case irqchip(gsi: UInt32, chip: IRQChip, pin: UInt32)
    /// An MSI message: a write of `data` to `address` (x86: 0xFEEx_xxxx, destination in the
    /// address, vector and delivery mode in the data). At most one route per GSI.
    case msi(gsi: UInt32, address: UInt64, data: UInt32)

    public var gsi: UInt32 {
        switch self {
        case .irqchip(let gsi, _, _), .msi(let gsi, _, _): gsi
        }
    }

    /// The x86 table KVM installs at KVM_CREATE_IRQCHIP: GSIs 0-15 to IOAPIC pin = GSI and to PIC
    /// pin GSI % 8 (master for 0-7, slave for 8-15); GSIs 16-23 to the IOAPIC only. 40 entries.
    /// KVM_SET_GSI_ROUTING replaces the whole table, so a caller adding routes must resend these.
    public static let pcDefaults: [GSIRoute] = (0..<24).flatMap { (gsi: UInt32) -> [GSIRoute] in
        let ioapic = GSIRoute.irqchip(gsi: gsi, chip: .ioapic, pin: gsi)
        guard gsi < 16 else { return [ioapic] }
        return [ioapic, .irqchip(gsi: gsi, chip: gsi < 8 ? .picMaster : .picSlave, pin: gsi % 8)]
    }

    /// Most entries one KVM_SET_GSI_ROUTING call takes here (a Swiftlet bound; KVM allows more).
    public static var maximumTableSize: Int { Int(ckvm_MAX_GSI_ROUTES()) }
}

extension KVMVirtualMachine {
    // MARK: irqfd

    /// Makes every write to eventfd `eventFD` raise `gsi` (KVM_IRQFD): an edge on the irqchip pin or
    /// the MSI that the GSI routing table names. Needs the in-kernel irqchip. With `resampleFD`, the
    /// GSI is level-triggered instead: it stays asserted until the guest EOIs it, then KVM lowers it
    /// and signals `resampleFD` so the device can re-raise it if still pending (needs
    /// `.irqfdResample`, irqchip routes only). Closing `eventFD` also detaches it.
    public func assignIRQFD(_ eventFD: Int32, gsi: UInt32, resampleFD: Int32? = nil) throws(KVMError) {
        var request = kvm_irqfd()
        request.fd = UInt32(bitPattern: eventFD)
        request.gsi = gsi
        if let resampleFD {
            request.flags = ckvm_KVM_IRQFD_FLAG_RESAMPLE()
            request.resamplefd = UInt32(bitPattern: resampleFD)
        }
        _ = try Syscall.ioctl(fd, ckvm_KVM_IRQFD(), &request, "KVM_IRQFD")
    }

    /// Undoes `assignIRQFD` for the same eventfd and GSI (KVM_IRQFD with KVM_IRQFD_FLAG_DEASSIGN).
    /// `eventFD` must still be open.
    public func deassignIRQFD(_ eventFD: Int32, gsi: UInt32) throws(KVMError) {
        var request = kvm_irqfd()
        request.fd = UInt32(bitPattern: eventFD)
        request.gsi = gsi
        request.flags = ckvm_KVM_IRQFD_FLAG_DEASSIGN()
        _ = try Syscall.ioctl(fd, ckvm_KVM_IRQFD(), &request, "KVM_IRQFD deassign")
    }

    // MARK: ioeventfd

    /// Makes a guest write of `length` bytes (1, 2, 4 or 8; 0 = any size, needs
    /// `.ioeventfdAnyLength`) to `address` signal eventfd `eventFD` instead of exiting to user space
    /// (KVM_IOEVENTFD). With `datamatch`, only writes of exactly that value match (needs a nonzero
    /// length, and the value must fit in it). The written data itself is not kept; the guest does
    /// not wait. Closing `eventFD` does not detach it: call `deassignIOEventFD`.
    public func assignIOEventFD(_ eventFD: Int32, address: UInt64, length: Int, space: IOEventSpace,
                                datamatch: UInt64? = nil) throws(KVMError) {
        var request = try Self.ioeventfd(eventFD, address: address, length: length, space: space, datamatch: datamatch)
        _ = try Syscall.ioctl(fd, ckvm_KVM_IOEVENTFD(), &request, "KVM_IOEVENTFD")
    }

    /// Undoes `assignIOEventFD`; every argument must equal the one it was assigned with.
    public func deassignIOEventFD(_ eventFD: Int32, address: UInt64, length: Int, space: IOEventSpace,
                                  datamatch: UInt64? = nil) throws(KVMError) {
        var request = try Self.ioeventfd(eventFD, address: address, length: length, space: space, datamatch: datamatch)
        request.flags |= ckvm_KVM_IOEVENTFD_FLAG_DEASSIGN()
        _ = try Syscall.ioctl(fd, ckvm_KVM_IOEVENTFD(), &request, "KVM_IOEVENTFD deassign")
    }

    /// A checked `struct kvm_ioeventfd`; rejects what KVM would answer with a bare EINVAL.
    static func ioeventfd(_ eventFD: Int32, address: UInt64, length: Int, space: IOEventSpace,
                          datamatch: UInt64?) throws(KVMError) -> kvm_ioeventfd {
        guard [0, 1, 2, 4, 8].contains(length) else {
            throw KVMError(operation: "KVM_IOEVENTFD", errno: 0, detail: "length \(length) is not 0, 1, 2, 4 or 8")
        }
        guard length == 0 || address <= UInt64.max - UInt64(length - 1) else {
            throw KVMError(operation: "KVM_IOEVENTFD", errno: 0, detail: "address \(address.hexString) + \(length) overflows")
        }
        if space == .pio, address > 0xFFFF || (length > 0 && address + UInt64(length) > 0x1_0000) {
            throw KVMError(operation: "KVM_IOEVENTFD", errno: 0, detail: "port \(address.hexString) (+\(length)) is outside 0...0xFFFF")
        }
        var request = kvm_ioeventfd()
        request.addr = address
        request.len = UInt32(length)
        request.fd = eventFD
        if space == .pio { request.flags |= ckvm_KVM_IOEVENTFD_FLAG_PIO() }
        if let datamatch {
            guard length > 0 else {
                throw KVMError(operation: "KVM_IOEVENTFD", errno: 0, detail: "datamatch needs a nonzero length")
            }
            guard length == 8 || datamatch >> UInt64(length * 8) == 0 else {
                throw KVMError(operation: "KVM_IOEVENTFD", errno: 0, detail: "datamatch \(datamatch.hexString) does not fit in \(length) bytes")
            }
            request.flags |= ckvm_KVM_IOEVENTFD_FLAG_DATAMATCH()
            request.datamatch = datamatch
        }
        return request
    }

    // MARK: MSI

    /// Injects one MSI message (KVM_SIGNAL_MSI). True when KVM delivered it to at least one vCPU;
    /// false when the guest blocked it (its local APIC is software-disabled or refused it) or no
    /// vCPU's APIC matches the destination. Needs the in-kernel local APICs. Safe from any thread.
    public func signalMSI(address: UInt64, data: UInt32) throws(KVMError) -> Bool {
        var message = kvm_msi()
        message.address_lo = UInt32(truncatingIfNeeded: address)
        message.address_hi = UInt32(truncatingIfNeeded: address >> 32)
        message.data = data
        do {
            return try Syscall.ioctl(fd, ckvm_KVM_SIGNAL_MSI(), &message, "KVM_SIGNAL_MSI") > 0
        } catch where error.errno == EPERM {
            // x86 KVM returns its APIC delivery result as is: -1 ("no destination matched") reaches
            // user space as EPERM. That is "not delivered", not a failure of the call.
            return false
        }
    }

    // MARK: GSI routing

    /// Replaces the whole GSI routing table (KVM_SET_GSI_ROUTING): GSIs not listed stop reaching
    /// anything, including the irqchip defaults, so include `GSIRoute.pcDefaults` to keep the PC
    /// wiring. Needs the in-kernel irqchip. irqfds follow the new table at once.
    public func setGSIRouting(_ routes: [GSIRoute]) throws(KVMError) {
        let table = try GSIRoutingTable(routes)
        _ = try Syscall.ioctl(fd, ckvm_KVM_SET_GSI_ROUTING(), table.raw, "KVM_SET_GSI_ROUTING")
    }
}

/// A `struct kvm_irq_routing` with its flexible array of entries, filled by the C shim from
/// parallel arrays (the entries are unions Swift reaches poorly). Freed on deinit.
final class GSIRoutingTable {
    let raw: UnsafeMutableRawPointer
    let count: Int

    init(_ routes: [GSIRoute]) throws(KVMError) {
        guard routes.count <= GSIRoute.maximumTableSize else {
            throw KVMError(operation: "KVM_SET_GSI_ROUTING", errno: 0,
                           detail: "\(routes.count) routes, at most \(GSIRoute.maximumTableSize)")
        }
        var gsis: [UInt32] = [], types: [UInt32] = [], chips: [UInt32] = [], pins: [UInt32] = []
        var addresses: [UInt64] = [], datas: [UInt32] = []
        for route in routes {
            gsis.append(route.gsi)
            switch route {
            case .irqchip(_, let chip, let pin):
                types.append(ckvm_KVM_IRQ_ROUTING_IRQCHIP()); chips.append(chip.number); pins.append(pin)
                addresses.append(0); datas.append(0)
            case .msi(_, let address, let data):
                types.append(ckvm_KVM_IRQ_ROUTING_MSI()); chips.append(0); pins.append(0)
                addresses.append(address); datas.append(data)
            }
        }
        count = routes.count
        let size = Int(ckvm_irq_routing_size(UInt32(count)))
        raw = .allocate(byteCount: size, alignment: 8)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        let filled = ckvm_irq_routing_fill(raw.assumingMemoryBound(to: kvm_irq_routing.self), UInt32(count),
                                           gsis, types, chips, pins, addresses, datas)
        guard filled == 0 else {
            raw.deallocate()
            throw KVMError(operation: "KVM_SET_GSI_ROUTING", errno: 0, detail: "could not build the routing table")
        }
    }

    deinit { raw.deallocate() }

    /// Entry `i` as the C shim wrote it (for tests).
    func entry(_ i: Int) -> (gsi: UInt32, type: UInt32, chip: UInt32, pin: UInt32, address: UInt64, data: UInt32) {
        var gsi: UInt32 = 0, type: UInt32 = 0, chip: UInt32 = 0, pin: UInt32 = 0, data: UInt32 = 0
        var address: UInt64 = 0
        ckvm_irq_routing_entry_at(raw.assumingMemoryBound(to: kvm_irq_routing.self), UInt32(i),
                                  &gsi, &type, &chip, &pin, &address, &data)
        return (gsi, type, chip, pin, address, data)
    }

    /// The `nr` field the kernel will read.
    var declaredCount: UInt32 { raw.assumingMemoryBound(to: kvm_irq_routing.self).pointee.nr }
}

