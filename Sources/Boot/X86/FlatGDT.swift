import GuestMemory

/// Flat 64-bit GDT descriptors shared by every loader: base 0, limit 4 GiB, DPL 0.
public enum FlatGDT {
    /// 64-bit code: present, S, type 0xB (execute/read, accessed), L=1, G=1.
    public static let code64: UInt64 = 0x00AF_9B00_0000_FFFF
    /// 32-bit code: present, S, type 0xB, D/B=1, G=1 (for entries in protected mode, e.g. PVH).
    public static let code32: UInt64 = 0x00CF_9B00_0000_FFFF
    /// Data: present, S, type 0x3 (read/write, accessed), D/B=1, G=1.
    public static let data: UInt64 = 0x00CF_9300_0000_FFFF

    /// Writes a GDT at `base` whose entry `codeSelector / 8` is code64 and `dataSelector / 8`
    /// is data, every other entry below them null. Returns the GDTR limit.
    @discardableResult
    static func write(at base: UInt64, codeSelector: UInt16, dataSelector: UInt16, code: UInt64 = code64,
                      into memory: GuestMemory) throws(GuestMemoryError) -> UInt16 {
        let count = UInt64(max(codeSelector, dataSelector) / 8 + 1)
        try memory.fill(at: GuestAddress(base), count: count * 8)
        try memory.store(code, at: GuestAddress(base + UInt64(codeSelector)))
        try memory.store(data, at: GuestAddress(base + UInt64(dataSelector)))
        return UInt16(count * 8 - 1)
    }
}
