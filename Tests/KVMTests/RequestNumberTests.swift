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
