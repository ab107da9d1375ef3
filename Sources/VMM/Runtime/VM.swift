import Host
import Hypervisor
import Synchronization

/// Where a VM is in its life: created → running ⇄ paused → stopped (the guest ended or a stop
/// was asked for) or crashed (the guest or the hypervisor failed).
public enum VMState: String, Sendable, Equatable {
    case created, running, paused, stopped, crashed
}

/// How a run ended, for every guest kind; `exitStatus` is what `swiftlet run` (and `swiftlet api`)
/// exits with. The first outcome found ends the run (`VMLifecycle.finish`).
public enum VMOutcome: Equatable, Sendable {
    /// The guest ended with this status: a Linux guest's /init reported its command's status on
    /// the debug-exit port (0xF4); an hvt unikernel called solo5_exit (255 on abort), or ended
    /// with 1 when its debugger killed it or its core could not be written.
    case exited(Int32)
    /// ACPI S5 (poweroff) without a reported status.
    case poweredOff
    /// The guest asked for a reset (i8042 pulse, ACPI reset register).
    case rebooted
    /// SIGINT/SIGTERM/SIGHUP, a stop from the API, or the console escape (Ctrl-A x).
    case stopped(signal: Int32)
    /// Triple fault, a broken guest ABI or a hypervisor error; the message says which, with the
    /// last registers (logged once, when the outcome is recorded).
    case failed(String)

    /// The guest's status as given; poweroff and reboot 0; a signal 128+N; a failure 1.
    public var exitStatus: Int32 {
        switch self {
        case .exited(let status): status
        case .poweredOff, .rebooted: 0
        case .stopped(let signal): 128 + signal
        case .failed: 1
        }
    }
}

/// One running guest, whatever its kind: what `MicroVM` and the API drive. `LinuxVM` (bzImage or
/// PVH) and `HvtTender` (Solo5) differ in their loader, devices and exit handling; the lifecycle
/// they share (run sequence, vCPU threads, pause gate, stop signalling, counters, state) is
/// `VMLifecycle`.
public protocol VirtualMachine: AnyObject, Sendable {
    /// Runs until the guest ends or `requestStop`; returns how the run ended.
    func runToOutcome() -> VMOutcome
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

extension VirtualMachine {
    /// Runs until the guest ends or `requestStop`; returns the process exit status (128+N after
    /// a stop with signal N).
    public func runToExitStatus() -> Int32 { runToOutcome().exitStatus }
}

/// Whether the VMM has its process to itself (swiftlet's commands; swiftletd's VM processes), as
/// it has unless embedded: the C library's VM level runs VMs inside the client's process and
/// clears this before building one, so the process-wide tuning of a VM process (one malloc
/// arena, start-up code pages released once the vCPUs run) leaves the client's process alone.
public enum VMMProcess {
    public static let isDedicated = Atomic<Bool>(true)
}

/// The lifecycle every guest kind shares, written once: the state machine, the run sequence
/// (stop signals, vCPU threads, the first outcome ending the run), the pause gate and the exit
/// counters. The guest kind supplies only what it sets up before the vCPUs run and each vCPU's
/// exit loop (a concrete method of its own, which reports to `pauseGate.continueAfterKick` on a
/// kick and returns the outcome it found, or nil when told to stop).
final class VMLifecycle: @unchecked Sendable {
    let pauseGate = PauseGate()
    /// vCPU exits by reason, for metrics; bumped by the exit loops (one relaxed add per exit).
    let exitCounters = ExitCounters()
    /// Bytes the guest wrote to its console: the sign of life `watchForSilence` looks for.
    let consoleBytes = Atomic<UInt64>(0)
    private let current = Mutex<VMState>(.created)
    /// The thread in `run`, which waits for stop signals; nil before and after.
    private let runner = Mutex<ThreadHandle?>(nil)
    /// How the run ended: the first outcome recorded wins.
    private let ended = Mutex<VMOutcome?>(nil)
    /// Set with `ended`, before anyone kicks a vCPU: what an exit loop reads on a kick.
    private let ending = Atomic<Bool>(false)
    private let log: VMMLog
    /// Whether the run drops the start-up code's page mappings: not under a debugger (its
    /// breakpoints live in private copies of code pages). Decided when the VM is built, since the
    /// run may be under a seccomp filter that forbids reading /proc.
    private let releasesStartUpCode = !HostProcess.isBeingTraced()

    init(log: VMMLog) { self.log = log }

    var state: VMState { current.withLock { $0 } }

    /// How the run ended, once it has.
    var outcome: VMOutcome? { ended.withLock { $0 } }

    /// Whether the run is ending (an outcome is recorded): an exit loop stops at its next kick.
    var isEnding: Bool { ending.load(ordering: .sequentiallyConsistent) }

    /// Records a transition. Stopped and crashed are final: a later stop changes nothing.
    func enter(_ next: VMState) {
        current.withLock { state in
            guard state != .stopped && state != .crashed else { return }
            state = next
        }
    }

    /// Ends the run with `result` unless it already ended (the first outcome wins) and wakes the
    /// thread in `run`, which stops the vCPUs. A failure is logged here, once, as it happens.
    /// Called by devices, vCPU threads, the console and the API.
    func finish(_ result: VMOutcome) {
        let first = ended.withLock { current -> Bool in
            guard current == nil else { return false }
            current = result
            return true
        }
        guard first else { return }
        ending.store(true, ordering: .sequentiallyConsistent)
        if case .failed(let message) = result { log.error(message) }
        runner.withLock { $0?.send(StopSignals.finished) }
    }

    /// Ends the run from another thread as signal `signal` would, and lets parked vCPUs go.
    func requestStop(signal: Int32) {
        finish(.stopped(signal: signal))
        pauseGate.release()
    }

    /// The run sequence of every guest kind: takes the stop signals in the calling thread (so
    /// every thread started from here on, `setUp`'s included, inherits their mask), marks the VM
    /// running, runs `setUp` (which calls `finish(.failed…)` when a device cannot start), starts
    /// one thread per vCPU running `exitLoop`, waits until an outcome is recorded (a stop signal
    /// records `.stopped`), then stops and joins the vCPUs. The state ends crashed after a
    /// failure, stopped otherwise.
    func run(_ vcpus: [VCPU], setUp: () -> Void, exitLoop: @escaping @Sendable (VCPU) -> VMOutcome?) -> VMOutcome {
        let signals = StopSignals()
        let dedicated = VMMProcess.isDedicated.load(ordering: .relaxed)
        if dedicated { Memory.useOneMallocArena() }
        runner.withLock { $0 = .current }
        enter(.running)
        setUp()
        var threads: [VCPUThread] = []
        if !isEnding {
            let started = startVCPUs(vcpus) { [self] vcpu in
                if let result = exitLoop(vcpu) { finish(result) }
            }
            threads = started.threads
            if let failure = started.failure { finish(.failed(failure.message)) }
            // Set-up is over: what runs from here (the exit loops, devices) is a small part of the
            // binary, so the start-up code's pages leave this VM's resident set (issue 12: a few
            // MiB per VM). The vCPUs may already be running; a page they need faults back in.
            if releasesStartUpCode && dedicated { Memory.releaseCodeMappings() }
        }
        while outcome == nil {
            let signal = signals.wait()
            if signal != StopSignals.finished { finish(.stopped(signal: signal)) }
        }
        let result = outcome ?? .failed("no outcome")
        if case .failed = result {
            stopVCPUs(vcpus, threads: threads, final: .crashed)
        } else {
            stopVCPUs(vcpus, threads: threads, final: .stopped)
        }
        return result
    }

    /// Says once, through `warn`, when the running guest has written nothing to its console for
    /// `seconds` (on hardware KVM a busy guest may stay silent, so it is a warning, never a stop).
    /// A guest that says anything, a pause or the end of the run ends the watch.
    func watchForSilence(seconds: Int, warn: @escaping @Sendable () -> Void) {
        _ = try? HostThread(name: "silence", role: .device) { [self] in
            for _ in 0..<(seconds * 10) {
                if isEnding || consoleBytes.load(ordering: .relaxed) > 0 { return }
                Clock.sleep(milliseconds: 100)
            }
            if !isEnding && state == .running && consoleBytes.load(ordering: .relaxed) == 0 { warn() }
        }
    }

    /// Starts one named thread per vCPU running `loop` with the vCPU attached for kicks (and
    /// detached at the end, so no kick signals a thread that has ended).
    /// Returns the threads started, and the failure that stopped the rest from starting.
    private func startVCPUs(_ vcpus: [VCPU], loop: @escaping @Sendable (VCPU) -> Void) -> (threads: [VCPUThread], failure: HypervisorError?) {
        var threads: [VCPUThread] = []
        for vcpu in vcpus {
            do {
                threads.append(try VCPUThread(name: "vcpu\(vcpu.index)", role: .vcpu) {
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
        guard !isEnding else { throw VMMError(.configuration, "the VM is not running") }
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
