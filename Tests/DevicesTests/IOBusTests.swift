import Testing
@testable import Devices

@Suite struct IOBusTests {
    /// (base, length, expected code) for a first registration on an empty bus.
    @Test(arguments: [
        (UInt16(0x3F8), UInt16(0), DeviceError.Code.invalidRange),  // zero length
        (UInt16(0), UInt16(0), .invalidRange),                      // zero length at 0
        (UInt16(0xFFFF), UInt16(2), .invalidRange),                 // one past the end
        (UInt16(0xFFF0), UInt16(0x11), .invalidRange),              // last port would be 0x10000
        (UInt16(2), UInt16(0xFFFF), .invalidRange),                 // huge length from a non-zero base
    ])
    func invalidRangesAreRefused(base: UInt16, length: UInt16, code: DeviceError.Code) {
        let bus = IOBus()
        #expect(throws: DeviceError.self) { try bus.register(ProbeDevice(tag: 1), base: base, length: length) }
        do {
            try bus.register(ProbeDevice(tag: 1), base: base, length: length)
        } catch {
            #expect(error.code == code)
        }
        #expect(bus.ranges.isEmpty)
    }

    @Test(arguments: [
        (UInt16(0xFFFF), UInt16(1)),   // the very last port
        (UInt16(0xFFF0), UInt16(0x10)), // ends exactly at 0xFFFF
        (UInt16(0), UInt16(0xFFFF)),    // everything but 0xFFFF
        (UInt16(1), UInt16(0xFFFF)),    // everything but 0
        (UInt16(0), UInt16(1)),
    ])
    func rangesUpToTheLastPortAreAccepted(base: UInt16, length: UInt16) throws {
        let bus = IOBus()
        try bus.register(ProbeDevice(tag: 1), base: base, length: length)
        let last = base + (length - 1)
        #expect(bus.device(at: base)?.offset == 0)
        #expect(bus.device(at: last)?.offset == length - 1)
    }

    /// Against an existing range 0x100-0x10F: (base, length, accepted).
    @Test(arguments: [
        (UInt16(0x100), UInt16(0x10), false), // identical
        (UInt16(0x0F8), UInt16(0x09), false), // overlaps the first port
        (UInt16(0x10F), UInt16(0x04), false), // overlaps the last port
        (UInt16(0x104), UInt16(0x02), false), // inside
        (UInt16(0x0F0), UInt16(0x40), false), // covers it
        (UInt16(0x0F8), UInt16(0x08), true),  // adjacent below (ends at 0xFF)
        (UInt16(0x110), UInt16(0x08), true),  // adjacent above
        (UInt16(0x000), UInt16(0x100), true), // everything below
        (UInt16(0x110), UInt16(0xFEF0), true),// everything above, up to 0xFFFF
    ])
    func overlapsAreRefusedAndAdjacencyIsFine(base: UInt16, length: UInt16, accepted: Bool) throws {
        let bus = IOBus()
        try bus.register(ProbeDevice(tag: 1), base: 0x100, length: 0x10)
        if accepted {
            try bus.register(ProbeDevice(tag: 2), base: base, length: length)
            #expect(bus.ranges.count == 2)
        } else {
            do {
                try bus.register(ProbeDevice(tag: 2), base: base, length: length)
                Issue.record("overlap accepted")
            } catch {
                #expect(error.code == .overlap)
                // The message names both ranges.
                #expect(error.message.contains("0x100-0x10f"))
                #expect(error.message.contains("0x" + String(base, radix: 16)))
            }
            #expect(bus.ranges.count == 1)
        }
    }

    @Test func overlapIsFoundAmongManyRanges() throws {
        let bus = IOBus()
        // Registered out of order on purpose: the bus keeps them sorted.
        for base: UInt16 in [0x500, 0x100, 0x300, 0x700, 0x200] {
            try bus.register(ProbeDevice(tag: UInt32(base)), base: base, length: 0x10)
        }
        #expect(bus.ranges.map(\.base) == [0x100, 0x200, 0x300, 0x500, 0x700])
        #expect(throws: DeviceError.self) { try bus.register(ProbeDevice(tag: 0), base: 0x30F, length: 1) }
        #expect(throws: DeviceError.self) { try bus.register(ProbeDevice(tag: 0), base: 0x4F0, length: 0x11) }
        try bus.register(ProbeDevice(tag: 0), base: 0x310, length: 0x1F0)  // fills the gap exactly
    }

    @Test func lookupEdges() throws {
        let bus = IOBus()
        try bus.register(ProbeDevice(tag: 0xA), base: 0x3F8, length: 8)
        try bus.register(ProbeDevice(tag: 0xB), base: 0x400, length: 1)
        try bus.register(ProbeDevice(tag: 0xC), base: 0xFFFF, length: 1)

        let cases: [(port: UInt16, expected: UInt32)] = [
            (0x3F7, 0xFFFF_FFFF),   // just below
            (0x3F8, 0xA_0000),      // first port, offset 0
            (0x3FF, 0xA_0007),      // last port, offset 7
            (0x400, 0xB_0000),      // adjacent range starts right after a gap
            (0x401, 0xFFFF_FFFF),   // just above
            (0x000, 0xFFFF_FFFF),   // below everything
            (0xFFFE, 0xFFFF_FFFF),
            (0xFFFF, 0xC_0000),     // the last port
        ]
        for c in cases {
            #expect(bus.read(port: c.port, size: 4) == c.expected, "port 0x\(String(c.port, radix: 16))")
        }
    }

    @Test func unclaimedReadsAreAllOnesOfTheAccessWidth() {
        let bus = IOBus()
        #expect(bus.read(port: 0x80, size: 1) == 0xFF)
        #expect(bus.read(port: 0x80, size: 2) == 0xFFFF)
        #expect(bus.read(port: 0x80, size: 4) == 0xFFFF_FFFF)
        #expect(bus.write(port: 0x80, size: 1, value: 0) == false)
    }

    @Test func dispatchPassesOffsetsAndTruncatesToTheAccessWidth() throws {
        let bus = IOBus()
        let device = ProbeDevice(tag: 0x12)
        try bus.register(device, base: 0xCF8, length: 8)
        #expect(bus.write(port: 0xCFC, size: 2, value: 0xDEAD_BEEF))
        let last = try #require(device.lastWrite)
        #expect(last.offset == 4 && last.size == 2 && last.value == 0xBEEF)
        #expect(bus.read(port: 0xCFD, size: 1) == 0x05)      // (0x12 << 16 | 5) & 0xFF
        #expect(bus.read(port: 0xCFD, size: 2) == 0x0005)
        #expect(bus.read(port: 0xCFD, size: 4) == 0x12_0005)
    }

    @Test func oneDeviceAtTwoRanges() throws {
        let bus = IOBus()
        let device = ProbeDevice(tag: 7)
        try bus.register(device, base: 0x10, length: 2)
        try bus.register(device, base: 0x20, length: 2)
        #expect(bus.device(at: 0x21)?.device === device)
        #expect(bus.device(at: 0x21)?.offset == 1)
    }
}
