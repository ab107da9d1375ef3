import Host
import Synchronization
import Testing
@testable import Daemon

@Suite struct WorkersTests {
    final class Peak: Sendable {
        let state = Mutex((now: 0, peak: 0))
        func enter() { state.withLock { $0.now += 1; $0.peak = max($0.peak, $0.now) } }
        func leave() { state.withLock { $0.now -= 1 } }
    }

    @Test func mapKeepsOrderAndStaysWithinItsWidth() {
        let peak = Peak()
        let results = Workers.map(20, width: 3, name: "test-worker") { i in
            peak.enter()
            Clock.sleep(milliseconds: 2)
            peak.leave()
            return i * i
        }
        #expect(results == (0..<20).map { $0 * $0 })
        let seen = peak.state.withLock { $0.peak }
        #expect(seen >= 1 && seen <= 3)
        #expect(Workers.map(0, width: 3, name: "test-worker") { $0 }.isEmpty)
    }

    @Test func backgroundThreadIsJoinedOnceFinished() throws {
        let release = Mutex(false)
        let ran = Mutex(false)
        let thread = try #require(BackgroundThread.start(name: "test-bg") {
            while !release.withLock({ $0 }) { Clock.sleep(milliseconds: 1) }
            ran.withLock { $0 = true }
        })
        #expect(!thread.joinIfFinished())
        release.withLock { $0 = true }
        var joined = false
        for _ in 0..<5000 where !joined {
            joined = thread.joinIfFinished()
            if !joined { Clock.sleep(milliseconds: 1) }
        }
        #expect(joined)
        #expect(ran.withLock { $0 })
    }
}
