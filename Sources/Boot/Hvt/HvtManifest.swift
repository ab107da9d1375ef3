/// The device manifest a Solo5 unikernel carries in its MFT1 note: which block and network devices
/// it expects, by name. Binary layout (struct mft / mft_entry, Solo5 mft_abi.h, version 1):
/// `{u32 version; u32 entries; entry[entries]}`, each entry 104 bytes:
/// `char name[68]; u32 type; union u (16 bytes, at 72); union b (8, at 88); bool attached (at 96)`.
public struct HvtManifest: Equatable, Sendable {
    /// Kinds of manifest entry (enum mft_type).
    public enum DeviceType: Equatable, Sendable {
        case block, net
        /// MFT_RESERVED_FIRST and above: placeholders the tender ignores (Solo5 binaries with no
        /// devices carry one).
        case reserved(UInt32)
    }

    /// One declared device.
    public struct Entry: Equatable, Sendable {
        public var name: String
        public var type: DeviceType
    }

    public static let version: UInt32 = 1
    public static let maxEntries = 64
    public static let entrySize = 104
    public static let headerSize = 8
    public static let nameSize = 68
    static let typeBlock: UInt32 = 1, typeNet: UInt32 = 2, reservedFirst: UInt32 = 1 << 30
    /// Byte offsets inside an entry, used when the tender fills in attached devices.
    static let offsetType = 68, offsetU = 72, offsetB = 88, offsetAttached = 96

    public var entries: [Entry]
    /// The manifest bytes as in the binary (struct mft), which the tender copies into the guest.
    public var raw: [UInt8]

    /// Parses and validates `struct mft` bytes.
    public init(mft bytes: ArraySlice<UInt8>) throws(BootError) {
        let r = ByteReader(bytes: Array(bytes), what: "Solo5 manifest")
        guard bytes.count >= Self.headerSize else { throw BootError("Solo5 manifest is truncated") }
        let version = try r.u32(0), count = try r.u32(4)
        guard version == Self.version else { throw BootError("Solo5 manifest version \(version) is not supported (need \(Self.version))") }
        guard count <= Self.maxEntries else { throw BootError("Solo5 manifest has \(count) entries, at most \(Self.maxEntries) are allowed") }
        let needed = Self.headerSize + Int(count) * Self.entrySize
        guard bytes.count >= needed else { throw BootError("Solo5 manifest is truncated (\(bytes.count) of \(needed) bytes)") }
        // Solo5's toolchain always writes a reserved, unnamed entry 0, and solo5-hvt refuses a
        // manifest without one (so device handles start at 1).
        guard count >= 1 else { throw BootError("Solo5 manifest has no entries (entry 0 must be the reserved entry)") }
        var entries: [Entry] = []
        var seen = Set<String>()
        for i in 0..<Int(count) {
            let base = UInt64(Self.headerSize + i * Self.entrySize)
            let nameBytes = try r.slice(base, UInt64(Self.nameSize))
            guard let nul = nameBytes.firstIndex(of: 0) else {
                throw BootError("Solo5 manifest entry \(i): name is longer than \(Self.nameSize - 1) characters")
            }
            let name = String(decoding: nameBytes[nameBytes.startIndex..<nul], as: UTF8.self)
            let rawType = try r.u32(base + UInt64(Self.offsetType))
            let type: DeviceType
            switch rawType {
            case Self.typeBlock: type = .block
            case Self.typeNet: type = .net
            case let t where t >= Self.reservedFirst: type = .reserved(t)
            default: throw BootError("Solo5 manifest entry \(i): unknown device type \(rawType)")
            }
            if case .reserved = type {} else {
                guard !name.isEmpty, name.utf8.allSatisfy(Self.isNameByte) else {
                    throw BootError("Solo5 manifest entry \(i): invalid device name '\(Self.printable(nameBytes[..<nul]))'")
                }
                guard seen.insert(name).inserted else { throw BootError("Solo5 manifest declares '\(name)' twice") }
            }
            if i == 0 {
                guard rawType == Self.reservedFirst, name.isEmpty else {
                    throw BootError("Solo5 manifest entry 0 is not the reserved entry (MFT_RESERVED_FIRST, no name)")
                }
            }
            guard try r.u8(base + UInt64(Self.offsetAttached)) == 0 else {
                throw BootError("Solo5 manifest entry \(i) is marked attached in the image")
            }
            entries.append(Entry(name: name, type: type))
        }
        self.entries = entries
        self.raw = Array(bytes.prefix(needed))
    }

    /// An invalid name from the image as printable ASCII, any other byte as `\xNN`: quoted in an
    /// error, it keeps the message one line whatever the image holds (a CR, a newline, UTF-8).
    static func printable(_ bytes: ArraySlice<UInt8>) -> String {
        bytes.map { c in
            c >= 0x20 && c < 0x7F && c != 0x5C ? String(UnicodeScalar(c)) : "\\x" + (c < 0x10 ? "0" : "") + String(c, radix: 16)
        }.joined()
    }

    static func isNameByte(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
    }

    /// Manifest index of the device `name` of `type`, if declared.
    public func index(of name: String, type: DeviceType) -> Int? {
        entries.firstIndex { $0.name == name && $0.type == type }
    }

    /// Marks block entry `index` attached with its capacity and block size (in the guest copy).
    public mutating func attachBlock(at index: Int, capacity: UInt64, blockSize: UInt16) {
        let base = Self.headerSize + index * Self.entrySize
        put(capacity, at: base + Self.offsetU)
        put(blockSize, at: base + Self.offsetU + 8)
        put(UInt64(0), at: base + Self.offsetB)
        raw[base + Self.offsetAttached] = 1
    }

    /// Marks net entry `index` attached with its MAC and MTU (in the guest copy).
    public mutating func attachNet(at index: Int, mac: [UInt8], mtu: UInt16) {
        let base = Self.headerSize + index * Self.entrySize
        for (i, b) in mac.prefix(6).enumerated() { raw[base + Self.offsetU + i] = b }
        put(mtu, at: base + Self.offsetU + 6)
        put(UInt64(0), at: base + Self.offsetB)
        raw[base + Self.offsetAttached] = 1
    }

    private mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        for i in 0..<MemoryLayout<T>.size { raw[offset + i] = UInt8(truncatingIfNeeded: value >> (i * 8)) }
    }
}
