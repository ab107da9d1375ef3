import Host
import Hypervisor
import Synchronization

/// Where a VM is in its life: created → running ⇄ paused → stopped (the guest ended or a stop
/// was asked for) or crashed (the guest or the hypervisor failed).
public enum VMState: String, Sendable, Equatable {
    case created, running, paused, stopped, crashed
}

/// One running guest, whatever its kind: what `MicroVM` and the API drive. `LinuxVM` (bzImage or
/// PVH) and `HvtTender` (Solo5) differ in their loader, devices and exit handling; the lifecycle
/// they share (vCPU threads, pause gate, stop signalling, counters, state) is `VMLifecycle`.
public protocol VirtualMachine: AnyObject, Sendable {
    /// Runs until the guest ends or `requestStop`; returns the process exit status (128+N after
    /// a stop requested with signal N).
    func runToExitStatus() -> Int32
    /// Ends the run from another thread as signal `signal` would.
    func requestStop(signal: Int32)
    /// Parks every vCPU outside the guest; returns once none runs guest code.
    func pause() throws(VMMError)
    /// Lets the vCPUs run again.
    func resume()
    /// Ctrl+Alt+Del on the keyboard, for guests that have one.
    func sendCtrlAltDel() throws(VMMError)
    /// Where the VM is in its life.
    var state: VMState { get }
    /// vCPU exits by reason.
    var exitCounters: ExitCounters { get }
    /// Per-device counters.
    var deviceStatistics: [DeviceStatistics] { get }
}

/// The lifecycle every guest kind shares, written once: the state machine, the pause gate, the
/// exit counters, the main thread's stop signals and the vCPU threads. The guest kind supplies
/// only each vCPU's exit loop (which reports to `pauseGate.continueAfterKick` on a kick).
final class VMLifecycle: @unchecked Sendable {
    let pauseGate = PauseGate()
    /// vCPU exits by reason, for metrics; bumped by the exit loops (one relaxed add per exit).
    let exitCounters = ExitCounters()
    private let current = Mutex<VMState>(.created)
    /// The thread in `run`, which waits for stop signals; nil before and after.
    private let runner = Mutex<ThreadHandle?>(nil)

    var state: VMState { current.withLock { $0 } }

    /// Records a transition. Stopped and crashed are final: a later stop changes nothing.
    func enter(_ next: VMState) {
        current.withLock { state in
            guard state != .stopped && state != .crashed else { return }
            state = next
        }
    }

    /// Takes the stop signals in the calling thread (before any vCPU thread starts, which then
    /// inherits the mask) and marks the VM running.
    func beginRun() -> StopSignals {
        let signals = StopSignals()
        runner.withLock { $0 = .current }
        enter(.running)
        return signals
    }

    /// Wakes the thread in `run` (a vCPU or device finished the run).
    func wakeRunner() { runner.withLock { $0?.send(StopSignals.finished) } }

    /// Delivers `signal` to the thread in `run`, as if sent to the process (a stop from the API).
    func signalRunner(_ signal: Int32) { runner.withLock { $0?.send(signal) } }

    /// Starts one named thread per vCPU running `loop` with the vCPU attached for kicks (and
    /// detached at the end, so no kick signals a thread that has ended).
    /// Returns the threads started, and the failure that stopped the rest from starting.
    func startVCPUs(_ vcpus: [VCPU], loop: @escaping @Sendable (VCPU) -> Void) -> (threads: [VCPUThread], failure: HypervisorError?) {
        var threads: [VCPUThread] = []
        for vcpu in vcpus {
            do {
                threads.append(try VCPUThread(name: "vcpu\(vcpu.index)") {
                    vcpu.attachToCurrentThread()
                    loop(vcpu)
                    vcpu.detachFromCurrentThread()
                })
            } catch { return (threads, error) }
        }
        return (threads, nil)
    }

    /// Ends the run: releases parked vCPUs, kicks every vCPU out of the guest and waits for
    /// their threads; the state becomes `final`.
    func stopVCPUs(_ vcpus: [VCPU], threads: [VCPUThread], final: VMState) {
        pauseGate.release()
        for vcpu in vcpus { vcpu.kick() }
        for thread in threads { thread.join() }
        runner.withLock { $0 = nil }
        enter(final)
    }

    /// Parks every vCPU outside the guest; returns once none runs guest code. Devices keep their
    /// host-side I/O going (as in Firecracker); the guest sees time jump on resume.
    func pause(_ vcpus: [VCPU]) throws(VMMError) {
        pauseGate.requestPause()
        for vcpu in vcpus { vcpu.kick() }
        guard pauseGate.waitUntilParked(count: vcpus.count) else { throw VMMError(.configuration, "the VM stopped while pausing") }
        enter(.paused)
    }

    /// Lets the vCPUs run again.
    func resume() {
        pauseGate.resume()
        current.withLock { if $0 == .paused { $0 = .running } }
    }
}
