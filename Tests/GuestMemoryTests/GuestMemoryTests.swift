import Testing
@testable import GuestMemory

@Suite struct GuestMemoryTests {
    let memory = try! GuestMemory(size: 64 << 10)

    @Test func integersRoundTripLittleEndian() throws {
        try memory.store(UInt32(0xDEAD_BEEF), at: GuestAddress(0x100))
        #expect(try memory.load(UInt32.self, at: GuestAddress(0x100)) == 0xDEAD_BEEF)
        #expect(try memory.load(UInt8.self, at: GuestAddress(0x100)) == 0xEF)
        try memory.store(UInt64.max, at: GuestAddress(64 << 10 - 8))
    }

    @Test(arguments: [
        (UInt64(64 << 10), UInt64(1)),        // one past the end
        (UInt64(64 << 10 - 4), UInt64(8)),    // straddles the end
        (UInt64.max, UInt64(1)),              // far away
        (UInt64.max - 1, UInt64(4)),          // address + length overflows
        (UInt64(0), UInt64.max),              // huge length
        (UInt64(8), UInt64.max - 4),          // length overflow from a valid start
    ])
    func outOfBoundsIsRefused(address: UInt64, length: UInt64) {
        #expect(throws: GuestMemoryError.outOfBounds(address: address, length: length)) {
            _ = try memory.bytes(at: GuestAddress(address), count: length)
        }
    }

    @Test func zeroLengthAtEndIsAllowed() throws {
        #expect(try memory.bytes(at: GuestAddress(64 << 10), count: 0).count == 0)
    }

    @Test func cStringsAreBounded() throws {
        try memory.write(Array("hello".utf8) + [0], at: GuestAddress(0x200))
        #expect(try memory.readCString(at: GuestAddress(0x200), maxLength: 16) == "hello")
        try memory.fill(at: GuestAddress(0x300), count: 64, with: 0x41)
        #expect(throws: GuestMemoryError.self) { try memory.readCString(at: GuestAddress(0x300), maxLength: 32) }
    }

    @Test func overlappingRegionsAreRejected() throws {
        let a = try GuestMemoryRegion(base: GuestAddress(0), size: 8192)
        let b = try GuestMemoryRegion(base: GuestAddress(4096), size: 8192)
        #expect(throws: GuestMemoryError.self) { try GuestMemory(regions: [a, b]) }
    }

    @Test func accessesNeverSpanTwoRegions() throws {
        let a = try GuestMemoryRegion(base: GuestAddress(0), size: 4096)
        let b = try GuestMemoryRegion(base: GuestAddress(4096), size: 4096)
        let m = try GuestMemory(regions: [b, a])
        #expect(m.size == 8192)
        #expect(m.contains(GuestAddress(4090), count: 6))
        #expect(!m.contains(GuestAddress(4090), count: 7))
        #expect(m.contains(GuestAddress(4096), count: 4096))
    }

    @Test func emptyOrWrappingRegionIsRejected() {
        #expect(throws: GuestMemoryError.self) { try GuestMemoryRegion(base: GuestAddress(0), size: 0) }
        #expect(throws: GuestMemoryError.self) { try GuestMemoryRegion(base: GuestAddress(UInt64.max - 10), size: 4096) }
    }

    @Test func hugePageRegionsAreAlignedAndUsable() throws {
        let r = try GuestMemoryRegion(base: GuestAddress(0), size: 6 << 20, hugePages: true)
        #expect(UInt(bitPattern: r.host) % UInt(GuestMemoryRegion.hugePageSize) == 0)
        let m = try GuestMemory(regions: [r])
        try m.store(UInt64(42), at: GuestAddress((6 << 20) - 8))
        #expect(try m.load(UInt64.self, at: GuestAddress((6 << 20) - 8)) == 42)
    }

    @Test func addressArithmeticReportsOverflow() {
        #expect(GuestAddress(UInt64.max).adding(1) == nil)
        #expect(GuestAddress(1).adding(1) == GuestAddress(2))
    }
}
