import Glibc
import Testing
@testable import Host

/// `Poller.wait(timeoutNanoseconds:interruptibleBy:unless:_:)`: a vCPU thread's hvt POLL, which a
/// kick (a pause or a stop) must end whenever the kick comes. Before it existed, a kick that landed
/// between the POLL exit and epoll_wait was handled with nothing to interrupt, and the wait ran its
/// whole timeout (an idle unikernel's: an hour), with `PATCH /vm Paused` and the API stuck behind it.
@Suite(.serialized) struct PollerKickTests {
    /// A signal with a no-op handler installed without SA_RESTART, as the vCPU kick's.
    static let kick: Int32 = {
        Signals.installInterruptingNoOp(SIGURG)
        return SIGURG
    }()

    static func elapsed(_ body: () -> Bool) -> (result: Bool, seconds: Double) {
        let start = Clock.monotonicNanoseconds()
        let r = body()
        return (r, Double(Clock.monotonicNanoseconds() - start) / 1e9)
    }

    @Test func aKickAlreadyPendingEndsTheWaitAtOnce() throws {
        let poller = try Poller()
        let (completed, seconds) = Self.elapsed {
            poller.wait(timeoutNanoseconds: 30_000_000_000, interruptibleBy: Self.kick, unless: { true }) { _ in }
        }
        #expect(!completed)
        #expect(seconds < 5)
    }

    /// The race itself, made certain: the signal arrives after the pending flag was read (here,
    /// from inside the look) and before the wait begins. It must stay pending until epoll_pwait
    /// unblocks it, and then interrupt the wait.
    @Test func aKickBetweenTheLookAndTheWaitInterruptsTheWait() throws {
        let poller = try Poller()
        let (completed, seconds) = Self.elapsed {
            poller.wait(timeoutNanoseconds: 30_000_000_000, interruptibleBy: Self.kick, unless: {
                ThreadHandle.current.send(Self.kick)
                return false
            }) { _ in }
        }
        #expect(!completed, "the wait ran to its timeout")
        #expect(seconds < 5, "a kick sent before the wait began was lost (waited \(seconds) s)")
    }

    /// The block lasts for the call only: a thread that had the kick unblocked has it unblocked
    /// after (the test thread's inherited mask may block it, so it is unblocked here first).
    @Test func theMaskIsRestoredAndTimeoutsStillComplete() throws {
        let poller = try Poller()
        var before = sigset_t()
        pthread_sigmask(SIG_BLOCK, nil, &before)
        Signals.unblock([Self.kick])
        defer { pthread_sigmask(SIG_SETMASK, &before, nil) }
        #expect(poller.wait(timeoutNanoseconds: 1_000_000, interruptibleBy: Self.kick, unless: { false }) { _ in })
        var mask = sigset_t()
        pthread_sigmask(SIG_BLOCK, nil, &mask)
        #expect(sigismember(&mask, Self.kick) == 0, "the kick signal was left blocked")
    }
}
