import ExtensionProtocol
import Testing

/// The extension protocol's codec, byte by byte (docs/abi.md, "Extensions").
struct ExtensionMessageTests {
    @Test func theHeaderIsFortyEightLittleEndianBytesAsDocumented() throws {
        let m = ExtensionMessage(.access, id: 0x0102, address: 0x520, value: 0xAABB, width: 4, space: 0, isWrite: 1, status: -14)
        let bytes = m.encoded()
        #expect(bytes.count == 48)
        #expect(Array(bytes[0..<8]) == [48, 0, 0, 0, 6, 0, 0, 0])
        #expect(Array(bytes[8..<10]) == [0x02, 0x01] && bytes[16] == 0x20 && bytes[17] == 0x05)
        #expect(Array(bytes[24..<26]) == [0xBB, 0xAA] && bytes[32] == 4 && bytes[40] == 1)
        #expect(Array(bytes[44..<48]) == [0xF2, 0xFF, 0xFF, 0xFF])
        #expect(try ExtensionMessage(decoding: bytes) == m)
    }

    @Test func dataFollowsTheHeaderAndCountsInTheSize() throws {
        let m = ExtensionMessage(.memWrite, id: 9, address: 0x1000, data: [1, 2, 3])
        let bytes = m.encoded()
        #expect(bytes.count == 51 && bytes[0] == 51 && Array(bytes[48...]) == [1, 2, 3])
        #expect(try ExtensionMessage(decoding: bytes) == m)
    }

    @Test func malformedBytesAreRefusedWithAReason() {
        var good = ExtensionMessage(.reply, id: 1).encoded()
        #expect(throws: ExtensionMessage.Malformed.self) { try ExtensionMessage(decoding: Array(good[0..<47])) }
        var tooBig = good
        tooBig[0] = 0xFF; tooBig[1] = 0xFF
        #expect(throws: ExtensionMessage.Malformed.self) { try ExtensionMessage(decoding: tooBig) }
        var small = good
        small[0] = 47
        #expect(throws: ExtensionMessage.Malformed.self) { try ExtensionMessage(decoding: small) }
        var unknown = good
        unknown[4] = 99
        #expect(throws: ExtensionMessage.Malformed.self) { try ExtensionMessage(decoding: unknown) }
        good[6] = 1
        #expect(throws: ExtensionMessage.Malformed.self) { try ExtensionMessage(decoding: good) }
    }

    @Test func randomBytesNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let count = Int.random(in: 0...120, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if count >= 4, Bool.random(using: &generator) { bytes[0] = UInt8(count); bytes[1] = 0; bytes[2] = 0; bytes[3] = 0 }
            _ = try? ExtensionMessage(decoding: bytes)
        }
    }
}
