import Testing
@testable import VMM

/// The shared lifecycle's state machine, without KVM: transitions, and final states that stay final.
@Suite struct VMLifecycleTests {
    @Test func createdRunningPausedStopped() throws {
        let lifecycle = VMLifecycle()
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
        let lifecycle = VMLifecycle()
        lifecycle.stopVCPUs([], threads: [], final: .crashed)
        lifecycle.enter(.running)
        lifecycle.resume()
        #expect(lifecycle.state == .crashed)
    }
}
