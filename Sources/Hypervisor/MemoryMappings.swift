import GuestMemory
import VMSpec

/// One range of host memory mapped into guest-physical space, in one KVM memory slot.
public struct MemoryMapping: Equatable, Sendable {
    public var slot: UInt32
    public var guestAddress: UInt64
    public var size: UInt64
    /// The host address, as an integer so the value is Sendable; the memory is the caller's.
    public var hostAddress: UInt
    public var readOnly: Bool

    /// One past the last guest-physical byte (never overflows: `MemoryMappings` checks it).
    public var guestEnd: UInt64 { guestAddress + size }
}

/// The guest-physical mappings of one machine, checked before KVM sees them: page-aligned
/// addresses, pointers and sizes, no overlap (KVM would refuse it with a bare EEXIST), room for
/// another slot, and exact matches for removal. Pure bookkeeping, so it is unit-tested without KVM.
public struct MemoryMappings: Sendable {
    public let slotLimit: Int
    public let pageSize: UInt64
    /// Sorted by guest address.
    public private(set) var mappings: [MemoryMapping] = []

    public init(slotLimit: Int, pageSize: UInt64 = 4096) {
        self.slotLimit = max(slotLimit, 0)
        self.pageSize = max(pageSize, 1)
    }

    /// The mapping `add` would make (the lowest free slot), or why it cannot be made.
    public func proposed(guestAddress: UInt64, size: UInt64, hostAddress: UInt, readOnly: Bool) throws(HypervisorError) -> MemoryMapping {
        guard hostAddress != 0 else { throw HypervisorError(.invalidArgument, "a mapping needs host memory (NULL given)") }
        guard size > 0 else { throw HypervisorError(.invalidArgument, "a mapping of 0 bytes") }
        guard guestAddress % pageSize == 0, size % pageSize == 0, UInt64(hostAddress) % pageSize == 0 else {
            throw HypervisorError(.misaligned, "mapping of \(size) bytes at guest \(guestAddress.hexString) from host \(UInt64(hostAddress).hexString): address, host pointer and size must be multiples of \(pageSize)")
        }
        guard guestAddress <= UInt64.max - size, UInt64(hostAddress) <= UInt64.max - size else {
            throw HypervisorError(.invalidArgument, "mapping of \(size) bytes at guest \(guestAddress.hexString) wraps around the address space")
        }
        if let other = mappings.first(where: { $0.guestAddress < guestAddress + size && guestAddress < $0.guestEnd }) {
            throw HypervisorError(.overlap, "mapping [\(guestAddress.hexString), \((guestAddress + size).hexString)) overlaps [\(other.guestAddress.hexString), \(other.guestEnd.hexString))")
        }
        guard mappings.count < slotLimit else {
            throw HypervisorError(.limit, "\(mappings.count) mappings already, KVM allows \(slotLimit)")
        }
        var slot: UInt32 = 0
        while mappings.contains(where: { $0.slot == slot }) { slot += 1 }
        return MemoryMapping(slot: slot, guestAddress: guestAddress, size: size, hostAddress: hostAddress, readOnly: readOnly)
    }

    /// Records a mapping `proposed` returned (once KVM has accepted it).
    public mutating func insert(_ mapping: MemoryMapping) {
        let index = mappings.firstIndex { $0.guestAddress > mapping.guestAddress } ?? mappings.endIndex
        mappings.insert(mapping, at: index)
    }

    /// The mapping that starts at `guestAddress` and is exactly `size` bytes long.
    public func existing(guestAddress: UInt64, size: UInt64) throws(HypervisorError) -> MemoryMapping {
        guard let mapping = mappings.first(where: { $0.guestAddress == guestAddress && $0.size == size }) else {
            throw HypervisorError(.notFound, "no mapping of \(size) bytes at guest \(guestAddress.hexString)")
        }
        return mapping
    }

    public mutating func remove(_ mapping: MemoryMapping) {
        mappings.removeAll { $0.slot == mapping.slot }
    }

    /// The guest-physical ranges mapped read-only, for the memory assist (writes there are MMIO).
    public var readOnlyRanges: [Range<UInt64>] {
        mappings.filter(\.readOnly).map { $0.guestAddress..<$0.guestAddress &+ $0.size }
    }

    /// Guest memory over the current mappings (borrowed: the caller owns the host memory), for the
    /// page walker and the assists.
    public var guestMemory: GuestMemory {
        let regions = mappings.map { m in
            GuestMemoryRegion(base: GuestAddress(m.guestAddress), size: m.size, borrowing: UnsafeMutableRawPointer(bitPattern: m.hostAddress)!)
        }
        // Cannot overlap: `proposed` refused every overlap.
        return (try? GuestMemory(regions: regions)) ?? (try! GuestMemory(regions: []))
    }
}
