#if canImport(Glibc)
import Glibc
#endif

/// The storage behind a virtio-blk device: a fixed-size array of bytes with positional
/// scatter/gather I/O, flush and deallocation. Backends implements it with `Host.DiskImage`
/// (a file or block device, locked and measured when opened).
public protocol BlockBackend: AnyObject, Sendable {
    /// Bytes of storage.
    var size: UInt64 { get }
    /// The file system's preferred I/O size (st_blksize), for the discard granularity.
    var preferredBlockSize: Int { get }
    /// Moves `total` bytes between the storage at `offset` and `iovecs[0..<count]` (scratch: they
    /// may be advanced in place). Returns the bytes moved and whether all of them did.
    func transfer(write: Bool, _ iovecs: UnsafeMutablePointer<iovec>, count: Int, offset: Int64, total: Int)
        -> (moved: Int, complete: Bool)
    /// Makes written data durable; false on failure.
    func flush() -> Bool
    /// Deallocates a range (a hole that reads as zeros), keeping the size.
    func punchHole(offset: Int64, length: Int64) -> BlockDeallocation
    /// Zeros a range without writing it (the file system's zero-range), keeping the size; false
    /// when that is not possible.
    func zeroRange(offset: Int64, length: Int64) -> Bool
    /// Writes `length` zero bytes at `offset` from `zeros` (a preallocated zero-filled buffer).
    func writeZeros(offset: Int64, length: Int64, from zeros: UnsafeRawBufferPointer) -> Bool
}

/// What became of a request to deallocate a range.
public enum BlockDeallocation: Sendable, Equatable {
    /// The range is a hole now.
    case done
    /// The storage cannot deallocate (the data simply stays).
    case unsupported
    /// The storage failed.
    case failed
}
