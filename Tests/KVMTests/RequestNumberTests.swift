import CKVM
import Testing
@testable import KVM

/// Pins every ioctl request number we use to the value the Linux UAPI defines, so a header or
/// shim mistake shows up here instead of as EINVAL at run time.
@Suite struct RequestNumberTests {
    @Test(arguments: [
        ("KVM_GET_API_VERSION", ckvm_KVM_GET_API_VERSION(), UInt(0xAE00)),
        ("KVM_CREATE_VM", ckvm_KVM_CREATE_VM(), 0xAE01),
        ("KVM_CHECK_EXTENSION", ckvm_KVM_CHECK_EXTENSION(), 0xAE03),
        ("KVM_GET_VCPU_MMAP_SIZE", ckvm_KVM_GET_VCPU_MMAP_SIZE(), 0xAE04),
        ("KVM_GET_SUPPORTED_CPUID", ckvm_KVM_GET_SUPPORTED_CPUID(), 0xC008_AE05),
        ("KVM_CREATE_VCPU", ckvm_KVM_CREATE_VCPU(), 0xAE41),
        ("KVM_SET_USER_MEMORY_REGION", ckvm_KVM_SET_USER_MEMORY_REGION(), 0x4020_AE46),
        ("KVM_SET_TSS_ADDR", ckvm_KVM_SET_TSS_ADDR(), 0xAE47),
        ("KVM_CREATE_IRQCHIP", ckvm_KVM_CREATE_IRQCHIP(), 0xAE60),
        ("KVM_RUN", ckvm_KVM_RUN(), 0xAE80),
        ("KVM_GET_REGS", ckvm_KVM_GET_REGS(), 0x8090_AE81),
        ("KVM_SET_REGS", ckvm_KVM_SET_REGS(), 0x4090_AE82),
        ("KVM_GET_SREGS", ckvm_KVM_GET_SREGS(), 0x8138_AE83),
        ("KVM_SET_SREGS", ckvm_KVM_SET_SREGS(), 0x4138_AE84),
        ("KVM_SET_CPUID2", ckvm_KVM_SET_CPUID2(), 0x4008_AE90),
        ("KVM_GET_TSC_KHZ", ckvm_KVM_GET_TSC_KHZ(), 0xAEA3),
        // _IOW(0xAE, nr, size) = 0x4000_0000 | size << 16 | 0xAE << 8 | nr.
        // struct kvm_irq_routing: nr, flags (8 bytes; the entries are a flexible array).
        ("KVM_SET_GSI_ROUTING", ckvm_KVM_SET_GSI_ROUTING(), 0x4008_AE6A),
        // struct kvm_irqfd: fd, gsi, flags, resamplefd, pad[16] = 32 bytes.
        ("KVM_IRQFD", ckvm_KVM_IRQFD(), 0x4020_AE76),
        // struct kvm_ioeventfd: datamatch, addr (u64), len, fd, flags (u32), pad[36] = 64 bytes.
        ("KVM_IOEVENTFD", ckvm_KVM_IOEVENTFD(), 0x4040_AE79),
        // struct kvm_msi: address_lo, address_hi, data, flags, devid, pad[12] = 32 bytes.
        ("KVM_SIGNAL_MSI", ckvm_KVM_SIGNAL_MSI(), 0x4020_AEA5),
    ])
    func requestNumber(name: String, actual: UInt, expected: UInt) {
        #expect(actual == expected, "\(name)")
    }

    @Test func exitReasonsAndAPIVersion() {
        #expect(ckvm_KVM_API_VERSION() == 12)
        #expect(ckvm_KVM_EXIT_IO() == 2)
        #expect(ckvm_KVM_EXIT_HLT() == 5)
        #expect(ckvm_KVM_EXIT_MMIO() == 6)
        #expect(ckvm_KVM_EXIT_SHUTDOWN() == 8)
        #expect(ckvm_KVM_EXIT_INTERNAL_ERROR() == 17)
    }

    @Test func notifierFlagsAndCapabilities() {
        #expect(ckvm_KVM_CAP_IRQ_ROUTING() == 25)
        #expect(ckvm_KVM_CAP_IRQFD() == 32)
        #expect(ckvm_KVM_CAP_IOEVENTFD() == 36)
        #expect(ckvm_KVM_CAP_SIGNAL_MSI() == 77)
        #expect(ckvm_KVM_CAP_IRQFD_RESAMPLE() == 82)
        #expect(ckvm_KVM_CAP_IOEVENTFD_ANY_LENGTH() == 122)
        #expect(ckvm_KVM_IRQFD_FLAG_DEASSIGN() == 1)
        #expect(ckvm_KVM_IRQFD_FLAG_RESAMPLE() == 2)
        #expect(ckvm_KVM_IOEVENTFD_FLAG_DATAMATCH() == 1)
        #expect(ckvm_KVM_IOEVENTFD_FLAG_PIO() == 2)
        #expect(ckvm_KVM_IOEVENTFD_FLAG_DEASSIGN() == 4)
        #expect(ckvm_KVM_IRQ_ROUTING_IRQCHIP() == 1)
        #expect(ckvm_KVM_IRQ_ROUTING_MSI() == 2)
        #expect(ckvm_KVM_IRQCHIP_PIC_MASTER() == 0)
        #expect(ckvm_KVM_IRQCHIP_PIC_SLAVE() == 1)
        #expect(ckvm_KVM_IRQCHIP_IOAPIC() == 2)
        #expect(MemoryLayout<kvm_irqfd>.size == 32)
        #expect(MemoryLayout<kvm_ioeventfd>.size == 64)
        #expect(MemoryLayout<kvm_msi>.size == 32)
        #expect(ckvm_irq_routing_size(0) == 8)
        #expect(ckvm_irq_routing_size(2) == 8 + 2 * 48)
    }

    @Test func registerRoundTripThroughKVMStruct() {
        var r = X86Registers()
        for i in 0..<16 { r[gpr: i] = UInt64(i * 0x1111) }
        r.rip = 0x100000
        let back = X86Registers(r.kvm)
        #expect(back == r)
        #expect(back[gpr: 4] == back.rsp)
        #expect(back[gpr: 7] == back.rdi)
    }

    @Test func errorsReadAsOneLine() {
        let e = KVMError(operation: "open /dev/kvm", errno: 2, detail: "KVM is not available")
        #expect(e.description == "open /dev/kvm: No such file or directory: KVM is not available")
    }

    @Test func missingDeviceIsATypedError() {
        #expect(throws: KVMError.self) { try KVMSystem(path: "/nonexistent/kvm") }
    }
}
