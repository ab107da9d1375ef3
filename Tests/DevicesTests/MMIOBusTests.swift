import Synchronization
import Testing
@testable import Devices

/// An MMIO device that answers reads with its tag in the top byte and the offset below, and
/// remembers the last write (offset and bytes).
final class MMIOProbe: MMIODevice {
    let tag: UInt8
    private let last = Mutex<(offset: UInt64, bytes: [UInt8])?>(nil)
    private let readCount = Atomic<Int>(0)
    init(tag: UInt8) { self.tag = tag }

    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        readCount.add(1, ordering: .relaxed)
        let value = UInt64(tag) << 56 | offset
        for i in 0..<data.count { data[i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i % 8))) }
    }

    func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        last.withLock { $0 = (offset, Array(data)) }
    }

    var lastWrite: (offset: UInt64, bytes: [UInt8])? { last.withLock { $0 } }
    var reads: Int { readCount.load(ordering: .relaxed) }
}

/// Little-endian helpers for poking MMIO devices in tests.
func mmioTestRead(_ read: (UInt64, UnsafeMutableRawBufferPointer) -> Void, _ offset: UInt64, size: Int) -> UInt64 {
    var bytes = [UInt8](repeating: 0, count: size)
    bytes.withUnsafeMutableBytes { read(offset, $0) }
    return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
}

func mmioTestWrite(_ write: (UInt64, UnsafeRawBufferPointer) -> Void, _ offset: UInt64, size: Int, value: UInt64) {
    let bytes = (0..<size).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    bytes.withUnsafeBytes { write(offset, $0) }
}

extension MMIOBus {
    func probe(_ address: UInt64, size: Int) -> (claimed: Bool, value: UInt64) {
        var claimed = false
        let value = mmioTestRead({ claimed = self.read(address: $0, into: $1) }, address, size: size)
        return (claimed, value)
    }

    @discardableResult
    func poke(_ address: UInt64, size: Int, value: UInt64) -> Bool {
        var claimed = false
        mmioTestWrite({ claimed = self.write(address: $0, data: $1) }, address, size: size, value: value)
        return claimed
    }
}

@Suite struct MMIOBusTests {
    /// (base, length) that a first registration on an empty bus refuses as an invalid range.
    @Test(arguments: [
        (UInt64(0xD000_0000), UInt64(0)),              // zero length
        (UInt64(0), UInt64(0)),                        // zero length at 0
        (UInt64.max, UInt64(2)),                       // one past the end
        (UInt64.max - 0xF, UInt64(0x11)),              // last byte would be 2^64
        (UInt64(2), UInt64.max),                       // huge length from a non-zero base
    ])
    func invalidRangesAreRefused(base: UInt64, length: UInt64) {
        let bus = MMIOBus()
        do {
            try bus.register(MMIOProbe(tag: 1), base: base, length: length)
            Issue.record("accepted 0x\(String(base, radix: 16))+0x\(String(length, radix: 16))")
        } catch {
            #expect(error.code == .invalidRange)
        }
        #expect(bus.ranges.isEmpty)
    }

    @Test(arguments: [
        (UInt64.max, UInt64(1)),             // the very last byte
        (UInt64.max - 0xF, UInt64(0x10)),    // ends exactly at 2^64 - 1
        (UInt64(0), UInt64.max),             // everything but the last byte
        (UInt64(1), UInt64.max),             // everything but byte 0
        (UInt64(0), UInt64(1)),
    ])
    func rangesUpToTheLastByteAreAccepted(base: UInt64, length: UInt64) throws {
        let bus = MMIOBus()
        try bus.register(MMIOProbe(tag: 1), base: base, length: length)
        let last = base + (length - 1)
        #expect(bus.device(at: base)?.offset == 0)
        #expect(bus.device(at: last)?.offset == length - 1)
        #expect(bus.ranges.first?.last == last)
    }

    /// Against an existing range 0x1000-0x1FFF: (base, length, accepted).
    @Test(arguments: [
        (UInt64(0x1000), UInt64(0x1000), false),  // identical
        (UInt64(0x0800), UInt64(0x0801), false),  // overlaps the first byte
        (UInt64(0x1FFF), UInt64(0x10), false),    // overlaps the last byte
        (UInt64(0x1400), UInt64(0x10), false),    // inside
        (UInt64(0x0000), UInt64(0x10000), false), // covers it
        (UInt64(0x0800), UInt64(0x0800), true),   // adjacent below
        (UInt64(0x2000), UInt64(0x0800), true),   // adjacent above
        (UInt64(0x0000), UInt64(0x1000), true),   // everything below
        (UInt64(0x2000), UInt64.max - 0x1FFF, true), // everything above, to 2^64 - 1
    ])
    func overlapsAreRefusedAndAdjacencyIsFine(base: UInt64, length: UInt64, accepted: Bool) throws {
        let bus = MMIOBus()
        try bus.register(MMIOProbe(tag: 1), base: 0x1000, length: 0x1000)
        do {
            try bus.register(MMIOProbe(tag: 2), base: base, length: length)
            #expect(accepted)
            #expect(bus.ranges.count == 2)
        } catch {
            #expect(!accepted)
            #expect(error.code == .overlap)
            #expect(error.message.contains("0x1000-0x1fff"))
            #expect(bus.ranges.count == 1)
        }
    }

    @Test func dispatchFindsTheRightDeviceAndOffset() throws {
        let bus = MMIOBus()
        let devices = (0..<5).map { MMIOProbe(tag: UInt8($0 + 1)) }
        // Out of order on purpose: the bus keeps them sorted.
        for i in [3, 0, 4, 1, 2] {
            try bus.register(devices[i], base: 0xC000_0000 + UInt64(i) * 0x10_0000, length: 0x1000)
        }
        #expect(bus.ranges.map(\.base) == (0..<5).map { 0xC000_0000 + UInt64($0) * 0x10_0000 })
        for i in 0..<5 {
            let base = 0xC000_0000 + UInt64(i) * 0x10_0000
            let r = bus.probe(base + 0x10, size: 8)
            #expect(r.claimed)
            #expect(r.value == UInt64(i + 1) << 56 | 0x10)
            #expect(bus.poke(base + 0xFF8, size: 8, value: 0x1122_3344_5566_7788))
            #expect(devices[i].lastWrite?.offset == 0xFF8)
            #expect(devices[i].lastWrite?.bytes == [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])
        }
    }

    @Test func unclaimedAndStraddlingAccessesAreRefused() throws {
        let bus = MMIOBus()
        let device = MMIOProbe(tag: 7)
        try bus.register(device, base: 0x1000, length: 0x10)
        // Below, above, and across either end: all ones, not claimed, device untouched.
        for (address, size) in [(UInt64(0xFF8), 4), (0x1010, 4), (0xFFE, 4), (0x100E, 4), (0x100C, 8)] {
            let r = bus.probe(address, size: size)
            #expect(!r.claimed)
            #expect(r.value == (size == 8 ? UInt64.max : (1 << (8 * UInt64(size))) - 1))
            #expect(!bus.poke(address, size: size, value: 0))
        }
        #expect(device.reads == 0)
        #expect(device.lastWrite == nil)
        // The last bytes of the range are fine.
        #expect(bus.probe(0x100C, size: 4).claimed)
        #expect(bus.probe(0x1008, size: 8).claimed)
    }

    @Test func unregisterAndMove() throws {
        let bus = MMIOBus()
        let a = MMIOProbe(tag: 1), b = MMIOProbe(tag: 2)
        try bus.register(a, base: 0x1000, length: 0x100)
        try bus.register(b, base: 0x3000, length: 0x100)

        // A move onto another range fails and leaves the range where it was.
        #expect(throws: DeviceError.self) { try bus.move(from: 0x1000, to: 0x2F80) }
        #expect(bus.device(at: 0x1000)?.device === a)
        // Moving to nowhere registered fails too.
        #expect(throws: DeviceError.self) { try bus.move(from: 0x1010, to: 0x5000) }

        try bus.move(from: 0x1000, to: 0x5000)
        #expect(bus.device(at: 0x1000) == nil)
        #expect(bus.device(at: 0x50FF)?.device === a)
        #expect(bus.device(at: 0x5100) == nil)
        // Moving over its own old place (overlapping itself) is fine.
        try bus.move(from: 0x5000, to: 0x5080)
        #expect(bus.device(at: 0x5080)?.offset == 0)

        #expect(bus.unregister(base: 0x3001) == nil)
        #expect(bus.unregister(base: 0x3000) === b)
        #expect(!bus.probe(0x3000, size: 4).claimed)
        #expect(bus.ranges.map(\.base) == [0x5080])
    }

    /// A device may change the map from inside an access (a BAR write through ECAM moves MMIO
    /// registrations): the bus must not hold its lock while dispatching.
    @Test func devicesMayRegisterFromInsideAnAccess() throws {
        final class Mover: MMIODevice {
            let bus: MMIOBus
            init(bus: MMIOBus) { self.bus = bus }
            func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {}
            func write(offset: UInt64, data: UnsafeRawBufferPointer) {
                try? bus.register(MMIOProbe(tag: 9), base: 0x9000, length: 0x10)
            }
        }
        let bus = MMIOBus()
        try bus.register(Mover(bus: bus), base: 0x1000, length: 4)
        #expect(bus.poke(0x1000, size: 4, value: 1))
        #expect(bus.probe(0x9000, size: 4).claimed)
    }

    @Test func concurrentReadsWhileRangesMove() async throws {
        let bus = MMIOBus()
        let device = MMIOProbe(tag: 3)
        try bus.register(device, base: 0x10_0000, length: 0x1000)
        try bus.register(MMIOProbe(tag: 4), base: 0x40_0000, length: 0x1000)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                var base: UInt64 = 0x10_0000
                for _ in 0..<2000 {
                    let next: UInt64 = base == 0x10_0000 ? 0x20_0000 : 0x10_0000
                    try? bus.move(from: base, to: next)
                    base = next
                }
            }
            for _ in 0..<3 {
                group.addTask {
                    for _ in 0..<5000 {
                        let r = bus.probe(0x40_0010, size: 4)
                        precondition(r.claimed && r.value == 0x10)
                        _ = bus.probe(0x10_0000, size: 4)
                    }
                }
            }
        }
        #expect(bus.ranges.count == 2)
    }
}
