/// Little-endian assembly of ACPI structures. ACPI is little-endian throughout and packs fields
/// at odd offsets (the FADT has u16s at 109 and 129), so tables are built byte by byte rather
/// than from Swift structs, whose layout the language does not promise.
struct ACPITableBytes {
    var bytes: [UInt8] = []

    var count: Int { bytes.count }

    mutating func append<T: FixedWidthInteger>(_ value: T) {
        for i in 0..<MemoryLayout<T>.size { bytes.append(UInt8(truncatingIfNeeded: value >> (i * 8))) }
    }

    mutating func append(_ raw: [UInt8]) { bytes += raw }

    mutating func zeros(_ count: Int) { bytes += [UInt8](repeating: 0, count: count) }

    /// Fixed-width ASCII field (signatures, OEM ids), padded with `pad`. Callers validate lengths.
    mutating func ascii(_ text: String, width: Int, pad: UInt8 = 0x20) {
        let raw = Array(text.utf8.prefix(width))
        bytes += raw + [UInt8](repeating: pad, count: width - raw.count)
    }

    mutating func append(_ gas: GenericAddress) {
        append(gas.spaceID)
        append(gas.bitWidth)
        append(gas.bitOffset)
        append(gas.accessSize)
        append(gas.address)
    }

    mutating func set<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        for i in 0..<MemoryLayout<T>.size { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (i * 8)) }
    }

    /// The byte that makes `bytes` sum to zero (mod 256), the ACPI checksum rule.
    static func checksum<C: Collection<UInt8>>(_ bytes: C) -> UInt8 {
        0 &- bytes.reduce(0, &+)
    }
}

/// ACPI Generic Address Structure (12 bytes): where a register lives (I/O port or memory) and
/// how wide it is. The FADT describes PM1 blocks and the reset register with these.
struct GenericAddress: Equatable {
    var spaceID: UInt8
    var bitWidth: UInt8
    var bitOffset: UInt8
    var accessSize: UInt8
    var address: UInt64

    static let systemIO: UInt8 = 1
    /// Access sizes: 1 byte, 2 word, 3 dword (0 = legacy/undefined).
    static let byteAccess: UInt8 = 1, wordAccess: UInt8 = 2

    /// All zero: "not present".
    static let none = GenericAddress(spaceID: 0, bitWidth: 0, bitOffset: 0, accessSize: 0, address: 0)

    static func io(_ port: UInt16, bytes: Int, access: UInt8) -> GenericAddress {
        GenericAddress(spaceID: systemIO, bitWidth: UInt8(bytes * 8), bitOffset: 0, accessSize: access, address: UInt64(port))
    }
}

/// The 36-byte System Description Table header every ACPI table except the RSDP and FACS has.
enum ACPIHeader {
    static let size = 36
    static let oemTableID = "SWIFTLET"
    static let oemRevision: UInt32 = 1
    static let creatorID = "SWLT"
    static let creatorRevision: UInt32 = 1

    /// Header + `body`, with the length and checksum filled in.
    static func table(signature: String, revision: UInt8, oemID: String, body: [UInt8]) -> [UInt8] {
        var t = ACPITableBytes()
        t.ascii(signature, width: 4)
        t.append(UInt32(size + body.count))
        t.append(revision)
        t.append(UInt8(0)) // checksum, below
        t.ascii(oemID, width: 6)
        t.ascii(oemTableID, width: 8)
        t.append(oemRevision)
        t.ascii(creatorID, width: 4)
        t.append(creatorRevision)
        t.append(body)
        t.bytes[9] = ACPITableBytes.checksum(t.bytes)
        return t.bytes
    }
}
