import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// An open /dev/kvm: API version and capability queries, and the factory for virtual machines.
public final class KVMSystem: @unchecked Sendable {
    /// Kernel capabilities Swiftlet relies on; checked once at open so failures name what is missing.
    public enum Capability: Sendable, CaseIterable {
        case userMemory, immediateExit, tscKHz, nrVCPUs, maxVCPUs, nrMemslots, tscDeadlineTimer, irqchip
        /// KVM_SET_GSI_ROUTING; the value is the number of GSIs a routing table may name.
        case irqRouting
        /// KVM_IRQFD: an eventfd write raises a GSI without a trip through user space.
        case irqfd
        /// KVM_IRQFD_FLAG_RESAMPLE: level-triggered irqfds with an EOI notification eventfd.
        case irqfdResample
        /// KVM_IOEVENTFD: a guest write to an address signals an eventfd instead of exiting.
        case ioeventfd
        /// KVM_IOEVENTFD with length 0 (match the address whatever the access size).
        case ioeventfdAnyLength
        /// KVM_SIGNAL_MSI: inject one MSI message directly.
        case signalMSI

        var number: Int32 {
            switch self {
            case .userMemory: ckvm_KVM_CAP_USER_MEMORY()
            case .immediateExit: ckvm_KVM_CAP_IMMEDIATE_EXIT()
            case .tscKHz: ckvm_KVM_CAP_GET_TSC_KHZ()
            case .nrVCPUs: ckvm_KVM_CAP_NR_VCPUS()
            case .maxVCPUs: ckvm_KVM_CAP_MAX_VCPUS()
            case .nrMemslots: ckvm_KVM_CAP_NR_MEMSLOTS()
            case .tscDeadlineTimer: ckvm_KVM_CAP_TSC_DEADLINE_TIMER()
            case .irqchip: ckvm_KVM_CAP_IRQCHIP()
            case .irqRouting: ckvm_KVM_CAP_IRQ_ROUTING()
            case .irqfd: ckvm_KVM_CAP_IRQFD()
            case .irqfdResample: ckvm_KVM_CAP_IRQFD_RESAMPLE()
            case .ioeventfd: ckvm_KVM_CAP_IOEVENTFD()
            case .ioeventfdAnyLength: ckvm_KVM_CAP_IOEVENTFD_ANY_LENGTH()
            case .signalMSI: ckvm_KVM_CAP_SIGNAL_MSI()
            }
        }
    }

    /// The descriptor of /dev/kvm; closed on deinit.
    public let fd: Int32
    /// Size of the per-vCPU shared `kvm_run` mapping.
    public let vcpuMmapSize: Int

    /// Opens the KVM device and checks the API version and the capabilities every Swiftlet VM needs.
    public init(path: String = "/dev/kvm") throws(KVMError) {
        let fd: Int32
        do {
            fd = try Syscall.open(path, O_RDWR)
        } catch {
            var e = error
            if e.errno == ENOENT { e.detail = "KVM is not available on this host (is the kvm module loaded?)" }
            if e.errno == EACCES { e.detail = "no permission (run as root or join the kvm group)" }
            throw e
        }
        self.fd = fd
        do throws(KVMError) {
            let version = try Syscall.ioctl(fd, ckvm_KVM_GET_API_VERSION(), value: 0, "KVM_GET_API_VERSION")
            guard version == ckvm_KVM_API_VERSION() else {
                throw KVMError(operation: "KVM_GET_API_VERSION", errno: 0,
                               detail: "unsupported KVM API version \(version), need \(ckvm_KVM_API_VERSION())")
            }
            for needed in [Capability.userMemory, .immediateExit] where try Self.check(fd, needed) <= 0 {
                throw KVMError(operation: "KVM_CHECK_EXTENSION", errno: 0, detail: "this KVM lacks \(needed)")
            }
            vcpuMmapSize = Int(try Syscall.ioctl(fd, ckvm_KVM_GET_VCPU_MMAP_SIZE(), value: 0, "KVM_GET_VCPU_MMAP_SIZE"))
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    private static func check(_ fd: Int32, _ cap: Capability) throws(KVMError) -> Int32 {
        try Syscall.ioctl(fd, ckvm_KVM_CHECK_EXTENSION(), value: UInt(cap.number), "KVM_CHECK_EXTENSION")
    }

    /// The value KVM_CHECK_EXTENSION reports: 0 when absent, else capability-specific (often a count).
    public func capability(_ cap: Capability) throws(KVMError) -> Int32 {
        try Self.check(fd, cap)
    }

    /// The CPUID leaves this KVM can expose to guests (KVM_GET_SUPPORTED_CPUID).
    public func supportedCPUID() throws(KVMError) -> [CPUIDEntry] {
        let buffer = CPUIDBuffer(capacity: UInt32(ckvm_KVM_MAX_CPUID_ENTRIES()))
        _ = try Syscall.ioctl(fd, ckvm_KVM_GET_SUPPORTED_CPUID(), buffer.raw, "KVM_GET_SUPPORTED_CPUID")
        return buffer.entries
    }

    /// Creates an empty virtual machine (KVM_CREATE_VM).
    public func createVM() throws(KVMError) -> KVMVirtualMachine {
        let vmfd = try Syscall.ioctl(fd, ckvm_KVM_CREATE_VM(), value: 0, "KVM_CREATE_VM")
        return KVMVirtualMachine(fd: vmfd, system: self)
    }
}

/// A zeroed `struct kvm_cpuid2` with room for `capacity` entries (a flexible array member),
/// converting to and from `CPUIDEntry`. Freed on deinit.
final class CPUIDBuffer {
    let raw: UnsafeMutableRawPointer
    private let cpuid: UnsafeMutablePointer<kvm_cpuid2>

    init(capacity: UInt32) {
        let size = Int(ckvm_cpuid2_size(capacity))
        raw = .allocate(byteCount: size, alignment: 8)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        cpuid = raw.assumingMemoryBound(to: kvm_cpuid2.self)
        cpuid.pointee.nent = capacity
    }

    convenience init(_ entries: [CPUIDEntry]) {
        self.init(capacity: UInt32(entries.count))
        let out = ckvm_cpuid2_entries(cpuid)!
        for (i, e) in entries.enumerated() {
            out[i].function = e.function; out[i].index = e.index; out[i].flags = e.flags
            out[i].eax = e.eax; out[i].ebx = e.ebx; out[i].ecx = e.ecx; out[i].edx = e.edx
        }
    }

    deinit { raw.deallocate() }

    var entries: [CPUIDEntry] {
        let e = ckvm_cpuid2_entries(cpuid)!
        return (0..<Int(cpuid.pointee.nent)).map { i in
            CPUIDEntry(function: e[i].function, index: e[i].index, flags: e[i].flags,
                       eax: e[i].eax, ebx: e[i].ebx, ecx: e[i].ecx, edx: e[i].edx)
        }
    }
}
