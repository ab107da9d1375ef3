import VMSpec
import Synchronization

/// A device that claims a range of guest-physical addresses (memory-mapped I/O). The `MMIOBus`
/// calls it with the offset of the access inside the range it was registered with, so the same
/// device type can sit at any base (and move when a guest reprograms a PCI BAR).
///
/// The bus guarantees `offset + data.count <= length` of the registered range; an access that
/// straddles the end of a range never reaches the device. Accesses are 1 to 8 bytes wide in
/// practice (what KVM reports for one MMIO exit), little-endian, and may arrive concurrently
/// from several vCPU threads, so every implementation protects its own state.
public protocol MMIODevice: AnyObject, Sendable {
    /// A load of `data.count` bytes from `offset`; the device fills all of `data`.
    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    /// A store of `data.count` bytes to `offset`.
    func write(offset: UInt64, data: UnsafeRawBufferPointer)
}

/// The guest-physical MMIO bus: a checked map from disjoint 64-bit address ranges to devices.
///
/// Unlike the port-I/O bus, this map changes while vCPUs run: PCI BARs move whenever the guest
/// reprograms them (Linux may reassign what the VMM placed, and it switches memory decoding off
/// and on around BAR sizing). So the map is a copy-on-write array behind a `Mutex`:
/// - a lookup holds the lock only long enough to copy the array reference (one retain, no
///   allocation) and then searches and dispatches on that private snapshot without the lock, so
///   a device may itself (un)register ranges while handling an access without deadlocking;
/// - a registration mutates the array under the lock; a reader still holding the old snapshot
///   keeps the old buffer alive, which makes the copy-on-write copy the "new snapshot" and the
///   old one die with its last reader.
/// An access that raced a move may therefore reach the device at its old address once; that is
/// the same window real hardware has between the config write and the next access.
///
/// Dispatch is a binary search over entries sorted by base address.
public final class MMIOBus: Sendable {
    /// One claimed range; `last` is inclusive so a range may end at 2^64 - 1.
    struct Entry {
        let base: UInt64
        let last: UInt64
        let device: any MMIODevice

        var rangeDescription: String { MMIOBus.describe(base: base, last: last) + " (\(type(of: device)))" }
    }

    private let entries = Mutex<[Entry]>([])

    public init() {}

    /// Claims `base ..< base + length` for `device`. Refuses an empty range, one that runs past
    /// 2^64 - 1, and one that overlaps a range already registered (the message names both).
    /// The same device object may be registered at several ranges. Safe to call while vCPUs run.
    public func register(_ device: any MMIODevice, base: UInt64, length: UInt64) throws(DeviceError) {
        let new = try Self.entry(device, base: base, length: length)
        try entries.withLock { (entries: inout [Entry]) throws(DeviceError) in
            try Self.insert(new, into: &entries)
        }
    }

    /// Releases the range that starts at `base` and returns its device, or nil when no range
    /// starts there. Safe to call while vCPUs run.
    @discardableResult
    public func unregister(base: UInt64) -> (any MMIODevice)? {
        entries.withLock { entries in
            let index = Self.firstIndex(in: entries, withBaseAbove: base)
            guard index > 0, entries[index - 1].base == base else { return nil }
            return entries.remove(at: index - 1).device
        }
    }

    /// Moves the range starting at `oldBase` to start at `newBase`, keeping its device and length,
    /// in one step so no access sees the device missing. If the new place overlaps another
    /// range (or overflows) the range stays where it was and the error is thrown. Throws
    /// `.invalidRange` when nothing is registered at `oldBase`.
    public func move(from oldBase: UInt64, to newBase: UInt64) throws(DeviceError) {
        try entries.withLock { (entries: inout [Entry]) throws(DeviceError) in
            let index = Self.firstIndex(in: entries, withBaseAbove: oldBase)
            guard index > 0, entries[index - 1].base == oldBase else {
                throw DeviceError(.invalidRange, "no MMIO range registered at \(oldBase.hexString)")
            }
            let old = entries.remove(at: index - 1)
            do throws(DeviceError) {
                let new = try Self.entry(old.device, base: newBase, length: old.last - old.base + 1)
                try Self.insert(new, into: &entries)
            } catch {
                entries.insert(old, at: index - 1)
                throw error
            }
        }
    }

    /// A load of `data.count` bytes at `address`. Returns false when no single range holds the
    /// whole access; `data` is then filled with all ones, which is what a PC reads from an
    /// unclaimed address (and what PCI returns on a master abort).
    @inline(__always)
    @discardableResult
    public func read(address: UInt64, into data: UnsafeMutableRawBufferPointer) -> Bool {
        let snapshot = entries.withLock { $0 }
        guard let entry = Self.entry(in: snapshot, containing: address, count: data.count) else {
            if let base = data.baseAddress { base.initializeMemory(as: UInt8.self, repeating: 0xFF, count: data.count) }
            return false
        }
        entry.device.read(offset: address &- entry.base, into: data)
        return true
    }

    /// A store of `data.count` bytes at `address`. Returns false when no single range holds the
    /// whole access (the store is dropped; the caller decides whether to log it).
    @inline(__always)
    @discardableResult
    public func write(address: UInt64, data: UnsafeRawBufferPointer) -> Bool {
        let snapshot = entries.withLock { $0 }
        guard let entry = Self.entry(in: snapshot, containing: address, count: data.count) else { return false }
        entry.device.write(offset: address &- entry.base, data: data)
        return true
    }

    /// The device claiming `address` and the address's offset within its range, or nil.
    public func device(at address: UInt64) -> (device: any MMIODevice, offset: UInt64)? {
        let snapshot = entries.withLock { $0 }
        guard let entry = Self.entry(in: snapshot, containing: address, count: 1) else { return nil }
        return (entry.device, address &- entry.base)
    }

    /// The claimed ranges in ascending order, for diagnostics (`base`, inclusive `last`).
    public var ranges: [(base: UInt64, last: UInt64)] { entries.withLock { $0 }.map { ($0.base, $0.last) } }

    // MARK: - Map maintenance (callers hold the lock)

    private static func entry(_ device: any MMIODevice, base: UInt64, length: UInt64) throws(DeviceError) -> Entry {
        guard length > 0 else {
            throw DeviceError(.invalidRange, "MMIO range at \(base.hexString) for \(type(of: device)) has zero length")
        }
        let (last, overflow) = base.addingReportingOverflow(length - 1)
        guard !overflow else {
            throw DeviceError(.invalidRange,
                              "MMIO range \(base.hexString) length \(length.hexString) for \(type(of: device)) runs past 2^64")
        }
        return Entry(base: base, last: last, device: device)
    }

    private static func insert(_ new: Entry, into entries: inout [Entry]) throws(DeviceError) {
        // Entries are disjoint and sorted, so only the neighbours of the insertion point can overlap.
        let index = firstIndex(in: entries, withBaseAbove: new.base)
        if index > 0, entries[index - 1].last >= new.base {
            throw overlap(new, entries[index - 1])
        }
        if index < entries.count, entries[index].base <= new.last {
            throw overlap(new, entries[index])
        }
        entries.insert(new, at: index)
    }

    // MARK: - Lookup

    /// Index of the first entry whose base is above `address` (entries.count if none).
    @inline(__always)
    private static func firstIndex(in entries: [Entry], withBaseAbove address: UInt64) -> Int {
        var low = 0
        var high = entries.count
        while low < high {
            let mid = (low &+ high) >> 1
            if entries[mid].base <= address { low = mid &+ 1 } else { high = mid }
        }
        return low
    }

    /// The entry holding all of `address ..< address + count` (count >= 1), or nil.
    @inline(__always)
    private static func entry(in entries: [Entry], containing address: UInt64, count: Int) -> Entry? {
        let index = firstIndex(in: entries, withBaseAbove: address)
        guard index > 0 else { return nil }
        let candidate = entries[index - 1]
        guard address <= candidate.last else { return nil }
        // The bytes left in the range from `address`, minus one, so the sum cannot overflow.
        let room = candidate.last &- address
        return UInt64(max(count, 1) &- 1) <= room ? candidate : nil
    }

    private static func overlap(_ new: Entry, _ old: Entry) -> DeviceError {
        DeviceError(.overlap, "MMIO range \(new.rangeDescription) overlaps \(old.rangeDescription)")
    }

    static func describe(base: UInt64, last: UInt64) -> String {
        base == last ? "\(base.hexString)" : "\(base.hexString)-\(last.hexString)"
    }

}
