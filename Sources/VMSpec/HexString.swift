extension BinaryInteger {
    /// `0x1f`: how every message writes an address, a register or a code (one format for all).
    public var hexString: String { "0x" + String(self, radix: 16) }
}
