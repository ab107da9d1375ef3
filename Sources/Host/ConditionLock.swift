#if canImport(Glibc)
import Glibc
#endif

/// State guarded by a mutex, with a condition variable to wait on until it changes (pthread):
/// for long, blocking waits of OS threads (a vCPU parked while its VM is paused), where a spin or
/// an eventfd per waiter would be wrong.
public final class ConditionLock<State>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var state: State

    public init(_ initial: State) {
        state = initial
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    /// Runs `body` with the state locked.
    public func withLock<T>(_ body: (inout State) -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body(&state)
    }

    /// Runs `body` with the state locked, then wakes every waiter to look at it again.
    public func withLockBroadcasting<T>(_ body: (inout State) -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_cond_broadcast(condition); pthread_mutex_unlock(mutex) }
        return body(&state)
    }

    /// Waits (the lock released meanwhile) until `ready` holds, then runs `body` with the lock held.
    public func wait<T>(until ready: (State) -> Bool, then body: (inout State) -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !ready(state) { pthread_cond_wait(condition, mutex) }
        return body(&state)
    }
}
