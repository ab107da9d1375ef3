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

    /// Empties memory slot `slot` (KVM deletes a slot given size 0).
    public func deleteUserMemoryRegion(slot: UInt32) throws(KVMError) {
        var region = kvm_userspace_memory_region(slot: slot, flags: 0, guest_phys_addr: 0, memory_size: 0, userspace_addr: 0)
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

    /// Creates the in-kernel interrupt controllers: PIC pair, IOAPIC and a local APIC per vCPU.
    /// Must precede vCPU creation.
    public func createIRQChip() throws(KVMError) {
        _ = try Syscall.ioctl(fd, ckvm_KVM_CREATE_IRQCHIP(), value: 0, "KVM_CREATE_IRQCHIP")
    }

    /// Creates the in-kernel i8254 PIT (timer on IRQ 0).
    public func createPIT() throws(KVMError) {
        while ckvm_create_pit2(fd) < 0 {
            if errno == EINTR { continue }
            throw KVMError(operation: "KVM_CREATE_PIT2", errno: errno)
        }
    }

    /// Drives interrupt line `irq` (ISA IRQ / GSI) of the in-kernel irqchip. Safe from any thread.
    @inline(__always)
    public func setIRQLine(_ irq: UInt32, level: Bool) throws(KVMError) {
        guard ckvm_irq_line(fd, irq, level ? 1 : 0) >= 0 else { throw KVMError(operation: "KVM_IRQ_LINE", errno: errno) }
    }

    /// Where KVM may place the real-mode identity page table it needs on Intel (one page).
    public func setIdentityMapAddress(_ address: UInt64) throws(KVMError) {
        var a = address
        _ = try Syscall.ioctl(fd, ckvm_KVM_SET_IDENTITY_MAP_ADDR(), &a, "KVM_SET_IDENTITY_MAP_ADDR")
    }

    /// The TSS needs three pages below 4 GiB on Intel (KVM_SET_TSS_ADDR); harmless elsewhere.
    public func setTSSAddress(_ address: UInt64) throws(KVMError) {
        _ = try Syscall.ioctl(fd, ckvm_KVM_SET_TSS_ADDR(), value: UInt(address), "KVM_SET_TSS_ADDR")
    }
}
