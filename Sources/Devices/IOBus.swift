import VMSpec

/// The x86 port-I/O bus: a checked map from disjoint port ranges to devices.
///
/// Threading contract: `register` mutates the map and must finish before any vCPU thread starts
/// dispatching (the VMM builds the bus, then starts vCPUs). After that the map is read-only, so
/// `read`/`write` may run concurrently on every vCPU thread without a lock; each device guards
/// its own state. That is why the class is `@unchecked Sendable`.
///
/// Dispatch is a binary search over an array sorted by base port: no allocation, no hashing.
public final class IOBus: @unchecked Sendable {
    /// One claimed range; `last` is inclusive so a range may end at 0xFFFF.
    struct Entry {
        let base: UInt16
        let last: UInt16
        let device: any PortIODevice

        var rangeDescription: String { IOBus.describe(base: base, last: last) + " (\(type(of: device)))" }
    }

    private var entries: [Entry] = []

    public init() {}

    /// Claims ports `base ..< base + length` for `device`. Refuses an empty range, one that runs
    /// past port 0xFFFF, and one that overlaps a range already registered (the message names
    /// both). The same device object may be registered at several ranges.
    public func register(_ device: any PortIODevice, base: UInt16, length: UInt16) throws(DeviceError) {
        guard length > 0 else {
            throw DeviceError(.invalidRange, "port range at \(base.hexString) for \(type(of: device)) has zero length")
        }
        let (last, overflow) = base.addingReportingOverflow(length - 1)
        guard !overflow else {
            throw DeviceError(.invalidRange,
                              "port range \(base.hexString) length \(length) for \(type(of: device)) runs past 0xffff")
        }
        let new = Entry(base: base, last: last, device: device)
        // Entries are disjoint and sorted, so only the neighbours of the insertion point can overlap.
        let index = firstIndex(withBaseAbove: base)
        if index > 0, entries[index - 1].last >= base {
            throw overlap(new, entries[index - 1])
        }
        if index < entries.count, entries[index].base <= last {
            throw overlap(new, entries[index])
        }
        entries.insert(new, at: index)
    }

    /// An IN of `size` bytes (1, 2 or 4) from `port`. Unclaimed ports read as all ones, as a
    /// floating ISA bus does; guests probe for absent hardware that way.
    @inline(__always)
    public func read(port: UInt16, size: Int) -> UInt32 {
        let mask = Self.mask(size)
        guard let entry = entry(containing: port) else { return mask }
        return entry.device.read(offset: port &- entry.base, size: size) & mask
    }

    /// An OUT of `size` bytes to `port`. Returns false when no device claims the port (the write
    /// is dropped, as on real hardware; the caller decides whether to log it).
    @inline(__always)
    @discardableResult
    public func write(port: UInt16, size: Int, value: UInt32) -> Bool {
        guard let entry = entry(containing: port) else { return false }
        entry.device.write(offset: port &- entry.base, size: size, value: value & Self.mask(size))
        return true
    }

    /// The device claiming `port` and the port's offset within its range, or nil.
    public func device(at port: UInt16) -> (device: any PortIODevice, offset: UInt16)? {
        guard let entry = entry(containing: port) else { return nil }
        return (entry.device, port &- entry.base)
    }

    /// The claimed ranges in ascending order, for diagnostics (`base`, inclusive `last`).
    public var ranges: [(base: UInt16, last: UInt16)] { entries.map { ($0.base, $0.last) } }

    // MARK: - Lookup

    /// Index of the first entry whose base is above `port` (entries.count if none).
    @inline(__always)
    private func firstIndex(withBaseAbove port: UInt16) -> Int {
        var low = 0
        var high = entries.count
        while low < high {
            let mid = (low &+ high) >> 1
            if entries[mid].base <= port { low = mid &+ 1 } else { high = mid }
        }
        return low
    }

    @inline(__always)
    private func entry(containing port: UInt16) -> Entry? {
        let index = firstIndex(withBaseAbove: port)
        guard index > 0 else { return nil }
        let candidate = entries[index - 1]
        return port <= candidate.last ? candidate : nil
    }

    /// All ones in the low `size` bytes; an access is never wider than 4 bytes.
    @inline(__always)
    static func mask(_ size: Int) -> UInt32 {
        switch size {
        case 1: 0xFF
        case 2: 0xFFFF
        default: 0xFFFF_FFFF
        }
    }

    private func overlap(_ new: Entry, _ old: Entry) -> DeviceError {
        DeviceError(.overlap, "port range \(new.rangeDescription) overlaps \(old.rangeDescription)")
    }

    static func describe(base: UInt16, last: UInt16) -> String {
        base == last ? "\(base.hexString)" : "\(base.hexString)-\(last.hexString)"
    }

}
