import Testing
@testable import Host

@Suite struct ConditionLockTests {
    @Test func aWaiterWakesWhenAnotherThreadMakesItsConditionTrue() throws {
        let lock = ConditionLock(0)
        let waiter = try HostThread(name: "waiter") {
            lock.wait(until: { $0 >= 3 }, then: { $0 += 100 })
        }
        for _ in 0..<3 { lock.withLockBroadcasting { $0 += 1 } }
        waiter.join()
        #expect(lock.withLock { $0 } == 103)
    }

    @Test func aConditionAlreadyTrueDoesNotWait() {
        let lock = ConditionLock("ready")
        let seen = lock.wait(until: { $0 == "ready" }, then: { $0 })
        #expect(seen == "ready")
    }

    @Test func aTimedWaitGivesUpAtItsDeadlineAndSucceedsWhenWoken() throws {
        let lock = ConditionLock(false)
        let start = Clock.monotonicNanoseconds()
        #expect(lock.wait(until: { $0 }, milliseconds: 50, then: { _ in 1 }) == nil)
        #expect(Clock.monotonicNanoseconds() - start >= 50_000_000)
        let waker = try HostThread(name: "waker") {
            Clock.sleep(milliseconds: 20)
            lock.withLockBroadcasting { $0 = true }
        }
        #expect(lock.wait(until: { $0 }, milliseconds: 10_000, then: { _ in 2 }) == 2)
        waker.join()
        #expect(lock.wait(until: { $0 }, milliseconds: 0, then: { _ in 3 }) == 3)
    }
}

@Suite struct SpinLockTests {
    /// Threads adding under the lock lose no update (a broken lock loses some within a few
    /// thousand contended increments on two cores).
    @Test func contendedIncrementsAreNeverLost() throws {
        final class Counter: @unchecked Sendable {
            let lock = SpinLock()
            var value = 0
        }
        let counter = Counter()
        let threads = try (0..<4).map { i in
            try HostThread(name: "adder\(i)") {
                for _ in 0..<100_000 { counter.lock.withLock { counter.value += 1 } }
            }
        }
        for thread in threads { thread.join() }
        #expect(counter.value == 400_000)
    }
}
