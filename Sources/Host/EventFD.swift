import CHost
#if canImport(Glibc)
import Glibc
#endif

/// An owned eventfd (close-on-exec, non-blocking): a 64-bit counter one side adds to and the other
/// reads and resets, readable in epoll while nonzero. Cheap enough to signal per request, and KVM
/// can signal it (ioeventfd) or consume it (irqfd) without a user-space round trip. Signalling and
/// draining are safe from any thread; the descriptor closes on deinit.
public final class EventFD: @unchecked Sendable {
    /// The descriptor, for epoll and for KVM_IRQFD/KVM_IOEVENTFD. Valid while this object lives.
    public let fd: Int32
    /// Whether `drain()` takes 1 at a time (EFD_SEMAPHORE) rather than the whole count.
    public let isSemaphore: Bool

    /// Creates an eventfd whose counter starts at `initialValue`.
    public init(semaphore: Bool = false, initialValue: UInt32 = 0) throws(HostError) {
        let result = chost_eventfd_create(initialValue, semaphore ? 1 : 0)
        guard result >= 0 else { throw HostError("eventfd", errno: -result) }
        fd = result
        isSemaphore = semaphore
    }

    deinit { close(fd) }

    /// Adds 1 to the counter, waking a reader. When the counter is already at its maximum
    /// (0xFFFF_FFFF_FFFF_FFFE) the write would block; that case is dropped, since a wake-up is
    /// pending anyway. Never blocks.
    @inline(__always)
    public func signal() {
        _ = chost_eventfd_add(fd, 1)
    }

    /// Reads the counter and resets it to zero (semaphore mode: takes 1). Nil when it was zero
    /// (EAGAIN), so a spurious wake-up costs one syscall. Never blocks.
    @inline(__always)
    public func drain() -> UInt64? {
        var value: UInt64 = 0
        return chost_eventfd_take(fd, &value) == 0 ? value : nil
    }
}
