import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// A KVM virtual machine descriptor: memory slots, vCPU creation, in-kernel devices.
public final class KVMVirtualMachine: @unchecked Sendable {
    /// The VM descriptor; closed on deinit (after every vCPU, which hold a reference to it).
    public let fd: Int32
    /// Kept alive so the vCPU mmap size and capability queries stay valid.
    public let system: KVMSystem

    init(fd: Int32, system: KVMSystem) {
        self.fd = fd
        self.system = system
    }

    deinit { close(fd) }

    /// Maps `size` bytes of host memory at `hostAddress` into guest-physical space at `guestAddress`.
    public func setUserMemoryRegion(slot: UInt32, guestAddress: UInt64, size: UInt64,
                                    hostAddress: UnsafeMutableRawPointer, readOnly: Bool = false) throws(KVMError) {
        var region = kvm_userspace_memory_region(
            slot: slot, flags: readOnly ? ckvm_KVM_MEM_READONLY() : 0,
            guest_phys_addr: guestAddress, memory_size: size,
            userspace_addr: UInt64(UInt(bitPattern: hostAddress)))
        _ = try withUnsafeMutablePointer(to: &region) { p throws(KVMError) in
            try Syscall.ioctl(fd, ckvm_KVM_SET_USER_MEMORY_REGION(), p, "KVM_SET_USER_MEMORY_REGION")
        }
    }

    /// Creates vCPU number `id` and maps its shared `kvm_run` page.
    public func createVCPU(id: UInt32) throws(KVMError) -> KVMVCPU {
        let vcpufd = try Syscall.ioctl(fd, ckvm_KVM_CREATE_VCPU(), value: UInt(id), "KVM_CREATE_VCPU")
        guard let run = mmap(nil, system.vcpuMmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, vcpufd, 0),
              run != MAP_FAILED else {
            let code = errno
            close(vcpufd)
            throw KVMError(operation: "mmap kvm_run", errno: code)
        }
        return KVMVCPU(fd: vcpufd, run: run, runSize: system.vcpuMmapSize, vm: self, id: id)
    }

    /// The TSS needs three pages below 4 GiB on Intel (KVM_SET_TSS_ADDR); harmless elsewhere.
    public func setTSSAddress(_ address: UInt64) throws(KVMError) {
        _ = try Syscall.ioctl(fd, ckvm_KVM_SET_TSS_ADDR(), value: UInt(address), "KVM_SET_TSS_ADDR")
    }
}
