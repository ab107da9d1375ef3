/// Builds small ELF64 images in memory for loader tests: program headers, PT_NOTE notes and
/// segment contents, laid out sequentially.
struct TestELF {
    struct Segment { var address: UInt64; var data: [UInt8]; var memorySize: UInt64; var flags: UInt32 }
    struct Note { var name: String; var type: UInt32; var descriptor: [UInt8] }

    var type: UInt16 = 2
    var machine: UInt16 = 62
    var entry: UInt64 = 0x10_0000
    var segments: [Segment] = [Segment(address: 0x10_0000, data: [0xF4, 0xEB, 0xFE], memorySize: 0x1000, flags: 5)]
    var notes: [Note] = [TestELF.abiNote(), TestELF.manifestNote([])]
    /// More program headers with no contents (PT_INTERP, PT_TLS …): type, address, size.
    var extraHeaders: [(type: UInt32, address: UInt64, size: UInt64)] = []

    static func abiNote(target: UInt32 = 1, version: UInt32 = 1) -> Note {
        Note(name: "Solo5", type: 0x3149_4241, descriptor: le(target) + le(version) + le(UInt32(0)) + le(UInt32(0)))
    }

    /// An MFT1 note: 4 pad bytes, then struct mft with 104-byte entries; entry 0 is the reserved
    /// entry Solo5's toolchain always writes, unless `reservedFirst` is false.
    static func manifestNote(_ devices: [(String, UInt32)], declaredCount: UInt32? = nil, reservedFirst: Bool = true) -> Note {
        let entries = (reservedFirst ? [("", UInt32(1) << 30)] : []) + devices
        var d = [UInt8](repeating: 0, count: 4) + le(UInt32(1)) + le(declaredCount ?? UInt32(entries.count))
        for (name, type) in entries {
            var e = [UInt8](repeating: 0, count: 104)
            for (i, b) in name.utf8.prefix(68).enumerated() { e[i] = b }
            e.replaceSubrange(68..<72, with: le(type))
            d += e
        }
        return Note(name: "Solo5", type: 0x3154_464D, descriptor: d)
    }

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
        (0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: v >> ($0 * 8)) }
    }

    var bytes: [UInt8] {
        var noteArea: [UInt8] = []
        for n in notes {
            let name = Array(n.name.utf8) + [0]
            noteArea += Self.le(UInt32(name.count)) + Self.le(UInt32(n.descriptor.count)) + Self.le(n.type)
            noteArea += name + [UInt8](repeating: 0, count: (4 - name.count % 4) % 4)
            noteArea += n.descriptor + [UInt8](repeating: 0, count: (4 - n.descriptor.count % 4) % 4)
        }
        let phnum = segments.count + 1 + extraHeaders.count
        let headerEnd = 64 + 56 * phnum
        var out = [UInt8](repeating: 0, count: 64)
        out[0] = 0x7F; out[1] = 0x45; out[2] = 0x4C; out[3] = 0x46; out[4] = 2; out[5] = 1; out[6] = 1
        out.replaceSubrange(16..<18, with: Self.le(type))
        out.replaceSubrange(18..<20, with: Self.le(machine))
        out.replaceSubrange(24..<32, with: Self.le(entry))
        out.replaceSubrange(32..<40, with: Self.le(UInt64(64)))
        out.replaceSubrange(54..<56, with: Self.le(UInt16(56)))
        out.replaceSubrange(56..<58, with: Self.le(UInt16(phnum)))
        var offset = UInt64(headerEnd + noteArea.count)
        var phdrs: [UInt8] = []
        phdrs += Self.le(UInt32(4)) + Self.le(UInt32(4)) + Self.le(UInt64(headerEnd)) + Self.le(UInt64(0)) + Self.le(UInt64(0))
            + Self.le(UInt64(noteArea.count)) + Self.le(UInt64(noteArea.count)) + Self.le(UInt64(4))
        var body: [UInt8] = []
        for s in segments {
            phdrs += Self.le(UInt32(1)) + Self.le(s.flags) + Self.le(offset) + Self.le(s.address) + Self.le(s.address)
                + Self.le(UInt64(s.data.count)) + Self.le(s.memorySize) + Self.le(UInt64(0x1000))
            body += s.data
            offset += UInt64(s.data.count)
        }
        for h in extraHeaders {
            phdrs += Self.le(h.type) + Self.le(UInt32(4)) + Self.le(UInt64(0)) + Self.le(h.address) + Self.le(h.address)
                + Self.le(UInt64(0)) + Self.le(h.size) + Self.le(UInt64(8))
        }
        return out + phdrs + noteArea + body
    }
}
