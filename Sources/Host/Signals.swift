#if canImport(Glibc)
import Glibc
#endif

/// Process and thread signal dispositions: the one place our code calls signal(2), sigaction(2),
/// pthread_sigmask(3) and sigwait(3).
public enum Signals {
    /// Restores the default action of `signals` (an inherited SIG_IGN would make them vanish
    /// before `SignalWaiter.wait` could see them).
    public static func resetToDefault(_ signals: [Int32]) {
        for s in signals { signal(s, SIG_DFL) }
    }

    /// Ignores `signal` in the whole process (SIGPIPE: a peer that hung up is an EPIPE to handle,
    /// not a death).
    public static func ignore(_ signal: Int32) { _ = Glibc.signal(signal, SIG_IGN) }

    /// Blocks `signals` in the calling thread and in every thread it creates later.
    public static func block(_ signals: [Int32]) { mask(SIG_BLOCK, signals) }

    /// Unblocks `signals` in the calling thread, whatever mask it inherited.
    public static func unblock(_ signals: [Int32]) { mask(SIG_UNBLOCK, signals) }

    /// Installs a handler that does nothing, without SA_RESTART: the signal's only effect is to
    /// make the system call the target thread is blocked in (KVM_RUN, epoll_wait) return EINTR.
    public static func installInterruptingNoOp(_ signal: Int32) {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(signal, &action, nil)
    }

    private static func mask(_ how: Int32, _ signals: [Int32]) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(how, &set, nil)
    }
}

/// Takes blocked signals synchronously (sigwait): the main thread of a VM process or daemon waits
/// here for SIGINT/SIGTERM/SIGHUP and for the signal a worker sends when it is done.
public struct SignalWaiter: @unchecked Sendable {
    private var set = sigset_t()

    /// Blocks `signals` in the calling thread (and threads it creates later), resetting an
    /// inherited SIG_IGN first; `wait()` then returns them one at a time.
    public init(_ signals: [Int32]) {
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        Signals.resetToDefault(signals)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Waits for the next of the signals and returns it.
    public func wait() -> Int32 {
        var received: Int32 = 0
        var set = self.set
        while sigwait(&set, &received) != 0 {}
        return received
    }
}

// Added for `swiftlet api`'s bounded stop (helper wt-log).
extension SignalWaiter {
    /// Waits at most `seconds` for the next of the signals: nil when none came in time.
    public func wait(timeoutSeconds seconds: Int) -> Int32? {
        var set = self.set
        var deadline = timespec(tv_sec: seconds, tv_nsec: 0)
        while true {
            let received = sigtimedwait(&set, nil, &deadline)
            if received >= 0 { return received }
            if errno != EINTR { return nil }
        }
    }
}
