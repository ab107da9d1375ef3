import CHost
#if canImport(Glibc)
import Glibc
#endif

/// A disk image opened for a guest's block device (virtio-blk or a Solo5 hvt block device): a
/// regular file or a block device, locked so a second VM cannot use it (exclusive; shared when
/// read-only), measured, with the positional I/O a block device needs, each call retried on
/// EINTR and on short transfers. One place for what both block devices did apart.
public final class DiskImage: @unchecked Sendable {
    public let file: FileDescriptor
    public var descriptor: Int32 { file.rawValue }
    /// Bytes (block devices measured with lseek: their st_size is 0).
    public let size: UInt64
    /// st_blksize of the file, a hint for discard alignment.
    public let preferredBlockSize: Int
    public let readOnly: Bool

    /// Opens `path` read-write (read-only when `readOnly`) through ``ImageFile``: the open does
    /// not block (a FIFO given as a disk would wait forever for a writer), and anything but a
    /// regular file or a block device is refused.
    public init(path: String, readOnly: Bool) throws(HostError) {
        func fail(_ text: String) -> HostError { HostError(message: text) }
        let (fd, info) = try ImageFile.openChecked(path, for: "disk", writable: !readOnly, blockDeviceAllowed: true)
        // flock locks belong to the open file description, so a second open of the same image
        // (this process or another) conflicts, which is what keeps two VMs off one disk.
        var locked: Int32
        repeat { locked = flock(fd.rawValue, (readOnly ? LOCK_SH : LOCK_EX) | LOCK_NB) } while locked != 0 && errno == EINTR
        guard locked == 0 else {
            let code = errno
            if code == EWOULDBLOCK { throw fail("\(path) is locked by another process (is another VM using it?)") }
            throw fail("cannot lock \(path): \(HostError.text(errno: code))")
        }
        // lseek measures block devices too, where st_size is 0.
        let end = lseek(fd.rawValue, 0, SEEK_END)
        guard end >= 0 else { throw fail("cannot measure \(path): \(HostError.text(errno: errno))") }
        file = fd
        size = UInt64(end)
        preferredBlockSize = Int(info.st_blksize)
        self.readOnly = readOnly
    }

    /// preadv/pwritev of `count` iovecs at `offset` until `total` bytes moved. The iovecs are
    /// scratch: they are advanced in place over partial transfers. Returns the bytes moved and
    /// whether all of them did (an error or an unexpected end of file stops early).
    public func transfer(write: Bool, _ iovecs: UnsafeMutablePointer<iovec>, count: Int, offset: Int64, total: Int)
        -> (moved: Int, complete: Bool)
    {
        var vector = iovecs
        var left = count
        var position = offset
        var moved = 0
        while moved < total {
            while left > 0, vector.pointee.iov_len == 0 { vector += 1; left -= 1 }
            guard left > 0 else { break }
            // IOV_MAX is 1024 on Linux; callers never pass more, but stay inside it regardless.
            let batch = Int32(min(left, 1024))
            let result = write ? pwritev(descriptor, vector, batch, off_t(position)) : preadv(descriptor, vector, batch, off_t(position))
            if result < 0 {
                if errno == EINTR { continue }
                return (moved, false)
            }
            // 0 means end of file (the image shrank under us) or no progress: give up.
            guard result > 0 else { return (moved, false) }
            moved += result
            position += Int64(result)
            var done = result
            while done > 0 {
                let length = vector.pointee.iov_len
                if length <= done {
                    done -= length
                    vector += 1
                    left -= 1
                } else {
                    vector.pointee.iov_base = vector.pointee.iov_base.map { $0 + done }
                    vector.pointee.iov_len = length - done
                    done = 0
                }
            }
        }
        return (moved, moved == total)
    }

    /// fdatasync, retried on EINTR.
    public func flush() -> Bool {
        while true {
            if fdatasync(descriptor) == 0 { return true }
            if errno != EINTR { return false }
        }
    }

    /// fallocate(2) with `mode`, retried on EINTR; returns 0 or the errno.
    public func allocate(mode: Int32, offset: Int64, length: Int64) -> Int32 {
        while true {
            let result = chost_fallocate(descriptor, mode, offset, length)
            if result == 0 { return 0 }
            if result != -EINTR { return -result }
        }
    }

    /// Writes `length` zero bytes at `offset` from `zeros` (a preallocated zero-filled buffer).
    public func writeZeros(offset: Int64, length: Int64, from zeros: UnsafeRawBufferPointer) -> Bool {
        var position = offset
        var left = length
        while left > 0 {
            let chunk = Int(min(left, Int64(zeros.count)))
            let result = pwrite(descriptor, zeros.baseAddress, chunk, off_t(position))
            if result < 0 {
                if errno == EINTR { continue }
                return false
            }
            guard result > 0 else { return false }
            position += Int64(result)
            left -= Int64(result)
        }
        return true
    }
}

extension DiskImage {
    // fallocate(2) modes (<linux/falloc.h>).
    public static let keepSize: Int32 = 0x01
    public static let punchHole: Int32 = 0x02
    public static let zeroRange: Int32 = 0x10
}


