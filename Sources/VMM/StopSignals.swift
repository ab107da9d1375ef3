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
    private var set = sigset_t()

    /// Blocks the signals in the calling thread (call before starting vCPU threads) and resets an
    /// inherited SIG_IGN, which would make them vanish before `sigwait` could see them.
    init() {
        sigemptyset(&set)
        for s in [SIGINT, SIGTERM, SIGHUP, Self.finished] {
            sigaddset(&set, s)
            signal(s, SIG_DFL)
        }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Waits for the next one and returns it.
    mutating func wait() -> Int32 {
        var received: Int32 = 0
        while sigwait(&set, &received) != 0 {}
        return received
    }
}
