import Testing
@testable import VMM

/// The shared lifecycle's state machine, without KVM: transitions, final states that stay final,
/// and the first outcome ending the run.
@Suite struct VMLifecycleTests {
    func quiet() -> VMLifecycle { VMLifecycle(log: VMMLog(level: .quiet)) }

    @Test func createdRunningPausedStopped() throws {
        let lifecycle = quiet()
        #expect(lifecycle.state == .created)
        lifecycle.enter(.running)
        try lifecycle.pause([])
        #expect(lifecycle.state == .paused)
        lifecycle.resume()
        #expect(lifecycle.state == .running)
        lifecycle.stopVCPUs([], threads: [], final: .stopped)
        #expect(lifecycle.state == .stopped)
    }

    @Test func stoppedAndCrashedAreFinal() {
        let lifecycle = quiet()
        lifecycle.stopVCPUs([], threads: [], final: .crashed)
        lifecycle.enter(.running)
        lifecycle.resume()
        #expect(lifecycle.state == .crashed)
    }

    /// A guest's exit, a device's failure and a stop can race: the first recorded ends the run,
    /// and a VM that is ending cannot be paused.
    @Test func firstOutcomeWins() {
        let lifecycle = quiet()
        #expect(lifecycle.outcome == nil && !lifecycle.isEnding)
        lifecycle.finish(.exited(3))
        lifecycle.requestStop(signal: 15)
        lifecycle.finish(.failed("late"))
        #expect(lifecycle.outcome == .exited(3) && lifecycle.isEnding)
        #expect(throws: VMMError.self) { try lifecycle.pause([]) }
    }

    /// What each outcome exits with, for `swiftlet run` and `swiftlet api`.
    @Test(arguments: [(VMOutcome.exited(7), Int32(7)), (.poweredOff, 0), (.rebooted, 0), (.stopped(signal: 15), 143), (.failed("x"), 1)])
    func exitStatus(_ outcome: VMOutcome, _ status: Int32) {
        #expect(outcome.exitStatus == status)
    }
}
