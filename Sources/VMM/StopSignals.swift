import Host
#if canImport(Glibc)
import Glibc
#endif

/// The signals that stop a VM (SIGINT, SIGTERM, SIGHUP) plus SIGUSR1, which a vCPU thread sends
/// to say the run is over. The main thread takes them synchronously with `wait()`; vCPU threads
/// inherit the blocked mask, so only their kick signal interrupts KVM_RUN.
///
/// A command that runs a VM calls `StopSignals.blockEarly()` first thing: a Ctrl-C or SIGTERM
/// that comes while the VM is still being built then waits, pending, and stops the VM as soon
/// as it runs (exit 128+N as always) instead of killing the process with no cleanup.
public struct StopSignals {
    /// Blocks the stop signals in the calling thread and every thread it creates later.
    public static func blockEarly() { _ = StopSignals() }

    static let finished = SIGUSR1
    private let waiter: SignalWaiter

    /// Blocks the signals in the calling thread (call before starting vCPU threads) and resets an
    /// inherited SIG_IGN, which would make them vanish before `wait` could see them.
    init() { waiter = SignalWaiter([SIGINT, SIGTERM, SIGHUP, Self.finished]) }

    /// Waits for the next one and returns it.
    func wait() -> Int32 { waiter.wait() }
}
