/// Bounds-checked little-endian reads from an in-memory file image. Every offset comes from an
/// untrusted file, so every read checks range and overflow and throws instead of trapping.
struct ByteReader {
    let bytes: [UInt8]
    let what: String

    func range(_ offset: UInt64, _ count: UInt64) throws(BootError) -> Range<Int> {
        let (end, overflow) = offset.addingReportingOverflow(count)
        guard !overflow, end <= UInt64(bytes.count) else {
            throw BootError("\(what): truncated (needs bytes \(offset)..<\(end), file has \(bytes.count))")
        }
        return Int(offset)..<Int(end)
    }

    func u8(_ offset: UInt64) throws(BootError) -> UInt8 { bytes[try range(offset, 1).lowerBound] }

    func u16(_ offset: UInt64) throws(BootError) -> UInt16 {
        let r = try range(offset, 2)
        return UInt16(bytes[r.lowerBound]) | UInt16(bytes[r.lowerBound + 1]) << 8
    }

    func u32(_ offset: UInt64) throws(BootError) -> UInt32 {
        let r = try range(offset, 4)
        var v: UInt32 = 0
        for i in (0..<4).reversed() { v = v << 8 | UInt32(bytes[r.lowerBound + i]) }
        return v
    }

    func u64(_ offset: UInt64) throws(BootError) -> UInt64 {
        let r = try range(offset, 8)
        var v: UInt64 = 0
        for i in (0..<8).reversed() { v = v << 8 | UInt64(bytes[r.lowerBound + i]) }
        return v
    }

    func slice(_ offset: UInt64, _ count: UInt64) throws(BootError) -> ArraySlice<UInt8> {
        bytes[try range(offset, count)]
    }
}
