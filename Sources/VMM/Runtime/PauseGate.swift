import Hypervisor
#if canImport(Glibc)
import Glibc
#endif

/// Parks vCPU threads for `PATCH /vm {"state": "Paused"}`. The API thread asks for a pause and
/// kicks every vCPU; each vCPU thread, back from KVM_RUN with `.kicked`, parks here until resumed
/// or released (the VM is stopping). `pause` returns once all vCPUs are parked, so a paused VM
/// really runs no guest code. A pthread mutex and condition: the waits are long and blocking.
final class PauseGate: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var pauseRequested = false
    private var released = false
    private var parked = 0

    init() {
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

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// Asks vCPUs to park; the caller kicks them, then calls `waitUntilParked`.
    func requestPause() { locked { pauseRequested = true } }

    /// Waits until `count` vCPUs are parked or the gate is released. Returns whether all parked.
    func waitUntilParked(count: Int) -> Bool {
        locked {
            while parked < count && !released { pthread_cond_wait(condition, mutex) }
            return parked >= count
        }
    }

    /// Whether a pause is asked for (the vCPUs are parked or about to be).
    var isPaused: Bool { locked { pauseRequested } }

    /// Lets parked vCPUs go back to the guest.
    func resume() {
        locked {
            pauseRequested = false
            pthread_cond_broadcast(condition)
        }
    }

    /// Ends every wait for good: the VM is stopping.
    func release() {
        locked {
            released = true
            pthread_cond_broadcast(condition)
        }
    }

    /// The `.kicked` exit of every exit loop: false when the VM is stopping; otherwise parks while
    /// a pause is asked for, clears a kick that found the vCPU outside KVM_RUN (immediate_exit
    /// would stay set) and returns true to go back to the guest. `stopping` must read a flag the
    /// stopper sets before it kicks.
    func continueAfterKick(_ vcpu: VCPU, stopping: () -> Bool) -> Bool {
        if stopping() { return false }
        parkWhilePaused()
        if stopping() { return false }
        vcpu.clearKick()
        // A stop asked for between the look above and the clear: its kick was just cleared, so
        // look once more (whoever asks sets its flag before it kicks).
        return !stopping()
    }

    /// Called by a vCPU thread after a kick: parks while a pause is requested.
    func parkWhilePaused() {
        locked {
            guard pauseRequested && !released else { return }
            parked += 1
            pthread_cond_broadcast(condition)
            while pauseRequested && !released { pthread_cond_wait(condition, mutex) }
            parked -= 1
        }
    }
}
