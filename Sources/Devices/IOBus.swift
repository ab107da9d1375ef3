/// The x86 port-I/O bus: a checked map from disjoint port ranges to devices.
///
/// Threading contract: `register` mutates the map and must finish before any vCPU thread starts
/// dispatching (the VMM builds the bus, then starts vCPUs). After that the map is read-only, so
/// `read`/`write` may run concurrently on every vCPU thread without a lock; each device guards
/// its own state. That is why the class is `@unchecked Sendable`.
///
/// Dispatch is `RangeMap`'s binary search: no allocation, no hashing.
public final class IOBus: @unchecked Sendable {
    private var map = RangeMap<UInt16, any PortIODevice>(kind: "port")

    public init() {}

    /// Claims ports `base ..< base + length` for `device`. Refuses an empty range, one that runs
    /// past port 0xFFFF, and one that overlaps a range already registered (the message names
    /// both). The same device object may be registered at several ranges.
    public func register(_ device: any PortIODevice, base: UInt16, length: UInt16) throws(DeviceError) {
        try map.insert(device, base: base, length: length)
    }

    /// An IN of `size` bytes (1, 2 or 4) from `port`. Unclaimed ports read as all ones, as a
    /// floating ISA bus does; guests probe for absent hardware that way.
    @inline(__always)
    public func read(port: UInt16, size: Int) -> UInt32 {
        let mask = Self.mask(size)
        guard let entry = map.entry(containing: port) else { return mask }
        return entry.device.read(offset: port &- entry.base, size: size) & mask
    }

    /// An OUT of `size` bytes to `port`. Returns false when no device claims the port (the write
    /// is dropped, as on real hardware; the caller decides whether to log it).
    @inline(__always)
    @discardableResult
    public func write(port: UInt16, size: Int, value: UInt32) -> Bool {
        guard let entry = map.entry(containing: port) else { return false }
        entry.device.write(offset: port &- entry.base, size: size, value: value & Self.mask(size))
        return true
    }

    /// The device claiming `port` and the port's offset within its range, or nil.
    public func device(at port: UInt16) -> (device: any PortIODevice, offset: UInt16)? {
        guard let entry = map.entry(containing: port) else { return nil }
        return (entry.device, port &- entry.base)
    }

    /// The claimed ranges in ascending order, for diagnostics (`base`, inclusive `last`).
    public var ranges: [(base: UInt16, last: UInt16)] { map.ranges }

    /// All ones in the low `size` bytes; an access is never wider than 4 bytes.
    @inline(__always)
    static func mask(_ size: Int) -> UInt32 {
        switch size {
        case 1: 0xFF
        case 2: 0xFFFF
        default: 0xFFFF_FFFF
        }
    }
}
