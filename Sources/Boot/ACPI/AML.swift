/// A tiny encoder for the ACPI Machine Language terms our DSDT uses (ACPI spec, "ACPI Machine
/// Language (AML) Specification"): names, integers, strings, packages, buffers, scopes, devices
/// and small resource descriptors. Each function returns the complete encoded term, so nesting
/// terms is concatenating arrays; the length-prefixed ones compute their PkgLength from the body.
enum AML {
    static let zeroOp: UInt8 = 0x00, oneOp: UInt8 = 0x01
    static let bytePrefix: UInt8 = 0x0A, wordPrefix: UInt8 = 0x0B, dwordPrefix: UInt8 = 0x0C
    static let stringPrefix: UInt8 = 0x0D, qwordPrefix: UInt8 = 0x0E
    static let nameOp: UInt8 = 0x08, scopeOp: UInt8 = 0x10, bufferOp: UInt8 = 0x11, packageOp: UInt8 = 0x12
    static let extOpPrefix: UInt8 = 0x5B, deviceOp: UInt8 = 0x82
    static let rootChar: UInt8 = 0x5C, dualNamePrefix: UInt8 = 0x2E, multiNamePrefix: UInt8 = 0x2F

    /// The largest PkgLength: 4 bits in the lead byte plus three more bytes.
    static let maxPkgLength = 0x0FFF_FFFF

    /// Encodes a PkgLength value (which counts its own bytes too, see `pkgLength(enclosing:)`).
    /// One byte holds 0...63 in bits 0-5; longer forms put the byte count - 1 in bits 6-7 of the
    /// lead byte, the low nibble of the value in its bits 0-3 and the rest in following bytes.
    static func encodePkgLength(_ value: Int) throws(BootError) -> [UInt8] {
        guard value >= 0, value <= maxPkgLength else { throw BootError("AML: package length \(value) exceeds \(maxPkgLength)") }
        if value <= 0x3F { return [UInt8(value)] }
        let following = value <= 0xFFF ? 1 : value <= 0xF_FFFF ? 2 : 3
        var out = [UInt8(following << 6) | UInt8(value & 0xF)]
        for i in 0..<following { out.append(UInt8(truncatingIfNeeded: value >> (4 + 8 * i))) }
        return out
    }

    /// The PkgLength for a term whose body (after the PkgLength) is `bodyLength` bytes: the value
    /// includes the PkgLength's own 1...4 bytes, so pick the smallest encoding that still fits.
    static func pkgLength(enclosing bodyLength: Int) throws(BootError) -> [UInt8] {
        let limits = [0x3F, 0xFFF, 0xF_FFFF, maxPkgLength]
        for (index, limit) in limits.enumerated() where bodyLength + index + 1 <= limit {
            return try encodePkgLength(bodyLength + index + 1)
        }
        throw BootError("AML: package body of \(bodyLength) bytes is too long")
    }

    /// A NameString: optional root `\`, then dot-separated segments of up to 4 characters
    /// (A-Z, _, then also 0-9), each padded to 4 with `_` as AML requires.
    static func nameString(_ path: String) throws(BootError) -> [UInt8] {
        var text = Substring(path)
        var out: [UInt8] = []
        if text.first == "\\" { out.append(rootChar); text = text.dropFirst() }
        let segments = text.split(separator: ".", omittingEmptySubsequences: false)
        var encoded: [UInt8] = []
        for segment in segments {
            let raw = Array(segment.utf8)
            guard (1...4).contains(raw.count),
                  raw.first.map({ $0 == 0x5F || (0x41...0x5A).contains($0) }) == true,
                  raw.allSatisfy({ $0 == 0x5F || (0x41...0x5A).contains($0) || (0x30...0x39).contains($0) }) else {
                throw BootError("AML: bad name '\(path)'")
            }
            encoded += raw + [UInt8](repeating: 0x5F, count: 4 - raw.count)
        }
        switch segments.count {
        case 1: break
        case 2: out.append(dualNamePrefix)
        default:
            guard segments.count <= 255 else { throw BootError("AML: name '\(path)' has too many segments") }
            out += [multiNamePrefix, UInt8(segments.count)]
        }
        return out + encoded
    }

    /// The shortest integer encoding: ZeroOp, OneOp, or a Byte/Word/DWord/QWord constant.
    static func integer(_ value: UInt64) -> [UInt8] {
        switch value {
        case 0: return [zeroOp]
        case 1: return [oneOp]
        case ...0xFF: return [bytePrefix, UInt8(value)]
        case ...0xFFFF: return [wordPrefix] + littleEndian(value, bytes: 2)
        case ...0xFFFF_FFFF: return [dwordPrefix] + littleEndian(value, bytes: 4)
        default: return [qwordPrefix] + littleEndian(value, bytes: 8)
        }
    }

    /// A NUL-terminated ASCII string constant.
    static func string(_ text: String) throws(BootError) -> [UInt8] {
        let raw = Array(text.utf8)
        guard raw.allSatisfy({ (0x01...0x7F).contains($0) }) else { throw BootError("AML: string '\(text)' is not ASCII") }
        return [stringPrefix] + raw + [0]
    }

    /// EISAID("PNP0501"): three letters packed 5 bits each (A = 1) into the first two bytes, big
    /// end first, then four hex digits as two bytes; always a DWord constant, as compilers emit it.
    static func eisaID(_ id: String) throws(BootError) -> [UInt8] {
        let c = Array(id.utf8)
        guard c.count == 7, c[0..<3].allSatisfy({ (0x41...0x5A).contains($0) }),
              let product = UInt16(String(decoding: c[3...], as: UTF8.self), radix: 16),
              c[3...].allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x46).contains($0) }) else {
            throw BootError("AML: bad EISA id '\(id)'")
        }
        let l = c[0..<3].map { UInt16($0 - 0x40) }
        let vendor = l[0] << 10 | l[1] << 5 | l[2]
        return [dwordPrefix, UInt8(vendor >> 8), UInt8(vendor & 0xFF), UInt8(product >> 8), UInt8(product & 0xFF)]
    }

    /// Name(path, object).
    static func name(_ path: String, _ object: [UInt8]) throws(BootError) -> [UInt8] {
        [nameOp] + (try nameString(path)) + object
    }

    /// Package(n) { elements }: PkgLength covers the element count byte and the elements.
    static func package(_ elements: [[UInt8]]) throws(BootError) -> [UInt8] {
        guard elements.count <= 255 else { throw BootError("AML: package of \(elements.count) elements") }
        let body = [UInt8(elements.count)] + elements.joined()
        return [packageOp] + (try pkgLength(enclosing: body.count)) + body
    }

    /// Buffer() { bytes }: PkgLength, then the size as an integer term, then the bytes.
    static func buffer(_ bytes: [UInt8]) throws(BootError) -> [UInt8] {
        let body = integer(UInt64(bytes.count)) + bytes
        return [bufferOp] + (try pkgLength(enclosing: body.count)) + body
    }

    /// Scope(path) { terms }.
    static func scope(_ path: String, _ terms: [[UInt8]]) throws(BootError) -> [UInt8] {
        let body = (try nameString(path)) + terms.joined()
        return [scopeOp] + (try pkgLength(enclosing: body.count)) + body
    }

    /// Device(path) { terms }: an extended opcode (0x5B 0x82).
    static func device(_ path: String, _ terms: [[UInt8]]) throws(BootError) -> [UInt8] {
        let body = (try nameString(path)) + terms.joined()
        return [extOpPrefix, deviceOp] + (try pkgLength(enclosing: body.count)) + body
    }

    /// ResourceTemplate() { descriptors }: a buffer ending in the End Tag. Its checksum byte is
    /// 0, which the spec defines as "treat the template as checksummed correctly".
    static func resourceTemplate(_ descriptors: [[UInt8]]) throws(BootError) -> [UInt8] {
        try buffer(Array(descriptors.joined()) + [0x79, 0x00])
    }

    /// IO(Decode16, start, start, 1, length): a fixed range, small descriptor type 8 (0x47).
    static func io(_ start: UInt16, length: UInt8) -> [UInt8] {
        [0x47, 0x01] + littleEndian(UInt64(start), bytes: 2) + littleEndian(UInt64(start), bytes: 2) + [0x01, length]
    }

    /// IRQNoFlags() { irqs }: small descriptor type 4 with the 2-byte form (0x22), which means
    /// ISA-style edge-triggered, active-high, exclusive.
    static func irqNoFlags(_ irqs: [Int]) -> [UInt8] {
        let mask = irqs.reduce(UInt16(0)) { $0 | UInt16(1) << UInt16($1 & 15) }
        return [0x22] + littleEndian(UInt64(mask), bytes: 2)
    }

    /// Word Address Space Descriptor (ACPI 6.4, 6.4.3.5.3): a producer range with fixed min
    /// and max. `type` 1 = I/O, 2 = bus number; type-specific flags as given.
    static func wordAddressSpace(type: UInt8, typeFlags: UInt8, minimum: UInt16, maximum: UInt16) -> [UInt8] {
        let length = UInt64(maximum) - UInt64(minimum) + 1
        return [0x88, 0x0D, 0x00, type, 0x0C, typeFlags]
            + littleEndian(0, bytes: 2) + littleEndian(UInt64(minimum), bytes: 2) + littleEndian(UInt64(maximum), bytes: 2)
            + littleEndian(0, bytes: 2) + littleEndian(length, bytes: 2)
    }

    /// DWord Address Space Descriptor (6.4.3.5.2) for a read/write, non-cacheable memory window.
    static func dwordMemory(minimum: UInt32, maximum: UInt32) -> [UInt8] {
        let length = UInt64(maximum) - UInt64(minimum) + 1
        return [0x87, 0x17, 0x00, 0x00, 0x0C, 0x01]
            + littleEndian(0, bytes: 4) + littleEndian(UInt64(minimum), bytes: 4) + littleEndian(UInt64(maximum), bytes: 4)
            + littleEndian(0, bytes: 4) + littleEndian(length, bytes: 4)
    }

    static func littleEndian(_ value: UInt64, bytes: Int) -> [UInt8] {
        (0..<bytes).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }
}
