import VMSpec
/// A guest-physical address. A distinct type so host pointers and guest addresses never mix.
public struct GuestAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }

    /// `self + offset`, or nil when it would wrap past 2^64.
    @inline(__always)
    public func adding(_ offset: UInt64) -> GuestAddress? {
        let (sum, overflow) = rawValue.addingReportingOverflow(offset)
        return overflow ? nil : GuestAddress(sum)
    }

    public static func < (a: GuestAddress, b: GuestAddress) -> Bool { a.rawValue < b.rawValue }
    public var description: String { rawValue.hexString }
}

/// Why a guest-memory access or layout was refused.
public enum GuestMemoryError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The range [address, address+length) is not wholly inside one region (or overflows).
    case outOfBounds(address: UInt64, length: UInt64)
    /// Regions given to GuestMemory overlap, wrap or are empty.
    case invalidLayout(String)
    /// The host refused to map memory for the guest.
    case allocationFailed(size: UInt64, errno: Int32)

    public var description: String {
        switch self {
        case let .outOfBounds(address, length):
            "guest access out of bounds: \(address.hexString) length \(length)"
        case let .invalidLayout(why): "invalid guest memory layout: \(why)"
        case let .allocationFailed(size, errno): "cannot allocate \(size) bytes of guest memory (errno \(errno))"
        }
    }
}
