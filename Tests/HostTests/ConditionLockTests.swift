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
}
