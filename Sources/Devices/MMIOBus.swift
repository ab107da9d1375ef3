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
/// Dispatch is `RangeMap`'s binary search over the snapshot.
public final class MMIOBus: Sendable {
    private let map = Mutex(RangeMap<UInt64, any MMIODevice>(kind: "MMIO"))

    public init() {}

    /// Claims `base ..< base + length` for `device`. Refuses an empty range, one that runs past
    /// 2^64 - 1, and one that overlaps a range already registered (the message names both).
    /// The same device object may be registered at several ranges. Safe to call while vCPUs run.
    public func register(_ device: any MMIODevice, base: UInt64, length: UInt64) throws(DeviceError) {
        try map.withLock { (map: inout RangeMap<UInt64, any MMIODevice>) throws(DeviceError) in
            try map.insert(device, base: base, length: length)
        }
    }

    /// Releases the range that starts at `base` and returns its device, or nil when no range
    /// starts there. Safe to call while vCPUs run.
    @discardableResult
    public func unregister(base: UInt64) -> (any MMIODevice)? {
        map.withLock { $0.remove(base: base)?.entry.device }
    }

    /// Moves the range starting at `oldBase` to start at `newBase`, keeping its device and length,
    /// in one step so no access sees the device missing. If the new place overlaps another
    /// range (or overflows) the range stays where it was and the error is thrown. Throws
    /// `.invalidRange` when nothing is registered at `oldBase`.
    public func move(from oldBase: UInt64, to newBase: UInt64) throws(DeviceError) {
        try map.withLock { (map: inout RangeMap<UInt64, any MMIODevice>) throws(DeviceError) in
            guard let (old, index) = map.remove(base: oldBase) else {
                throw DeviceError(.invalidRange, "no MMIO range registered at \(oldBase.hexString)")
            }
            do throws(DeviceError) {
                try map.insert(old.device, base: newBase, length: old.last - old.base + 1)
            } catch {
                map.restore(old, at: index)
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
        let snapshot = map.withLock { $0 }
        guard let entry = snapshot.entry(containing: address, count: data.count) else {
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
        let snapshot = map.withLock { $0 }
        guard let entry = snapshot.entry(containing: address, count: data.count) else { return false }
        entry.device.write(offset: address &- entry.base, data: data)
        return true
    }

    /// The device claiming `address` and the address's offset within its range, or nil.
    public func device(at address: UInt64) -> (device: any MMIODevice, offset: UInt64)? {
        let snapshot = map.withLock { $0 }
        guard let entry = snapshot.entry(containing: address) else { return nil }
        return (entry.device, address &- entry.base)
    }

    /// The claimed ranges in ascending order, for diagnostics (`base`, inclusive `last`).
    public var ranges: [(base: UInt64, last: UInt64)] { map.withLock { $0 }.ranges }
}
