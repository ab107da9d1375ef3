import Hypervisor

/// The CPUID and MSR values a Linux guest gets, derived from what KVM supports.
enum LinuxCPUID {
    /// IA32_MISC_ENABLE with fast-string operations on, as firmware leaves it.
    static let initialMSRs: [(index: UInt32, value: UInt64)] = [(0x1A0, 1)]

    /// KVM's supported leaves, adjusted per vCPU: APIC IDs, topology counts, the hypervisor bit,
    /// and the TSC-deadline bit when KVM can emulate it but does not list it (nested KVM often
    /// does not; without it the guest arms a timer mode KVM drops and waits forever).
    static func leaves(from supported: [CPUIDLeaf], vcpuIndex: Int, vcpuCount: Int, tscDeadline: Bool) -> [CPUIDLeaf] {
        supported.map { leaf in
            var l = leaf
            switch l.function {
            case 1:
                l.ebx = (l.ebx & 0x0000_FFFF) | UInt32(vcpuIndex & 0xFF) << 24 | UInt32(min(vcpuCount, 255)) << 16
                l.ecx |= 1 << 31 // running under a hypervisor
                if tscDeadline { l.ecx |= 1 << 24 }
                if vcpuCount > 1 { l.edx |= 1 << 28 } else { l.edx &= ~(1 << 28) }
            case 0xB, 0x1F:
                l.edx = UInt32(vcpuIndex) // x2APIC ID
            case 0x8000_0008:
                l.ecx = (l.ecx & ~0xFF) | UInt32(max(vcpuCount - 1, 0) & 0xFF)
            default:
                break
            }
            return l
        }
    }
}
