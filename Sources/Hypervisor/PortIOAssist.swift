/// Opt-in assist for string/REP port I/O: KVM hands over up to a page of items in one exit
/// (`count > 1`); this walks them one by one so a device sees single accesses. Nothing calls it
/// unless the exit loop asks.
public enum PortIOAssist {
    /// Calls `body(itemIndex, itemBytes)` for each of the exit's `count` items of `size` bytes.
    /// For IN, `body` fills the slice; for OUT, it reads it. Items that would fall outside the
    /// data area are not visited.
    @inlinable @inline(__always)
    public static func forEachItem(of exit: PortIOExit, data: UnsafeMutableRawBufferPointer,
                                   _ body: (Int, UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        guard exit.size > 0, exit.count > 0, let base = data.baseAddress else { return }
        let items = min(exit.count, data.count / exit.size)
        for i in 0..<items {
            try body(i, UnsafeMutableRawBufferPointer(start: base + i * exit.size, count: exit.size))
        }
    }

    /// The little-endian value of one item (1, 2 or 4 bytes).
    @inlinable @inline(__always)
    public static func value(of item: UnsafeMutableRawBufferPointer) -> UInt32 {
        switch item.count {
        case 1: UInt32(item.load(as: UInt8.self))
        case 2: UInt32(UInt16(littleEndian: item.loadUnaligned(as: UInt16.self)))
        case 4: UInt32(littleEndian: item.loadUnaligned(as: UInt32.self))
        default: 0
        }
    }

    /// Stores `value` into one item, truncated to its width (for IN).
    @inlinable @inline(__always)
    public static func store(_ value: UInt32, into item: UnsafeMutableRawBufferPointer) {
        switch item.count {
        case 1: item.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
        case 2: item.storeBytes(of: UInt16(truncatingIfNeeded: value).littleEndian, as: UInt16.self)
        case 4: item.storeBytes(of: value.littleEndian, as: UInt32.self)
        default: break
        }
    }
}
