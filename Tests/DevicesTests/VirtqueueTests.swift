import GuestMemory
import Testing
@testable import Devices

/// Plays the guest's driver for a split virtqueue: lays the rings out in guest RAM, writes
/// descriptors and publishes chains the way Linux's virtio_ring does (VIRTIO 1.2 2.7.13), and
/// reads back what the device returned.
final class VirtqueueTestDriver {
    typealias L = SplitVirtqueueLayout
    /// One buffer of a chain the driver posts.
    struct Buffer {
        var address: UInt64
        var length: UInt32
        var writable: Bool = false
    }

    let memory: GuestMemory
    let size: UInt16
    let descriptorTable: GuestAddress
    let availableRing: GuestAddress
    let usedRing: GuestAddress
    /// Where `post` hands out its next descriptor (round robin, like a free list that never
    /// runs dry because tests return chains in order).
    var nextDescriptor: UInt16 = 0
    /// The driver's shadow of avail.idx.
    var availableIndex: UInt16 = 0

    /// How far the test has read the used ring (a driver's last_used_idx), for tests that
    /// consume used entries as they come.
    var seenUsed: UInt16 = 0

    convenience init(size: UInt16, memorySize: UInt64 = 1 << 20, descriptorTable: UInt64 = 0x1000) throws {
        self.init(memory: try GuestMemory(size: memorySize), size: size, base: descriptorTable)
    }

    /// A queue whose rings start at `base` in `memory`, which other queues of a device share.
    init(memory: GuestMemory, size: UInt16, base descriptorTable: UInt64) {
        self.memory = memory
        self.size = size
        self.descriptorTable = GuestAddress(descriptorTable)
        let avail = descriptorTable + L.descriptorTableSize(size)
        availableRing = GuestAddress(avail)
        usedRing = GuestAddress((avail + L.availableRingSize(size) + 3) & ~3)
    }

    func configuration(eventIndex: Bool = false, ready: Bool = true) -> VirtqueueConfiguration {
        VirtqueueConfiguration(size: size, descriptorTable: descriptorTable, availableRing: availableRing,
                               usedRing: usedRing, eventIndex: eventIndex, ready: ready)
    }

    func makeQueue(eventIndex: Bool = false) throws -> SplitVirtqueue {
        try SplitVirtqueue(memory: memory, configuration: configuration(eventIndex: eventIndex))
    }

    /// Writes one struct virtq_desc (2.7.5) into the table at `table`.
    func writeDescriptor(table: GuestAddress? = nil, index: Int, address: UInt64, length: UInt32,
                         flags: UInt16, next: UInt16 = 0) throws {
        let entry = (table ?? descriptorTable).rawValue + UInt64(index) * 16
        try memory.store(address, at: GuestAddress(entry))
        try memory.store(length, at: GuestAddress(entry + 8))
        try memory.store(flags, at: GuestAddress(entry + 12))
        try memory.store(next, at: GuestAddress(entry + 14))
    }

    /// Puts `head` in the next available slot and bumps avail.idx (2.7.13).
    func publish(head: UInt16) throws {
        let slot = UInt64(availableIndex & (size - 1))
        try memory.store(head, at: GuestAddress(availableRing.rawValue + 4 + 2 * slot))
        availableIndex &+= 1
        try setAvailableIndex(availableIndex)
    }

    func setAvailableIndex(_ index: UInt16) throws {
        try memory.store(index, at: GuestAddress(availableRing.rawValue + 2))
    }

    /// Chains `buffers` through consecutive descriptors and publishes the chain; returns its head.
    @discardableResult
    func post(_ buffers: [Buffer]) throws -> UInt16 {
        let head = nextDescriptor
        for (i, buffer) in buffers.enumerated() {
            let index = nextDescriptor
            nextDescriptor = (nextDescriptor + 1) & (size - 1)
            let last = i == buffers.count - 1
            let flags = (buffer.writable ? L.descriptorFlagWrite : 0) | (last ? 0 : L.descriptorFlagNext)
            try writeDescriptor(index: Int(index), address: buffer.address, length: buffer.length,
                                flags: flags, next: last ? 0 : nextDescriptor)
        }
        try publish(head: head)
        return head
    }

    /// Writes `buffers` as an indirect table at `table` and posts one descriptor pointing at it.
    @discardableResult
    func postIndirect(_ buffers: [Buffer], table: UInt64) throws -> UInt16 {
        for (i, buffer) in buffers.enumerated() {
            let last = i == buffers.count - 1
            let flags = (buffer.writable ? L.descriptorFlagWrite : 0) | (last ? 0 : L.descriptorFlagNext)
            try writeDescriptor(table: GuestAddress(table), index: i, address: buffer.address,
                                length: buffer.length, flags: flags, next: last ? 0 : UInt16(i + 1))
        }
        let head = nextDescriptor
        nextDescriptor = (nextDescriptor + 1) & (size - 1)
        try writeDescriptor(index: Int(head), address: table, length: UInt32(buffers.count * 16),
                            flags: L.descriptorFlagIndirect)
        try publish(head: head)
        return head
    }

    // The device's side of the rings, as the driver reads it.
    var usedIndex: UInt16 { get throws { try memory.load(at: GuestAddress(usedRing.rawValue + 2)) } }
    func usedElement(_ position: UInt16) throws -> (id: UInt32, length: UInt32) {
        let entry = usedRing.rawValue + 4 + 8 * UInt64(position & (size - 1))
        return (try memory.load(at: GuestAddress(entry)), try memory.load(at: GuestAddress(entry + 4)))
    }
    var usedFlags: UInt16 { get throws { try memory.load(at: GuestAddress(usedRing.rawValue)) } }
    var availableEvent: UInt16 {
        get throws { try memory.load(at: GuestAddress(usedRing.rawValue + 4 + 8 * UInt64(size))) }
    }
    func setUsedEvent(_ value: UInt16) throws {
        try memory.store(value, at: GuestAddress(availableRing.rawValue + 4 + 2 * UInt64(size)))
    }
    func setAvailableFlags(_ value: UInt16) throws {
        try memory.store(value, at: GuestAddress(availableRing.rawValue))
    }

    func fill(_ address: UInt64, _ bytes: [UInt8]) throws { try memory.write(bytes, at: GuestAddress(address)) }
    func read(_ address: UInt64, _ count: Int) throws -> [UInt8] {
        try memory.read(at: GuestAddress(address), count: UInt64(count))
    }
}

/// Walks a chain to the end, collecting (address, length, writable).
func walkChain(_ chain: DescriptorChain) throws -> [(UInt64, UInt32, Bool)] {
    var chain = chain
    var out: [(UInt64, UInt32, Bool)] = []
    while let d = try chain.next() {
        #expect(d.bytes.count == Int(d.length))
        out.append((d.address.rawValue, d.length, d.isWriteOnly))
    }
    return out
}

@Suite struct VirtqueueTests {
    @Test func emptyQueueHasNoChain() throws {
        let driver = try VirtqueueTestDriver(size: 8)
        let queue = try driver.makeQueue()
        #expect(try queue.nextChain() == nil)
        #expect(queue.lastAvailableIndex == 0)
    }

    @Test func singleReadableDescriptor() throws {
        let driver = try VirtqueueTestDriver(size: 8)
        let queue = try driver.makeQueue()
        try driver.fill(0x80000, Array("hello".utf8))
        let head = try driver.post([.init(address: 0x80000, length: 5)])

        let chain = try #require(try queue.nextChain())
        #expect(chain.head == head)
        let descriptors = try walkChain(chain)
        #expect(descriptors.count == 1)
        #expect(descriptors[0] == (0x80000, 5, false))
        #expect(try chain.lengths() == (5, 0))
        var out = [UInt8](repeating: 0, count: 16)
        let copied = try out.withUnsafeMutableBytes { try chain.copyOut(into: $0) }
        #expect(copied == 5)
        #expect(Array(out[..<5]) == Array("hello".utf8))
        #expect(try queue.nextChain() == nil)

        try queue.addUsed(head: chain.head, length: 0)
        #expect(try driver.usedIndex == 1)
        #expect(try driver.usedElement(0) == (UInt32(head), 0))
    }

    /// A virtio-blk style request: 16-byte header (readable), data split over two writable
    /// buffers, then a 1-byte status (writable).
    @Test func multiDescriptorChainCopiesAcrossBuffers() throws {
        let driver = try VirtqueueTestDriver(size: 8)
        let queue = try driver.makeQueue()
        try driver.fill(0x80000, Array(0..<16))
        try driver.post([
            .init(address: 0x80000, length: 16),
            .init(address: 0x81000, length: 6, writable: true),
            .init(address: 0x82000, length: 4, writable: true),
            .init(address: 0x83000, length: 1, writable: true),
        ])
        let chain = try #require(try queue.nextChain())
        #expect(try chain.lengths() == (16, 11))

        var header = [UInt8](repeating: 0, count: 8)
        #expect(try header.withUnsafeMutableBytes { try chain.copyOut(into: $0, offset: 4) } == 8)
        #expect(header == Array(4..<12))

        let data: [UInt8] = Array(100..<110)
        #expect(try data.withUnsafeBytes { try chain.copyIn(from: $0) } == 10)
        let status: [UInt8] = [0]
        #expect(try status.withUnsafeBytes { try chain.copyIn(from: $0, offset: 10) } == 1)
        #expect(try driver.read(0x81000, 6) == Array(100..<106))
        #expect(try driver.read(0x82000, 4) == Array(106..<110))
        #expect(try driver.read(0x83000, 1) == [0])
        // Past the end of the writable part: nothing more fits.
        #expect(try data.withUnsafeBytes { try chain.copyIn(from: $0, offset: 11) } == 0)
        // Readable part shorter than the destination.
        var big = [UInt8](repeating: 0, count: 64)
        #expect(try big.withUnsafeMutableBytes { try chain.copyOut(into: $0) } == 16)

        try queue.addUsed(head: chain.head, length: 11)
        #expect(try driver.usedElement(0) == (0, 11))
    }

    @Test func indirectChain() throws {
        let driver = try VirtqueueTestDriver(size: 4)
        let queue = try driver.makeQueue()
        try driver.fill(0x80000, [1, 2, 3])
        let head = try driver.postIndirect([
            .init(address: 0x80000, length: 3),
            .init(address: 0x81000, length: 0x200, writable: true),
            .init(address: 0x82000, length: 1, writable: true),
        ], table: 0x90000)
        let chain = try #require(try queue.nextChain())
        #expect(chain.head == head)
        let descriptors = try walkChain(chain)
        #expect(descriptors.count == 3)
        #expect(descriptors[0] == (0x80000, 3, false))
        #expect(descriptors[1] == (0x81000, 0x200, true))
        #expect(descriptors[2] == (0x82000, 1, true))
        #expect(try chain.lengths() == (3, 0x201))
    }

    /// 2.7.5.3.1 only forbids NEXT on the indirect descriptor itself, so direct buffers may
    /// precede it; and its own WRITE flag is ignored.
    @Test func directBuffersThenIndirectTable() throws {
        let driver = try VirtqueueTestDriver(size: 4)
        let queue = try driver.makeQueue()
        try driver.writeDescriptor(table: GuestAddress(0x90000), index: 0, address: 0x81000, length: 8,
                                   flags: SplitVirtqueueLayout.descriptorFlagWrite)
        try driver.writeDescriptor(index: 0, address: 0x80000, length: 4, flags: SplitVirtqueueLayout.descriptorFlagNext,
                                   next: 2)
        try driver.writeDescriptor(index: 2, address: 0x90000, length: 16,
                                   flags: SplitVirtqueueLayout.descriptorFlagIndirect | SplitVirtqueueLayout.descriptorFlagWrite)
        try driver.publish(head: 0)
        let chain = try #require(try queue.nextChain())
        let descriptors = try walkChain(chain)
        #expect(descriptors.count == 2)
        #expect(descriptors[0] == (0x80000, 4, false))
        #expect(descriptors[1] == (0x81000, 8, true))
    }

    /// Zero-length buffers are legal; their address is never looked up, even when it is garbage.
    @Test func zeroLengthDescriptorsAreTolerated() throws {
        let driver = try VirtqueueTestDriver(size: 4)
        let queue = try driver.makeQueue()
        try driver.post([
            .init(address: 0xFFFF_FFFF_FFFF_FFF0, length: 0),
            .init(address: 0x80000, length: 2),
            .init(address: 0xDEAD_0000_0000, length: 0, writable: true),
        ])
        let chain = try #require(try queue.nextChain())
        let descriptors = try walkChain(chain)
        #expect(descriptors.count == 3)
        #expect(try chain.lengths() == (2, 0))
        let data: [UInt8] = [1]
        #expect(try data.withUnsafeBytes { try chain.copyIn(from: $0) } == 0)
        var out = [UInt8](repeating: 0, count: 4)
        #expect(try out.withUnsafeMutableBytes { try chain.copyOut(into: $0) } == 2)
    }

    @Test func rewindRestartsTheWalk() throws {
        let driver = try VirtqueueTestDriver(size: 4)
        let queue = try driver.makeQueue()
        try driver.post([.init(address: 0x80000, length: 1), .init(address: 0x80010, length: 2)])
        var chain = try #require(try queue.nextChain())
        #expect(try chain.next()?.length == 1)
        let copy = chain
        #expect(try chain.next()?.length == 2)
        #expect(try chain.next() == nil)
        var resumed = copy
        #expect(try resumed.next()?.length == 2)
        chain.rewind()
        #expect(try chain.next()?.length == 1)
    }

    /// The 16-bit free-running indices wrap after 65536 requests (2.7.6, 2.7.8).
    @Test func indicesWrapAfter65536Requests() throws {
        let driver = try VirtqueueTestDriver(size: 4)
        let queue = try driver.makeQueue()
        let total = 65536 + 70
        for request in 0..<total {
            // Keep two chains in flight so the ring index and the descriptor index differ.
            let head = try driver.post([.init(address: 0x80000, length: 4), .init(address: 0x80100, length: 4, writable: true)])
            let chain = try #require(try queue.nextChain())
            #expect(chain.head == head)
            try queue.addUsed(head: chain.head, length: UInt32(request & 0xFFFF))
            #expect(try driver.usedElement(UInt16(truncatingIfNeeded: request)).id == UInt32(head))
        }
        #expect(queue.lastAvailableIndex == UInt16(truncatingIfNeeded: total))
        #expect(queue.nextUsedIndex == 70)
        #expect(try driver.usedIndex == 70)
        #expect(try queue.nextChain() == nil)
    }

    /// A full ring (exactly Queue Size outstanding) is legal and drains, also across the wrap.
    @Test func fullRingsAcrossTheWrap() throws {
        let driver = try VirtqueueTestDriver(size: 8)
        let queue = try driver.makeQueue()
        for _ in 0..<8193 {  // 65544 requests, each batch fills the ring
            for _ in 0..<8 { try driver.post([.init(address: 0x80000, length: 1)]) }
            var taken = 0
            while let chain = try queue.nextChain() {
                taken += 1
                try queue.addUsed(head: chain.head, length: 1)
            }
            #expect(taken == 8)
        }
        #expect(queue.lastAvailableIndex == 8)
        #expect(try driver.usedIndex == 8)
    }

    @Test func notReadyQueueHandsOutNothing() throws {
        let driver = try VirtqueueTestDriver(size: 4)
        let queue = try SplitVirtqueue(memory: driver.memory, configuration: driver.configuration(ready: false))
        try driver.post([.init(address: 0x80000, length: 1)])
        #expect(try queue.nextChain() == nil)
        #expect(throws: VirtqueueError.notReady) { try queue.addUsed(head: 0, length: 0) }
        #expect(!queue.needsNotification())
        queue.ready = true
        #expect(try queue.nextChain()?.head == 0)
    }

    // MARK: Configuration

    @Test(arguments: [UInt16(1), 2, 4, 256, 1024, 32768])
    func validQueueSizes(size: UInt16) throws {
        let driver = try VirtqueueTestDriver(size: size, memorySize: 4 << 20)
        let queue = try driver.makeQueue()
        #expect(queue.size == size)
    }

    @Test(arguments: [UInt16(0), 3, 6, 100, 32769, 40000, 65535])
    func invalidQueueSizes(size: UInt16) throws {
        let driver = try VirtqueueTestDriver(size: 4)
        var config = driver.configuration()
        config.size = size
        #expect(throws: VirtqueueError.invalidQueueSize(size)) {
            try SplitVirtqueue(memory: driver.memory, configuration: config)
        }
    }

    @Test func misalignedRingsAreRefused() throws {
        let driver = try VirtqueueTestDriver(size: 4)
        let memory = driver.memory
        var config = driver.configuration()
        config.descriptorTable = GuestAddress(0x1008)
        #expect(throws: VirtqueueError.misalignedRing(.descriptorTable, address: 0x1008, alignment: 16)) {
            try SplitVirtqueue(memory: memory, configuration: config)
        }
        config = driver.configuration()
        config.availableRing = GuestAddress(0x5001)
        #expect(throws: VirtqueueError.misalignedRing(.availableRing, address: 0x5001, alignment: 2)) {
            try SplitVirtqueue(memory: memory, configuration: config)
        }
        config = driver.configuration()
        config.usedRing = GuestAddress(0x6002)
        #expect(throws: VirtqueueError.misalignedRing(.usedRing, address: 0x6002, alignment: 4)) {
            try SplitVirtqueue(memory: memory, configuration: config)
        }
    }

    @Test func ringsOutsideMemoryAreRefused() throws {
        let driver = try VirtqueueTestDriver(size: 4)  // 1 MiB of RAM
        let memory = driver.memory
        var config = driver.configuration()
        config.descriptorTable = GuestAddress((1 << 20) - 48)  // 64-byte table, 48 bytes left
        #expect(throws: VirtqueueError.ringOutOfMemory(.descriptorTable, address: (1 << 20) - 48, length: 64)) {
            try SplitVirtqueue(memory: memory, configuration: config)
        }
        // The used ring fits without avail_event but not with it: the event field counts.
        config = driver.configuration()
        config.usedRing = GuestAddress((1 << 20) - 36)
        #expect(throws: VirtqueueError.ringOutOfMemory(.usedRing, address: (1 << 20) - 36, length: 38)) {
            try SplitVirtqueue(memory: memory, configuration: config)
        }
        config = driver.configuration()
        config.availableRing = GuestAddress(0xFFFF_FFFF_FFFF_FFFE)
        #expect(throws: VirtqueueError.ringOutOfMemory(.availableRing, address: 0xFFFF_FFFF_FFFF_FFFE, length: 14)) {
            try SplitVirtqueue(memory: memory, configuration: config)
        }
    }

    /// Guest memory borrowed from a host buffer whose alignment disagrees with the guest's.
    @Test func hostMisalignedRingIsRefused() throws {
        let host = UnsafeMutableRawPointer.allocate(byteCount: 0x10000 + 1, alignment: 16)
        defer { host.deallocate() }
        let region = GuestMemoryRegion(base: GuestAddress(0), size: 0x10000, borrowing: host + 1)
        let memory = try GuestMemory(regions: [region])
        let config = VirtqueueConfiguration(size: 4, descriptorTable: GuestAddress(0x1000),
                                            availableRing: GuestAddress(0x2000), usedRing: GuestAddress(0x3000))
        #expect(throws: VirtqueueError.ringHostMisaligned(.descriptorTable)) {
            try SplitVirtqueue(memory: memory, configuration: config)
        }
    }

    @Test func errorsDescribeThemselvesOnOneLine() {
        let errors: [VirtqueueError] = [
            .invalidQueueSize(3), .misalignedRing(.usedRing, address: 2, alignment: 4),
            .availableIndexJumped(lastSeen: 1, published: 100, size: 8), .chainTooLong(limit: 8, indirect: true),
            .readableAfterWritable(address: 0x1000), .nestedIndirect, .indirectWithNext,
        ]
        for error in errors {
            #expect(error.description.hasPrefix("virtqueue: "))
            #expect(!error.description.contains("\n"))
        }
        #expect(VirtqueueError.availableIndexJumped(lastSeen: 1, published: 100, size: 8).description.contains("2.7.6"))
    }
}
