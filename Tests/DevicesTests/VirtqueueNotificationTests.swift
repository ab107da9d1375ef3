import GuestMemory
import Testing
@testable import Devices

/// Notification suppression in both directions (VIRTIO 1.2 2.7.7 and 2.7.10).
@Suite struct VirtqueueNotificationTests {
    typealias L = SplitVirtqueueLayout

    /// (event, new, old, expected): the spec's vring_need_event(event, new, old) is
    /// (u16)(new - event - 1) < (u16)(new - old), i.e. "event in [old, new) modulo 2^16".
    @Test(arguments: [
        (UInt16(0), UInt16(1), UInt16(0), true),     // first entry crosses event 0
        (0, 0, 0, false),                            // nothing new
        (5, 5, 0, false),                            // event not yet reached (needs new > 5)
        (5, 6, 0, true),                             // reached
        (5, 6, 5, true),                             // exactly the entry asked for
        (5, 7, 6, false),                            // already passed before this batch
        (4, 5, 5, false),                            // nothing new, event behind
        (0xFFFF, 0, 0xFFFE, true),                   // crossing across the wrap
        (0xFFFF, 2, 0xFFFF, true),
        (0, 2, 0xFFFF, true),                        // event just after the wrap
        (1, 1, 0xFFF0, false),                       // event not reached after the wrap
        (0xFFF0, 3, 0xFFFE, false),                  // event long passed, indices wrapped
        (100, 101, 100, true),
        (100, 100, 99, false),
    ])
    func needsEventMatchesTheSpecFormula(event: UInt16, new: UInt16, old: UInt16, expected: Bool) {
        #expect(L.needsEvent(event: event, new: new, old: old) == expected)
    }

    /// The formula against its plain-language meaning over a spread of values.
    @Test func needsEventMeansEventInOldToNew() {
        let samples: [UInt16] = [0, 1, 2, 7, 8, 100, 0x7FFF, 0x8000, 0xFFFD, 0xFFFE, 0xFFFF]
        for event in samples { for new in samples { for old in samples {
            let inWindow = event &- old < new &- old
            #expect(L.needsEvent(event: event, new: new, old: old) == inWindow, "event \(event) new \(new) old \(old)")
        } } }
    }

    /// Drives `count` chains through the queue.
    func complete(_ count: Int, _ driver: VirtqueueTestDriver, _ queue: SplitVirtqueue) throws {
        for _ in 0..<count { try driver.post([.init(address: 0x80000, length: 1, writable: true)]) }
        for _ in 0..<count {
            let chain = try #require(try queue.nextChain())
            try queue.addUsed(head: chain.head, length: 1)
        }
    }

    @Test func eventIndexHonoursUsedEvent() throws {
        let driver = try VirtqueueTestDriver(size: 8)
        let queue = try driver.makeQueue(eventIndex: true)
        try driver.setUsedEvent(2)  // "interrupt me once used.idx passes 2"
        try complete(1, driver, queue)  // used 0 -> 1
        #expect(!queue.needsNotification())
        try complete(1, driver, queue)  // 1 -> 2
        #expect(!queue.needsNotification())
        try complete(2, driver, queue)  // 2 -> 4 crosses entry 2
        #expect(queue.needsNotification())
        #expect(!queue.needsNotification())  // nothing new since
        try complete(1, driver, queue)  // 4 -> 5, event 2 long passed
        #expect(!queue.needsNotification())
        try driver.setUsedEvent(5)
        try complete(1, driver, queue)  // 5 -> 6
        #expect(queue.needsNotification())
    }

    @Test func eventIndexIgnoresNoInterruptFlag() throws {
        let driver = try VirtqueueTestDriver(size: 8)
        let queue = try driver.makeQueue(eventIndex: true)
        try driver.setAvailableFlags(L.availableFlagNoInterrupt)
        try driver.setUsedEvent(0)
        try complete(1, driver, queue)
        #expect(queue.needsNotification())
    }

    @Test func withoutEventIndexTheFlagDecides() throws {
        let driver = try VirtqueueTestDriver(size: 8)
        let queue = try driver.makeQueue()
        #expect(!queue.needsNotification())  // nothing used yet
        try complete(1, driver, queue)
        #expect(queue.needsNotification())
        #expect(!queue.needsNotification())  // nothing new
        try driver.setAvailableFlags(L.availableFlagNoInterrupt)
        try complete(2, driver, queue)
        #expect(!queue.needsNotification())
        try driver.setAvailableFlags(0)
        try complete(1, driver, queue)
        #expect(queue.needsNotification())
    }

    @Test func usedBufferNotificationAcrossTheWrap() throws {
        let driver = try VirtqueueTestDriver(size: 4)
        let queue = try driver.makeQueue(eventIndex: true)
        for _ in 0..<(65534 / 2) {
            try complete(2, driver, queue)
        }
        _ = queue.needsNotification()
        #expect(queue.nextUsedIndex == 65534)
        try driver.setUsedEvent(0)  // the entry after the wrap
        try complete(1, driver, queue)  // 65534 -> 65535
        #expect(!queue.needsNotification())
        try complete(2, driver, queue)  // 65535 -> 1, writes entry 0
        #expect(queue.needsNotification())
    }

    // MARK: Device side: available-buffer notifications (2.7.10)

    @Test func flagsModeDisableAndEnable() throws {
        let driver = try VirtqueueTestDriver(size: 8)
        let queue = try driver.makeQueue()
        #expect(try driver.usedFlags == 0)
        queue.disableNotifications()
        #expect(try driver.usedFlags == L.usedFlagNoNotify)
        #expect(!queue.enableNotifications())  // nothing arrived
        #expect(try driver.usedFlags == 0)

        queue.disableNotifications()
        try driver.post([.init(address: 0x80000, length: 1)])
        // A chain arrived while the driver was told not to notify: enable must report it.
        #expect(queue.enableNotifications())
        #expect(try queue.nextChain() != nil)
        #expect(!queue.enableNotifications())
    }

    @Test func eventModeArmsAvailEventWhenIdle() throws {
        let driver = try VirtqueueTestDriver(size: 8)
        let queue = try driver.makeQueue(eventIndex: true)
        try complete(3, driver, queue)
        #expect(try queue.nextChain() == nil)
        // Going idle with notifications on: "notify me when you publish entry 3".
        #expect(try driver.availableEvent == 3)
        #expect(try driver.usedFlags == 0)  // flags are not used with event index

        queue.disableNotifications()
        try complete(2, driver, queue)
        #expect(try queue.nextChain() == nil)
        #expect(try driver.availableEvent == 3)  // left behind while disabled
        #expect(!queue.enableNotifications())
        #expect(try driver.availableEvent == 5)

        queue.disableNotifications()
        try driver.post([.init(address: 0x80000, length: 1)])
        #expect(queue.enableNotifications())
        #expect(try driver.availableEvent == 5)
        #expect(try queue.nextChain() != nil)
        #expect(try queue.nextChain() == nil)
        #expect(try driver.availableEvent == 6)
    }

    /// The batching loop a device runs, end to end.
    @Test func deviceBatchingLoop() throws {
        let driver = try VirtqueueTestDriver(size: 16)
        for eventIndex in [false, true] {
            let queue = try SplitVirtqueue(memory: driver.memory, configuration: driver.configuration(eventIndex: eventIndex))
            driver.availableIndex = 0
            driver.nextDescriptor = 0
            try driver.setAvailableIndex(0)
            for _ in 0..<5 { try driver.post([.init(address: 0x80000, length: 4, writable: true)]) }
            var served = 0
            repeat {
                queue.disableNotifications()
                while let chain = try queue.nextChain() {
                    let bytes: [UInt8] = [1, 2, 3, 4]
                    let n = try bytes.withUnsafeBytes { try chain.copyIn(from: $0) }
                    try queue.addUsed(head: chain.head, length: UInt32(n))
                    served += 1
                }
            } while queue.enableNotifications()
            #expect(served == 5)
            #expect(queue.needsNotification())
            #expect(try driver.usedIndex == 5)
        }
    }
}
