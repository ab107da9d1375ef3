import Host
import Hypervisor

/// Parks vCPU threads for `PATCH /vm {"state": "Paused"}`. The API thread asks for a pause and
/// kicks every vCPU; each vCPU thread, back from KVM_RUN with `.kicked`, parks here until resumed
/// or released (the VM is stopping). `pause` returns once all vCPUs are parked, so a paused VM
/// really runs no guest code. A mutex and condition variable: the waits are long and blocking.
final class PauseGate: Sendable {
    private struct State {
        var pauseRequested = false
        var released = false
        var parked = 0
    }
    private let state = ConditionLock(State())

    /// Asks vCPUs to park; the caller kicks them, then calls `waitUntilParked`.
    func requestPause() { state.withLock { $0.pauseRequested = true } }

    /// Waits until `count` vCPUs are parked or the gate is released. Returns whether all parked.
    func waitUntilParked(count: Int) -> Bool {
        state.wait(until: { $0.parked >= count || $0.released }, then: { $0.parked >= count })
    }

    /// Whether a pause is asked for (the vCPUs are parked or about to be).
    var isPaused: Bool { state.withLock { $0.pauseRequested } }

    /// Lets parked vCPUs go back to the guest.
    func resume() { state.withLockBroadcasting { $0.pauseRequested = false } }

    /// Ends every wait for good: the VM is stopping.
    func release() { state.withLockBroadcasting { $0.released = true } }

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

    /// Called by a vCPU thread after a kick: parks while a pause is requested. Parking is
    /// announced (broadcast) so `waitUntilParked` sees it; leaving needs no announcement.
    func parkWhilePaused() {
        let parks = state.withLockBroadcasting { s -> Bool in
            guard s.pauseRequested && !s.released else { return false }
            s.parked += 1
            return true
        }
        guard parks else { return }
        state.wait(until: { !$0.pauseRequested || $0.released }, then: { $0.parked -= 1 })
    }
}
