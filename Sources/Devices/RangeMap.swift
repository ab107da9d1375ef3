import VMSpec

/// What both buses are: a checked map from disjoint, non-empty address ranges to devices, sorted
/// by base, looked up by binary search (no allocation, no hashing). `IOBus` keeps one for port
/// I/O (built before vCPUs start, then read-only); `MMIOBus` keeps one behind a lock for MMIO
/// (PCI BARs move while vCPUs run).
struct RangeMap<Address: FixedWidthInteger & UnsignedInteger, Device> {
    /// One claimed range; `last` is inclusive so a range may end at the top of the address space.
    struct Entry {
        let base: Address
        let last: Address
        let device: Device
    }

    /// What the map is of, for messages: "port" or "MMIO".
    let kind: String
    private(set) var entries: [Entry] = []

    init(kind: String) { self.kind = kind }

    /// The entry for `base ..< base + length`, or an error for an empty range or one past the end
    /// of the address space.
    func entry(_ device: Device, base: Address, length: Address) throws(DeviceError) -> Entry {
        guard length > 0 else {
            throw DeviceError(.invalidRange, "\(kind) range at \(base.hexString) for \(type(of: device)) has zero length")
        }
        let (last, overflow) = base.addingReportingOverflow(length - 1)
        guard !overflow else {
            throw DeviceError(.invalidRange, "\(kind) range \(base.hexString) length \(length.hexString) for \(type(of: device)) runs past \(Address.max.hexString)")
        }
        return Entry(base: base, last: last, device: device)
    }

    /// Claims `base ..< base + length`; refuses what `entry` refuses and an overlap with a range
    /// already claimed (the message names both).
    mutating func insert(_ device: Device, base: Address, length: Address) throws(DeviceError) {
        try insert(entry(device, base: base, length: length))
    }

    mutating func insert(_ new: Entry) throws(DeviceError) {
        // Entries are disjoint and sorted, so only the neighbours of the insertion point can overlap.
        let index = firstIndex(withBaseAbove: new.base)
        if index > 0, entries[index - 1].last >= new.base { throw overlap(new, entries[index - 1]) }
        if index < entries.count, entries[index].base <= new.last { throw overlap(new, entries[index]) }
        entries.insert(new, at: index)
    }

    /// Removes the range starting exactly at `base`; returns it, or nil when none starts there.
    mutating func remove(base: Address) -> (entry: Entry, index: Int)? {
        let index = firstIndex(withBaseAbove: base)
        guard index > 0, entries[index - 1].base == base else { return nil }
        return (entries.remove(at: index - 1), index - 1)
    }

    /// Puts back an entry `remove` returned, at its old place.
    mutating func restore(_ entry: Entry, at index: Int) { entries.insert(entry, at: index) }

    /// The entry holding all of `address ..< address + count` (count >= 1), or nil.
    @inline(__always)
    func entry(containing address: Address, count: Int = 1) -> Entry? {
        let index = firstIndex(withBaseAbove: address)
        guard index > 0 else { return nil }
        let candidate = entries[index - 1]
        guard address <= candidate.last else { return nil }
        // The units left in the range from `address`, minus one, so the sum cannot overflow.
        let room = candidate.last &- address
        return UInt64(max(count, 1) &- 1) <= UInt64(room) ? candidate : nil
    }

    /// The claimed ranges in ascending order (`base`, inclusive `last`).
    var ranges: [(base: Address, last: Address)] { entries.map { ($0.base, $0.last) } }

    /// Index of the first entry whose base is above `address` (entries.count if none).
    @inline(__always)
    private func firstIndex(withBaseAbove address: Address) -> Int {
        var low = 0
        var high = entries.count
        while low < high {
            let mid = (low &+ high) >> 1
            if entries[mid].base <= address { low = mid &+ 1 } else { high = mid }
        }
        return low
    }

    private func overlap(_ new: Entry, _ old: Entry) -> DeviceError {
        DeviceError(.overlap, "\(kind) range \(describe(new)) overlaps \(describe(old))")
    }

    private func describe(_ e: Entry) -> String {
        (e.base == e.last ? e.base.hexString : "\(e.base.hexString)-\(e.last.hexString)") + " (\(type(of: e.device)))"
    }
}
