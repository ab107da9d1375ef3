import Host
#if canImport(Glibc)
import Glibc
#endif

/// One contiguous range of guest-physical memory backed by host memory.
public final class GuestMemoryRegion: @unchecked Sendable {
    public let base: GuestAddress
    public let size: UInt64
    /// Host address of `base`. Valid while the region lives.
    public let host: UnsafeMutableRawPointer
    private let ownsMapping: Bool

    /// Allocates an anonymous, lazily-populated mapping: untouched guest pages cost no host RAM.
    /// With `hugePages`, the mapping is 2 MiB aligned and asks for transparent huge pages
    /// (MADV_HUGEPAGE): far fewer EPT/NPT faults and TLB misses for a big guest such as Linux;
    /// tiny guests (a 2 MiB unikernel) leave it off, since one touched byte would then cost 2 MiB.
    public init(base: GuestAddress, size: UInt64, hugePages: Bool = false) throws(GuestMemoryError) {
        guard size > 0, size <= UInt64(Int.max) - Self.hugePageSize, base.adding(size) != nil else {
            throw .invalidLayout("region at \(base) of size \(size)")
        }
        let slack = hugePages ? Int(Self.hugePageSize) : 0
        guard let p = Memory.mapAnonymous(Int(size) + slack) else { throw .allocationFailed(size: size, errno: errno) }
        var start = p
        if hugePages {
            // Trim the mapping to a 2 MiB-aligned start so guest and host huge pages line up.
            let address = UInt(bitPattern: p)
            let aligned = (address + UInt(slack) - 1) & ~(UInt(slack) - 1)
            let head = Int(aligned - address)
            if head > 0 { Memory.unmap(p, head) }
            if slack - head > 0 { Memory.unmap(p + head + Int(size), slack - head) }
            start = p + head
            Memory.adviseHugePages(start, Int(size))
        }
        self.base = base
        self.size = size
        self.host = start
        self.ownsMapping = true
    }

    /// The x86-64 large-page size.
    public static let hugePageSize: UInt64 = 2 << 20

    /// Wraps host memory the caller owns and keeps alive (used by tests and by file-backed memory).
    public init(base: GuestAddress, size: UInt64, borrowing host: UnsafeMutableRawPointer) {
        self.base = base
        self.size = size
        self.host = host
        self.ownsMapping = false
    }

    deinit {
        if ownsMapping { Memory.unmap(host, Int(size)) }
    }

    /// The end address (exclusive); cannot overflow, checked at init.
    public var end: UInt64 { base.rawValue &+ size }
}

/// The guest's physical memory: a set of non-overlapping regions and checked access to them.
/// Every access takes a guest address and a length and is refused unless it lies wholly inside one
/// region, with overflow-safe arithmetic: guest-supplied values can never reach outside.
public final class GuestMemory: @unchecked Sendable {
    public let regions: [GuestMemoryRegion]

    /// The first region's bounds as plain values, so the common single-region lookup does no
    /// array iteration and no reference counting (it runs on every hypercall and every queue
    /// descriptor).
    private let firstBase: UInt64, firstSize: UInt64, firstHost: UnsafeMutableRawPointer?

    public init(regions: [GuestMemoryRegion]) throws(GuestMemoryError) {
        let sorted = regions.sorted { $0.base < $1.base }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.end > b.base.rawValue {
            throw .invalidLayout("regions at \(a.base) and \(b.base) overlap")
        }
        self.regions = sorted
        firstBase = sorted.first?.base.rawValue ?? 0
        firstSize = sorted.first?.size ?? 0
        firstHost = sorted.first?.host
    }

    /// One anonymous region of `size` bytes at guest-physical 0.
    public convenience init(size: UInt64) throws(GuestMemoryError) {
        try self.init(regions: [GuestMemoryRegion(base: GuestAddress(0), size: size)])
    }

    /// Total bytes of guest RAM.
    public var size: UInt64 { regions.reduce(0) { $0 + $1.size } }

    /// Host bytes for [address, address+count). The hot path: one region lookup and two compares.
    @inline(__always)
    public func bytes(at address: GuestAddress, count: UInt64) throws(GuestMemoryError) -> UnsafeMutableRawBufferPointer {
        let a = address.rawValue
        if a >= firstBase, let host = firstHost {
            let offset = a - firstBase
            if offset <= firstSize, count <= firstSize - offset, offset < firstSize || count == 0 {
                return UnsafeMutableRawBufferPointer(start: host + Int(offset), count: Int(count))
            }
        }
        return try slowBytes(at: address, count: count)
    }

    /// The lookup over every region (memory split around the PCI hole).
    private func slowBytes(at address: GuestAddress, count: UInt64) throws(GuestMemoryError) -> UnsafeMutableRawBufferPointer {
        for region in regions {
            let a = address.rawValue
            guard a >= region.base.rawValue else { break }
            let offset = a - region.base.rawValue
            guard offset < region.size || (count == 0 && offset == region.size) else { continue }
            guard count <= region.size - offset else { break }
            return UnsafeMutableRawBufferPointer(start: region.host + Int(offset), count: Int(count))
        }
        throw .outOfBounds(address: address.rawValue, length: count)
    }

    /// True when [address, address+count) is inside one region.
    public func contains(_ address: GuestAddress, count: UInt64) -> Bool {
        (try? bytes(at: address, count: count)) != nil
    }

    /// Reads a little-endian integer.
    @inline(__always)
    public func load<T: FixedWidthInteger>(_: T.Type = T.self, at address: GuestAddress) throws(GuestMemoryError) -> T {
        let b = try bytes(at: address, count: UInt64(MemoryLayout<T>.size))
        return T(littleEndian: b.loadUnaligned(as: T.self))
    }

    /// Writes a little-endian integer.
    @inline(__always)
    public func store<T: FixedWidthInteger>(_ value: T, at address: GuestAddress) throws(GuestMemoryError) {
        let b = try bytes(at: address, count: UInt64(MemoryLayout<T>.size))
        b.storeBytes(of: value.littleEndian, as: T.self)
    }

    /// Copies host bytes into the guest.
    public func write(_ data: UnsafeRawBufferPointer, at address: GuestAddress) throws(GuestMemoryError) {
        let b = try bytes(at: address, count: UInt64(data.count))
        if !data.isEmpty { b.baseAddress!.copyMemory(from: data.baseAddress!, byteCount: data.count) }
    }

    /// Copies an array of bytes into the guest.
    public func write(_ data: [UInt8], at address: GuestAddress) throws(GuestMemoryError) {
        let b = try bytes(at: address, count: UInt64(data.count))
        if !data.isEmpty { b.copyBytes(from: data) }
    }

    /// Copies guest bytes out.
    public func read(at address: GuestAddress, count: UInt64) throws(GuestMemoryError) -> [UInt8] {
        Array(try bytes(at: address, count: count))
    }

    /// Sets `count` bytes to `value`.
    public func fill(at address: GuestAddress, count: UInt64, with value: UInt8 = 0) throws(GuestMemoryError) {
        let b = try bytes(at: address, count: count)
        if count > 0 { memset(b.baseAddress!, Int32(value), Int(count)) }
    }

    /// Reads a NUL-terminated string of at most `maxLength` bytes (the NUL excluded). A string that
    /// runs to the limit or to the end of memory without a NUL is refused.
    public func readCString(at address: GuestAddress, maxLength: UInt64) throws(GuestMemoryError) -> String {
        var collected: [UInt8] = []
        var cursor = address
        while UInt64(collected.count) <= maxLength {
            let byte: UInt8 = try load(at: cursor)
            if byte == 0 { return String(decoding: collected, as: UTF8.self) }
            collected.append(byte)
            guard let next = cursor.adding(1) else { break }
            cursor = next
        }
        throw .outOfBounds(address: address.rawValue, length: maxLength)
    }
}
