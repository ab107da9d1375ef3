import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A lock for critical sections of a few instructions on hot paths (the C ABI's handle lookup,
/// twice per exit). Uncontended it is one compare-exchange and one store; `Mutex` also asks for
/// the thread id, which in a shared library that links the Swift runtime in is a general-dynamic
/// TLS access (__tls_get_addr) on every lock. A waiter spins briefly, then yields the CPU, so a
/// holder preempted on a busy host is not starved by its waiters.
public struct SpinLock: ~Copyable, @unchecked Sendable {
    @usableFromInline let held = Atomic<Bool>(false)

    public init() {}

    @inlinable @inline(__always)
    public borrowing func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lock()
        defer { unlock() }
        return try body()
    }

    @inlinable @inline(__always)
    borrowing func lock() {
        if !held.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged { wait() }
    }

    @usableFromInline
    borrowing func wait() {
        var spins = 0
        while !held.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
            spins += 1
            if spins >= 64 {
                sched_yield()
                spins = 0
            }
        }
    }

    @inlinable @inline(__always)
    borrowing func unlock() { held.store(false, ordering: .releasing) }
}
