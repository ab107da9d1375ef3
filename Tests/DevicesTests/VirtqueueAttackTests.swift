import GuestMemory
import Testing
@testable import Devices

/// A hostile or buggy driver: every malformed ring or chain must end in a thrown
/// `VirtqueueError`, never a trap or an access outside guest memory.
@Suite struct VirtqueueAttackTests {
    typealias L = SplitVirtqueueLayout
    static let next = L.descriptorFlagNext
    static let write = L.descriptorFlagWrite
    static let indirect = L.descriptorFlagIndirect

    /// Publishes head 0 after `build` wrote the descriptors, and returns the walk's error.
    func chainError(size: UInt16 = 4, _ build: (VirtqueueTestDriver) throws -> Void) throws -> VirtqueueError? {
        let driver = try VirtqueueTestDriver(size: size)
        let queue = try driver.makeQueue()
        try build(driver)
        try driver.publish(head: 0)
        let chain = try #require(try queue.nextChain())
        // Both the lazy walk and the whole-chain helper must refuse it.
        var walk = chain
        var walkError: VirtqueueError?
        do { while try walk.next() != nil {} } catch { walkError = error }
        var lengthsError: VirtqueueError?
        do { _ = try chain.lengths() } catch { lengthsError = error }
        #expect(walkError == lengthsError)
        // The queue itself stays usable after a bad chain.
        #expect(!queue.isBroken)
        try queue.addUsed(head: chain.head, length: 0)
        return walkError
    }

    @Test func descriptorOutsideMemory() throws {
        let error = try chainError { d in try d.writeDescriptor(index: 0, address: 1 << 20, length: 1, flags: 0) }
        #expect(error == .descriptorOutOfMemory(address: 1 << 20, length: 1))
        // Straddling the end of RAM.
        let straddle = try chainError { d in try d.writeDescriptor(index: 0, address: (1 << 20) - 8, length: 9, flags: 0) }
        #expect(straddle == .descriptorOutOfMemory(address: (1 << 20) - 8, length: 9))
    }

    @Test func addressPlusLengthOverflows() throws {
        let error = try chainError { d in
            try d.writeDescriptor(index: 0, address: 0xFFFF_FFFF_FFFF_FF00, length: 0x1000, flags: Self.write)
        }
        #expect(error == .descriptorAddressOverflow(address: 0xFFFF_FFFF_FFFF_FF00, length: 0x1000))
    }

    @Test func nextIndexBeyondQueueSize() throws {
        let error = try chainError { d in
            try d.writeDescriptor(index: 0, address: 0x80000, length: 1, flags: Self.next, next: 4)
        }
        #expect(error == .descriptorIndexOutOfRange(index: 4, tableSize: 4, indirect: false))
        let far = try chainError { d in
            try d.writeDescriptor(index: 0, address: 0x80000, length: 1, flags: Self.next, next: 0xFFFF)
        }
        #expect(far == .descriptorIndexOutOfRange(index: 0xFFFF, tableSize: 4, indirect: false))
    }

    @Test func loopBetweenTwoDescriptors() throws {
        let error = try chainError { d in
            try d.writeDescriptor(index: 0, address: 0x80000, length: 1, flags: Self.next, next: 1)
            try d.writeDescriptor(index: 1, address: 0x80000, length: 1, flags: Self.next, next: 0)
        }
        #expect(error == .chainTooLong(limit: 4, indirect: false))
    }

    @Test func descriptorPointingAtItself() throws {
        let error = try chainError(size: 256) { d in
            try d.writeDescriptor(index: 0, address: 0x80000, length: 0, flags: Self.next, next: 0)
        }
        #expect(error == .chainTooLong(limit: 256, indirect: false))
    }

    /// A chain using every descriptor once is the longest legal one.
    @Test func chainOfExactlyQueueSizeIsAllowed() throws {
        let error = try chainError(size: 4) { d in
            for i in 0..<4 {
                try d.writeDescriptor(index: i, address: 0x80000, length: 1, flags: i < 3 ? Self.next : 0, next: UInt16(i + 1))
            }
        }
        #expect(error == nil)
    }

    @Test func headIndexBeyondQueueSize() throws {
        let driver = try VirtqueueTestDriver(size: 4)
        let queue = try driver.makeQueue()
        try driver.publish(head: 9)
        try driver.post([.init(address: 0x80000, length: 1)])
        #expect(throws: VirtqueueError.headIndexOutOfRange(head: 9, size: 4)) { try queue.nextChain() }
        // The bad entry was consumed; the next chain is fine.
        #expect(try queue.nextChain()?.head == 0)
    }

    @Test func readableAfterWritable() throws {
        let error = try chainError { d in
            try d.writeDescriptor(index: 0, address: 0x80000, length: 1, flags: Self.write | Self.next, next: 1)
            try d.writeDescriptor(index: 1, address: 0x81000, length: 1, flags: 0)
        }
        #expect(error == .readableAfterWritable(address: 0x81000))
    }

    /// The ordering rule spans the switch into an indirect table.
    @Test func readableInIndirectTableAfterWritableDirect() throws {
        let error = try chainError { d in
            try d.writeDescriptor(table: GuestAddress(0x90000), index: 0, address: 0x81000, length: 1, flags: 0)
            try d.writeDescriptor(index: 0, address: 0x80000, length: 1, flags: Self.write | Self.next, next: 1)
            try d.writeDescriptor(index: 1, address: 0x90000, length: 16, flags: Self.indirect)
        }
        #expect(error == .readableAfterWritable(address: 0x81000))
    }

    // MARK: Indirect tables (2.7.5.3)

    @Test func indirectTableOutsideMemory() throws {
        let error = try chainError { d in
            try d.writeDescriptor(index: 0, address: (1 << 20) - 16, length: 32, flags: Self.indirect)
        }
        #expect(error == .indirectTableOutOfMemory(address: (1 << 20) - 16, length: 32))
        let wrapped = try chainError { d in
            try d.writeDescriptor(index: 0, address: 0xFFFF_FFFF_FFFF_FFF0, length: 32, flags: Self.indirect)
        }
        #expect(wrapped == .indirectTableOutOfMemory(address: 0xFFFF_FFFF_FFFF_FFF0, length: 32))
    }

    @Test(arguments: [UInt32(0), 8, 17, 31, 0xFFFF_FFFF])
    func indirectTableLengthNotMultipleOf16(length: UInt32) throws {
        let error = try chainError { d in
            try d.writeDescriptor(index: 0, address: 0x90000, length: length, flags: Self.indirect)
        }
        #expect(error == .invalidIndirectLength(length))
    }

    @Test func nestedIndirectTable() throws {
        let error = try chainError { d in
            try d.writeDescriptor(table: GuestAddress(0x90000), index: 0, address: 0x91000, length: 16, flags: Self.indirect)
            try d.writeDescriptor(index: 0, address: 0x90000, length: 16, flags: Self.indirect)
        }
        #expect(error == .nestedIndirect)
    }

    @Test func indirectCombinedWithNext() throws {
        let error = try chainError { d in
            try d.writeDescriptor(table: GuestAddress(0x90000), index: 0, address: 0x80000, length: 1, flags: 0)
            try d.writeDescriptor(index: 0, address: 0x90000, length: 16, flags: Self.indirect | Self.next, next: 1)
            try d.writeDescriptor(index: 1, address: 0x80000, length: 1, flags: 0)
        }
        #expect(error == .indirectWithNext)
    }

    @Test func loopInsideIndirectTable() throws {
        let error = try chainError { d in
            let table = GuestAddress(0x90000)
            try d.writeDescriptor(table: table, index: 0, address: 0x80000, length: 1, flags: Self.next, next: 1)
            try d.writeDescriptor(table: table, index: 1, address: 0x80000, length: 1, flags: Self.next, next: 2)
            try d.writeDescriptor(table: table, index: 2, address: 0x80000, length: 1, flags: Self.next, next: 0)
            try d.writeDescriptor(index: 0, address: 0x90000, length: 48, flags: Self.indirect)
        }
        #expect(error == .chainTooLong(limit: 3, indirect: true))
    }

    @Test func indirectNextBeyondTable() throws {
        let error = try chainError { d in
            let table = GuestAddress(0x90000)
            try d.writeDescriptor(table: table, index: 0, address: 0x80000, length: 1, flags: Self.next, next: 2)
            try d.writeDescriptor(index: 0, address: 0x90000, length: 32, flags: Self.indirect)
        }
        #expect(error == .descriptorIndexOutOfRange(index: 2, tableSize: 2, indirect: true))
    }

    @Test func indirectBufferOutsideMemory() throws {
        let error = try chainError { d in
            try d.writeDescriptor(table: GuestAddress(0x90000), index: 0, address: 0x200000, length: 4, flags: Self.write)
            try d.writeDescriptor(index: 0, address: 0x90000, length: 16, flags: Self.indirect)
        }
        #expect(error == .descriptorOutOfMemory(address: 0x200000, length: 4))
    }

    // MARK: The available ring

    @Test func availableIndexJumpingPastQueueSizeBreaksTheQueue() throws {
        let driver = try VirtqueueTestDriver(size: 4)
        let queue = try driver.makeQueue()
        try driver.post([.init(address: 0x80000, length: 1)])
        let chain = try #require(try queue.nextChain())
        try driver.setAvailableIndex(1 + 5)  // 5 outstanding in a ring of 4
        let expected = VirtqueueError.availableIndexJumped(lastSeen: 1, published: 6, size: 4)
        #expect(throws: expected) { try queue.nextChain() }
        #expect(queue.isBroken)
        #expect(queue.brokenReason == expected)
        // Broken stays broken, even if the driver puts the index back.
        try driver.setAvailableIndex(1)
        #expect(throws: expected) { try queue.nextChain() }
        #expect(throws: expected) { try queue.addUsed(head: chain.head, length: 0) }
        #expect(!queue.enableNotifications())
    }

    /// Moving avail.idx backwards looks like 65535 new chains: also refused.
    @Test func availableIndexMovingBackwards() throws {
        let driver = try VirtqueueTestDriver(size: 8)
        let queue = try driver.makeQueue()
        try driver.post([.init(address: 0x80000, length: 1)])
        _ = try queue.nextChain()
        try driver.setAvailableIndex(0)
        #expect(throws: VirtqueueError.availableIndexJumped(lastSeen: 1, published: 0, size: 8)) { try queue.nextChain() }
    }

    /// Rings laid over each other so that used.flags is avail.idx (`overlappingRingsQueue`):
    /// once the only chain is taken, re-enabling notifications sets avail.idx back to 0. That
    /// is a jump of 65535, and must break the queue rather than report "more arrived", which
    /// sent every device loop round forever (found by the virtio-net and virtio-vsock fuzz
    /// targets).
    @Test func usedFlagsOverAvailableIndexBreaksTheQueue() throws {
        let queue = try overlappingRingsQueue(memory: try GuestMemory(size: 1 << 20))
        queue.disableNotifications()  // avail.idx = used.flags = 1: one chain, head 0
        let chain = try #require(try queue.nextChain())
        try queue.addUsed(head: chain.head, length: 0)
        #expect(try queue.nextChain() == nil)
        try #require(!queue.enableNotifications(), "avail.idx went from 1 to 0")
        #expect(queue.brokenReason == .availableIndexJumped(lastSeen: 1, published: 0, size: 4))
    }

    /// The same queue served by `drain` (virtio-blk, virtio-rng, the transmit queues): one pass,
    /// then it reports the queue broken.
    @Test func drainOverOverlappingRingsEnds() throws {
        let queue = try overlappingRingsQueue(memory: try GuestMemory(size: 1 << 20))
        nonisolated(unsafe) let unsafeQueue = queue
        let result = try #require(finishes(within: 10) { unsafeQueue.drain { _ in 0 } }, "drain never returned")
        #expect(result.broken)
        #expect(queue.isBroken)
    }

    @Test func deviceReturningABadHead() throws {
        let driver = try VirtqueueTestDriver(size: 4)
        let queue = try driver.makeQueue()
        #expect(throws: VirtqueueError.usedHeadOutOfRange(head: 4, size: 4)) { try queue.addUsed(head: 4, length: 0) }
        #expect(try driver.usedIndex == 0)
    }

    /// copyOut/copyIn stop at the first bad descriptor instead of touching it.
    @Test func helpersRefuseBadChains() throws {
        let driver = try VirtqueueTestDriver(size: 4)
        let queue = try driver.makeQueue()
        try driver.writeDescriptor(index: 0, address: 0x80000, length: 2, flags: Self.next, next: 1)
        try driver.writeDescriptor(index: 1, address: 0xFFFF_0000, length: 4, flags: Self.write)
        try driver.publish(head: 0)
        let chain = try #require(try queue.nextChain())
        var two = [UInt8](repeating: 0, count: 2)
        // The readable part is fine and fills the buffer before the bad descriptor.
        #expect(try two.withUnsafeMutableBytes { try chain.copyOut(into: $0) } == 2)
        var more = [UInt8](repeating: 0, count: 8)
        #expect(throws: VirtqueueError.descriptorOutOfMemory(address: 0xFFFF_0000, length: 4)) {
            try more.withUnsafeMutableBytes { try chain.copyOut(into: $0) }
        }
        let data: [UInt8] = [1, 2, 3]
        #expect(throws: VirtqueueError.descriptorOutOfMemory(address: 0xFFFF_0000, length: 4)) {
            try data.withUnsafeBytes { try chain.copyIn(from: $0) }
        }
    }
}
