import Glibc
import GuestMemory
import Synchronization
import Testing
import Backends
@testable import Devices

/// Counts used-buffer and configuration interrupts.
private final class BlockTestInterrupt: VirtioInterrupt {
    private let counts = Mutex<(used: Int, config: Int)>((0, 0))
    func signalUsedBuffers(queue: Int) { counts.withLock { $0.used += 1 } }
    func signalConfigurationChange() { counts.withLock { $0.config += 1 } }
    var used: Int { counts.withLock { $0.used } }
}

/// A temporary disk image, deleted on deinit.
private final class TempImage {
    let path: String
    init(_ bytes: [UInt8]) {
        var template = Array("/tmp/swiftlet-blk-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        precondition(fd >= 0, "mkstemp failed")
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        precondition(written == bytes.count)
        close(fd)
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
    convenience init(sectors: Int, pattern: (Int) -> UInt8 = { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }) {
        self.init((0..<sectors * 512).map(pattern))
    }
    deinit { unlink(path) }

    /// The file's bytes [offset, offset + count).
    func read(_ offset: Int, _ count: Int) -> [UInt8] {
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        #expect(got == count)
        return bytes
    }
    var contents: [UInt8] {
        var info = stat()
        stat(path, &info)
        return read(0, Int(info.st_size))
    }
}

/// A virtio-blk device on a temp image, driven through a split virtqueue.
private final class BlockHarness {
    typealias Buffer = VirtqueueTestDriver.Buffer
    typealias Spec = VirtioBlockSpec
    static let header: UInt64 = 0x20000
    static let data: UInt64 = 0x30000
    static let status: UInt64 = 0x60000

    let image: TempImage
    let driver: VirtqueueTestDriver
    let device: VirtioBlock
    let interrupt = BlockTestInterrupt()

    init(sectors: Int = 64, readOnly: Bool = false, serial: String? = nil, queueSize: UInt16 = 8,
         eventIndex: Bool = false) throws {
        image = TempImage(sectors: sectors)
        driver = try VirtqueueTestDriver(size: queueSize)
        device = try VirtioBlock(path: image.path, readOnly: readOnly, serial: serial)
        try device.activate(features: device.deviceFeatures | VirtioFeature.version1,
                            memory: driver.memory, queues: [try driver.makeQueue(eventIndex: eventIndex)],
                            interrupt: interrupt)
    }

    func writeHeader(type: UInt32, sector: UInt64, at address: UInt64 = header) throws {
        try driver.memory.store(type, at: GuestAddress(address))
        try driver.memory.store(UInt32(0), at: GuestAddress(address + 4))
        try driver.memory.store(sector, at: GuestAddress(address + 8))
    }

    /// Posts one chain, notifies, and returns its used length (checking it came back).
    func run(_ buffers: [Buffer]) throws -> UInt32 {
        let before = try driver.usedIndex
        try driver.post(buffers)
        device.queueNotified(0)
        #expect(try driver.usedIndex == before &+ 1)
        return try driver.usedElement(before).length
    }

    var status: UInt8 { get throws { try driver.memory.load(at: GuestAddress(Self.status)) } }

    /// A request in the usual Linux shape: header, data buffers, status.
    func request(type: UInt32, sector: UInt64, out: [UInt8] = [], inLength: Int = 0) throws
        -> (status: UInt8, used: UInt32, data: [UInt8])
    {
        try writeHeader(type: type, sector: sector)
        try driver.memory.store(UInt8(0xEE), at: GuestAddress(Self.status))
        var buffers = [Buffer(address: Self.header, length: 16)]
        if !out.isEmpty {
            try driver.fill(Self.data, out)
            buffers.append(Buffer(address: Self.data, length: UInt32(out.count)))
        }
        if inLength > 0 {
            try driver.memory.fill(at: GuestAddress(Self.data), count: UInt64(inLength), with: 0xCC)
            buffers.append(Buffer(address: Self.data, length: UInt32(inLength), writable: true))
        }
        buffers.append(Buffer(address: Self.status, length: 1, writable: true))
        let used = try run(buffers)
        return (try status, used, inLength > 0 ? try driver.read(Self.data, inLength) : [])
    }

    func segment(sector: UInt64, count: UInt32, flags: UInt32) -> [UInt8] {
        withUnsafeBytes(of: sector.littleEndian) { Array($0) } + withUnsafeBytes(of: count.littleEndian) { Array($0) }
            + withUnsafeBytes(of: flags.littleEndian) { Array($0) }
    }
}

private func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
}

@Suite struct VirtioBlockTests {
    typealias Spec = VirtioBlockSpec

    @Test func writeThenReadRoundTrip() throws {
        let h = try BlockHarness()
        let data = pattern(1024, seed: 5)
        let write = try h.request(type: Spec.requestOut, sector: 3, out: data)
        #expect(write.status == Spec.statusOK)
        #expect(write.used == 1)
        #expect(h.image.read(3 * 512, 1024) == data)
        // Neighbours untouched.
        #expect(h.image.read(2 * 512, 512) == TempImage(sectors: 64).read(2 * 512, 512))

        let read = try h.request(type: Spec.requestIn, sector: 3, inLength: 1024)
        #expect(read.status == Spec.statusOK)
        #expect(read.used == 1025)
        #expect(read.data == data)
        #expect(h.device.requests == 2)
        #expect(h.device.bytesRead == 1024)
        #expect(h.device.bytesWritten == 1024)
        #expect(h.device.errors == 0)
    }

    @Test func readReturnsFileContents() throws {
        let h = try BlockHarness()
        let read = try h.request(type: Spec.requestIn, sector: 10, inLength: 2048)
        #expect(read.status == Spec.statusOK)
        #expect(read.data == h.image.read(10 * 512, 2048))
    }

    @Test func multiDescriptorDataAndOddFraming() throws {
        let h = try BlockHarness()
        // OUT: header and the first data bytes share one buffer; data continues over two more.
        let data = pattern(1536, seed: 9)
        try h.writeHeader(type: Spec.requestOut, sector: 7, at: 0x40000)
        try h.driver.fill(0x40010, Array(data[0..<100]))
        try h.driver.fill(0x41000, Array(data[100..<612]))
        try h.driver.fill(0x42000, Array(data[612...]))
        let used = try h.run([.init(address: 0x40000, length: 116), .init(address: 0x41000, length: 512),
                              .init(address: 0x42000, length: 924),
                              .init(address: BlockHarness.status, length: 1, writable: true)])
        #expect(used == 1)
        #expect(try h.status == Spec.statusOK)
        #expect(h.image.read(7 * 512, 1536) == data)

        // IN: header split over two buffers; data over three; status is the last byte of the last
        // data buffer.
        try h.writeHeader(type: Spec.requestIn, sector: 7, at: 0x40000)
        try h.driver.memory.fill(at: GuestAddress(0x50000), count: 0x3000, with: 0)
        let used2 = try h.run([.init(address: 0x40000, length: 5), .init(address: 0x40005, length: 11),
                               .init(address: 0x50000, length: 1000, writable: true),
                               .init(address: 0x51000, length: 0, writable: true),
                               .init(address: 0x52000, length: 537, writable: true)])
        #expect(used2 == 1537)
        let got = try h.driver.read(0x50000, 1000) + h.driver.read(0x52000, 536)
        #expect(got == data)
        #expect(try h.driver.read(0x52000 + 536, 1) == [Spec.statusOK])
    }

    @Test func indirectChain() throws {
        let h = try BlockHarness()
        try h.writeHeader(type: Spec.requestIn, sector: 1)
        h.driver.nextDescriptor = 0
        try h.driver.postIndirect([.init(address: BlockHarness.header, length: 16),
                                   .init(address: BlockHarness.data, length: 512, writable: true),
                                   .init(address: BlockHarness.status, length: 1, writable: true)],
                                  table: 0x70000)
        h.device.queueNotified(0)
        #expect(try h.driver.usedElement(0).length == 513)
        #expect(try h.status == Spec.statusOK)
        #expect(try h.driver.read(BlockHarness.data, 512) == h.image.read(512, 512))
    }

    @Test func segmentLimit() throws {
        // seg_max (254) data buffers plus header and status: the most a request may have.
        let h = try BlockHarness(sectors: 300)
        for (segments, expected) in [(254, Spec.statusOK), (255, Spec.statusIOError)] {
            try h.writeHeader(type: Spec.requestIn, sector: 1)
            try h.driver.memory.store(UInt8(0xEE), at: GuestAddress(BlockHarness.status))
            let data = (0..<segments).map { i in
                VirtqueueTestDriver.Buffer(address: 0x80000 + UInt64(i) * 512, length: 512, writable: true)
            }
            let before = try h.driver.usedIndex
            try h.driver.postIndirect([.init(address: BlockHarness.header, length: 16)] + data
                                      + [.init(address: BlockHarness.status, length: 1, writable: true)],
                                      table: 0x70000)
            h.device.queueNotified(0)
            #expect(try h.status == expected)
            let used = try h.driver.usedElement(before).length
            #expect(used == (expected == Spec.statusOK ? UInt32(segments * 512 + 1) : 1))
            if expected == Spec.statusOK {
                #expect(try h.driver.read(0x80000, segments * 512) == h.image.read(512, segments * 512))
            }
        }
    }

    @Test func flush() throws {
        let h = try BlockHarness()
        let result = try h.request(type: Spec.requestFlush, sector: 0)
        #expect(result.status == Spec.statusOK)
        #expect(result.used == 1)
    }

    @Test func getID() throws {
        let h = try BlockHarness(serial: "swiftlet-disk0")
        let result = try h.request(type: Spec.requestGetID, sector: 0, inLength: 20)
        #expect(result.status == Spec.statusOK)
        #expect(result.used == 21)
        #expect(result.data == Array("swiftlet-disk0".utf8) + [UInt8](repeating: 0, count: 6))

        let none = try BlockHarness()
        #expect(try none.request(type: Spec.requestGetID, sector: 0, inLength: 20).data == [UInt8](repeating: 0, count: 20))
        #expect(throws: VirtioDeviceError.self) {
            _ = try VirtioBlock(path: h.image.path, readOnly: true, serial: String(repeating: "x", count: 21))
        }
    }

    @Test func writeZeroesAndDiscardZeroTheRange() throws {
        for (type, flags) in [(Spec.requestWriteZeroes, UInt32(0)), (Spec.requestWriteZeroes, Spec.segmentFlagUnmap),
                              (Spec.requestDiscard, UInt32(0))] {
            let h = try BlockHarness()
            let original = h.image.contents
            // 8 sectors from sector 16: a whole 4 KiB block, so a punched hole reads as zeros too.
            let result = try h.request(type: type, sector: 0, out: h.segment(sector: 16, count: 8, flags: flags))
            #expect(result.status == Spec.statusOK)
            #expect(result.used == 1)
            let after = h.image.contents
            #expect(after.count == original.count, "size kept")
            #expect(Array(after[(16 * 512)..<(24 * 512)]) == [UInt8](repeating: 0, count: 8 * 512))
            #expect(Array(after[..<(16 * 512)]) == Array(original[..<(16 * 512)]))
            #expect(Array(after[(24 * 512)...]) == Array(original[(24 * 512)...]))
        }
    }

    @Test func writeZeroesUnaligned() throws {
        let h = try BlockHarness()
        let original = h.image.contents
        let result = try h.request(type: Spec.requestWriteZeroes, sector: 0, out: h.segment(sector: 3, count: 2, flags: 0))
        #expect(result.status == Spec.statusOK)
        let after = h.image.contents
        #expect(Array(after[1536..<2560]) == [UInt8](repeating: 0, count: 1024))
        #expect(Array(after[..<1536]) == Array(original[..<1536]))
        #expect(Array(after[2560...]) == Array(original[2560...]))
    }

    @Test func discardAndWriteZeroesChecks() throws {
        let h = try BlockHarness(sectors: 64)
        let original = h.image.contents
        // Unmap on a discard, and unknown flags: UNSUPP (5.2.6.2).
        #expect(try h.request(type: Spec.requestDiscard, sector: 0,
                              out: h.segment(sector: 0, count: 8, flags: 1)).status == Spec.statusUnsupported)
        #expect(try h.request(type: Spec.requestWriteZeroes, sector: 0,
                              out: h.segment(sector: 0, count: 8, flags: 2)).status == Spec.statusUnsupported)
        // Out of range, overflowing, two segments (max_*_seg is 1), a short segment: IOERR.
        #expect(try h.request(type: Spec.requestWriteZeroes, sector: 0,
                              out: h.segment(sector: 60, count: 5, flags: 0)).status == Spec.statusIOError)
        #expect(try h.request(type: Spec.requestWriteZeroes, sector: 0,
                              out: h.segment(sector: .max, count: 2, flags: 0)).status == Spec.statusIOError)
        #expect(try h.request(type: Spec.requestDiscard, sector: 0,
                              out: h.segment(sector: 0, count: 1, flags: 0) + h.segment(sector: 2, count: 1, flags: 0))
            .status == Spec.statusIOError)
        #expect(try h.request(type: Spec.requestDiscard, sector: 0,
                              out: Array(h.segment(sector: 0, count: 1, flags: 0)[..<12])).status == Spec.statusIOError)
        #expect(try h.request(type: Spec.requestWriteZeroes, sector: 0,
                              out: h.segment(sector: 0, count: VirtioBlock.maximumZeroingSectors + 1, flags: 0))
            .status == Spec.statusIOError)
        #expect(h.image.contents == original)
        // The last sector, and zero sectors, are fine.
        #expect(try h.request(type: Spec.requestWriteZeroes, sector: 0,
                              out: h.segment(sector: 63, count: 1, flags: 0)).status == Spec.statusOK)
        #expect(try h.request(type: Spec.requestDiscard, sector: 0,
                              out: h.segment(sector: 64, count: 0, flags: 0)).status == Spec.statusOK)
    }

    @Test func readOnlyRefusesWrites() throws {
        let h = try BlockHarness(readOnly: true)
        let original = h.image.contents
        #expect(h.device.deviceFeatures & Spec.featureReadOnly != 0)
        #expect(h.device.deviceFeatures & (Spec.featureDiscard | Spec.featureWriteZeroes) == 0)
        #expect(try h.request(type: Spec.requestOut, sector: 0, out: pattern(512, seed: 1)).status == Spec.statusIOError)
        #expect(try h.request(type: Spec.requestWriteZeroes, sector: 0,
                              out: h.segment(sector: 0, count: 8, flags: 0)).status == Spec.statusIOError)
        #expect(try h.request(type: Spec.requestDiscard, sector: 0,
                              out: h.segment(sector: 0, count: 8, flags: 0)).status == Spec.statusIOError)
        #expect(h.image.contents == original)
        let read = try h.request(type: Spec.requestIn, sector: 0, inLength: 512)
        #expect(read.status == Spec.statusOK)
        #expect(read.data == Array(original[..<512]))
        #expect(try h.request(type: Spec.requestFlush, sector: 0).status == Spec.statusOK)
        #expect(h.device.errors == 3)
    }

    @Test func sectorRangeChecks() throws {
        let h = try BlockHarness(sectors: 16)
        #expect(h.device.capacity == 16)
        #expect(try h.request(type: Spec.requestIn, sector: 15, inLength: 512).status == Spec.statusOK)
        #expect(try h.request(type: Spec.requestIn, sector: 15, inLength: 1024).status == Spec.statusIOError)
        #expect(try h.request(type: Spec.requestIn, sector: 16, inLength: 512).status == Spec.statusIOError)
        #expect(try h.request(type: Spec.requestOut, sector: 16, out: pattern(512, seed: 2)).status == Spec.statusIOError)
        // sector * 512 and sector + count both overflow here.
        for sector: UInt64 in [.max, .max / 512 + 1, .max - 1] {
            let read = try h.request(type: Spec.requestIn, sector: sector, inLength: 512)
            #expect(read.status == Spec.statusIOError)
            #expect(read.used == 1)
            #expect(try h.request(type: Spec.requestOut, sector: sector, out: pattern(512, seed: 3)).status == Spec.statusIOError)
        }
        #expect(h.device.bytesWritten == 0)
    }

    @Test func partialSectorAtEndOfFileIsNotAddressable() throws {
        let image = TempImage((0..<1000).map { UInt8(truncatingIfNeeded: $0) })
        let device = try VirtioBlock(path: image.path, readOnly: true)
        #expect(device.capacity == 1)
    }

    @Test func lengthMustBeWholeSectors() throws {
        let h = try BlockHarness()
        let original = h.image.contents
        #expect(try h.request(type: Spec.requestIn, sector: 0, inLength: 100).status == Spec.statusIOError)
        #expect(try h.request(type: Spec.requestOut, sector: 0, out: pattern(513, seed: 4)).status == Spec.statusIOError)
        #expect(h.image.contents == original)
    }

    @Test func missingStatusDescriptorIsReturnedUnused() throws {
        let h = try BlockHarness()
        try h.writeHeader(type: Spec.requestFlush, sector: 0)
        #expect(try h.run([.init(address: BlockHarness.header, length: 16)]) == 0)
        // A zero-length writable buffer is no status byte either.
        #expect(try h.run([.init(address: BlockHarness.header, length: 16),
                           .init(address: BlockHarness.status, length: 0, writable: true)]) == 0)
        #expect(h.device.errors == 2)
        // The queue still works.
        #expect(try h.request(type: Spec.requestFlush, sector: 0).status == Spec.statusOK)
    }

    @Test func shortHeaderGetsIOError() throws {
        let h = try BlockHarness()
        try h.writeHeader(type: Spec.requestIn, sector: 0)
        try h.driver.memory.store(UInt8(0xEE), at: GuestAddress(BlockHarness.status))
        let used = try h.run([.init(address: BlockHarness.header, length: 8),
                              .init(address: BlockHarness.status, length: 1, writable: true)])
        #expect(used == 1)
        #expect(try h.status == Spec.statusIOError)
        // No readable part at all.
        try h.driver.memory.store(UInt8(0xEE), at: GuestAddress(BlockHarness.status))
        #expect(try h.run([.init(address: BlockHarness.status, length: 1, writable: true)]) == 1)
        #expect(try h.status == Spec.statusIOError)
    }

    @Test func badDescriptorReturnsChainUnused() throws {
        let h = try BlockHarness()
        try h.writeHeader(type: Spec.requestIn, sector: 0)
        // Data buffer outside guest memory (1 MiB).
        let used = try h.run([.init(address: BlockHarness.header, length: 16),
                              .init(address: 0x200000, length: 512, writable: true),
                              .init(address: BlockHarness.status, length: 1, writable: true)])
        #expect(used == 0)
        #expect(h.device.errors == 1)
        #expect(!h.device.needsReset)
    }

    @Test func unknownTypeIsUnsupported() throws {
        let h = try BlockHarness()
        for type: UInt32 in [2, 10, 14, 99, .max] {
            let result = try h.request(type: type, sector: 0, inLength: 512)
            #expect(result.status == Spec.statusUnsupported)
            #expect(result.used == 1)
        }
    }

    @Test func notificationSuppression() throws {
        let h = try BlockHarness()
        // Three requests, one notify: one interrupt for the batch.
        for i in 0..<3 {
            try h.writeHeader(type: Spec.requestFlush, sector: 0, at: BlockHarness.header + UInt64(i) * 16)
            try h.driver.post([.init(address: BlockHarness.header + UInt64(i) * 16, length: 16),
                               .init(address: BlockHarness.status + UInt64(i), length: 1, writable: true)])
        }
        h.device.queueNotified(0)
        #expect(try h.driver.usedIndex == 3)
        #expect(h.interrupt.used == 1)
        // Notifications are re-enabled after the drain (2.7.10).
        #expect(try h.driver.usedFlags == 0)
        // The driver asks for no interrupts (VIRTQ_AVAIL_F_NO_INTERRUPT, 2.7.7).
        try h.driver.setAvailableFlags(1)
        _ = try h.request(type: Spec.requestFlush, sector: 0)
        #expect(h.interrupt.used == 1)
        try h.driver.setAvailableFlags(0)
        _ = try h.request(type: Spec.requestFlush, sector: 0)
        #expect(h.interrupt.used == 2)
        // A notify with nothing new: no interrupt.
        h.device.queueNotified(0)
        #expect(h.interrupt.used == 2)
    }

    @Test func eventIndexSuppression() throws {
        let h = try BlockHarness(eventIndex: true)
        // used_event = 5: interrupt only when used.idx passes 5.
        try h.driver.setUsedEvent(5)
        for _ in 0..<5 { _ = try h.request(type: Spec.requestFlush, sector: 0) }
        #expect(h.interrupt.used == 0)
        _ = try h.request(type: Spec.requestFlush, sector: 0)
        #expect(h.interrupt.used == 1)
        // avail_event follows what the device took.
        #expect(try h.driver.availableEvent == 6)
    }

    @Test func brokenQueueNeedsReset() throws {
        let h = try BlockHarness()
        try h.driver.setAvailableIndex(100)
        h.device.queueNotified(0)
        #expect(h.device.needsReset)
        h.device.reset()
        #expect(!h.device.needsReset)
        // After reset nothing is processed until activate.
        h.device.queueNotified(0)
        #expect(try h.driver.usedIndex == 0)
    }

    @Test func notifyBeforeActivateOrOtherQueueIsIgnored() throws {
        let image = TempImage(sectors: 8)
        let device = try VirtioBlock(path: image.path, readOnly: false)
        device.queueNotified(0)
        device.queueNotified(5)
        #expect(device.requests == 0)
    }

    @Test func configurationSpace() throws {
        let h = try BlockHarness(sectors: 100)
        let device = h.device
        #expect(device.deviceType == 2)
        #expect(device.queueCount == 1)
        #expect(device.maximumQueueSize == 256)
        #expect(device.configurationSize == 60)
        #expect(device.deviceFeatures == (1 << 2) | (1 << 6) | (1 << 9) | (1 << 13) | (1 << 14))
        var bytes = [UInt8](repeating: 0xFF, count: 60)
        bytes.withUnsafeMutableBytes { device.readConfiguration(offset: 0, into: $0) }
        func u32(_ offset: Int) -> UInt32 {
            bytes[offset..<offset + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) }
        }
        func u64(_ offset: Int) -> UInt64 {
            bytes[offset..<offset + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }
        #expect(u64(0) == 100)  // capacity
        #expect(u32(8) == 0)  // size_max (not offered)
        #expect(u32(12) == 254)  // seg_max
        #expect(u32(16) == 0)  // geometry
        #expect(u32(20) == 512)  // blk_size
        #expect(u64(24) == 0)  // topology (not offered)
        #expect(u32(36) == 1 << 22)  // max_discard_sectors
        #expect(u32(40) == 1)  // max_discard_seg
        #expect(u32(44) >= 1)  // discard_sector_alignment
        #expect(u32(48) == 1 << 22)  // max_write_zeroes_sectors
        #expect(u32(52) == 1)  // max_write_zeroes_seg
        #expect(bytes[56] == 1)  // write_zeroes_may_unmap
        #expect(Array(bytes[57..<60]) == [0, 0, 0])
        // Narrow reads at an offset, as a driver does field by field.
        var capacityHigh = [UInt8](repeating: 0xFF, count: 4)
        capacityHigh.withUnsafeMutableBytes { device.readConfiguration(offset: 4, into: $0) }
        #expect(capacityHigh == [0, 0, 0, 0])
        var blockSize = [UInt8](repeating: 0, count: 4)
        blockSize.withUnsafeMutableBytes { device.readConfiguration(offset: 20, into: $0) }
        #expect(blockSize == [0, 2, 0, 0])
        // Writes are ignored.
        [UInt8](repeating: 0xAB, count: 8).withUnsafeBytes { device.writeConfiguration(offset: 0, data: $0) }
        var again = [UInt8](repeating: 0, count: 60)
        again.withUnsafeMutableBytes { device.readConfiguration(offset: 0, into: $0) }
        #expect(again == bytes)
    }

    @Test func readOnlyConfiguration() throws {
        let h = try BlockHarness(readOnly: true)
        var bytes = [UInt8](repeating: 0xFF, count: 60)
        bytes.withUnsafeMutableBytes { h.device.readConfiguration(offset: 0, into: $0) }
        #expect(Array(bytes[36..<60]) == [UInt8](repeating: 0, count: 24))
    }

    @Test func initErrors() throws {
        func message(_ body: () throws -> Void) -> String? {
            do { try body() } catch { return (error as? VirtioDeviceError)?.message ?? "wrong error type" }
            return nil
        }
        let missing = message { _ = try VirtioBlock(path: "/nonexistent/swiftlet.img", readOnly: false) }
        #expect(missing?.contains("/nonexistent/swiftlet.img") == true)
        #expect(missing?.contains("No such file") == true)

        #expect(message { _ = try VirtioBlock(path: "/tmp", readOnly: false) }?.contains("directory") == true)
        #expect(message { _ = try VirtioBlock(path: "/tmp", readOnly: true) }?.contains("directory") == true)

        let small = TempImage([UInt8](repeating: 1, count: 511))
        #expect(message { _ = try VirtioBlock(path: small.path, readOnly: false) }?.contains("at least one 512-byte sector") == true)
        let empty = TempImage([])
        #expect(message { _ = try VirtioBlock(path: empty.path, readOnly: true) } != nil)

        #expect(message { _ = try VirtioBlock(path: "/dev/null", readOnly: true) } == "virtio-blk: disk /dev/null is a character device, not a regular file or block device")

        let image = TempImage(sectors: 4)
        var first: VirtioBlock? = try VirtioBlock(path: image.path, readOnly: false)
        #expect(first != nil)
        #expect(message { _ = try VirtioBlock(path: image.path, readOnly: false) }?.contains("locked") == true)
        #expect(message { _ = try VirtioBlock(path: image.path, readOnly: true) }?.contains("locked") == true)
        first = nil
        // Closing the first releases the lock; read-only opens share it.
        let reader1 = try VirtioBlock(path: image.path, readOnly: true)
        let reader2 = try VirtioBlock(path: image.path, readOnly: true)
        #expect(message { _ = try VirtioBlock(path: image.path, readOnly: false) }?.contains("locked") == true)
        _ = (reader1, reader2)
    }
}
