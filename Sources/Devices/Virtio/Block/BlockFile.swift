import CHost
import Host
import Glibc

/// The disk image behind a virtio-blk device: an open, locked regular file or block device, and
/// the positional I/O the request processor needs, each retried on EINTR and on short transfers.
/// It owns the descriptor (closed on deinit, which also drops the flock).
final class BlockFile {
    let descriptor: Int32
    /// Bytes; capacity is this divided by 512, rounded down.
    let size: UInt64
    /// st_blksize of the file, a hint for discard alignment.
    let preferredBlockSize: Int

    /// Opens `path` (O_CLOEXEC; O_RDONLY when `readOnly`), refuses anything but a regular file or
    /// a block device, takes an exclusive flock (shared when read-only) without waiting, and
    /// measures it. Every failure is one line naming the path.
    init(path: String, readOnly: Bool) throws(VirtioDeviceError) {
        let fd = open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == EISDIR { throw VirtioDeviceError("virtio-blk: \(path) is a directory, not a disk image") }
            throw VirtioDeviceError("virtio-blk: cannot open \(path)\(readOnly ? " read-only" : ""): \(HostError.text(errno: code))")
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw VirtioDeviceError("virtio-blk: cannot stat \(path): \(HostError.text(errno: code))")
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG || kind == S_IFBLK else {
            close(fd)
            if kind == S_IFDIR { throw VirtioDeviceError("virtio-blk: \(path) is a directory, not a disk image") }
            throw VirtioDeviceError("virtio-blk: \(path) is neither a regular file nor a block device")
        }
        // flock locks belong to the open file description, so a second open of the same image
        // (this process or another) conflicts, which is what keeps two VMs off one disk.
        var locked: Int32
        repeat { locked = flock(fd, (readOnly ? LOCK_SH : LOCK_EX) | LOCK_NB) } while locked != 0 && errno == EINTR
        guard locked == 0 else {
            let code = errno
            close(fd)
            if code == EWOULDBLOCK {
                throw VirtioDeviceError("virtio-blk: \(path) is locked by another process (is another VM using it?)")
            }
            throw VirtioDeviceError("virtio-blk: cannot lock \(path): \(HostError.text(errno: code))")
        }
        // lseek measures block devices too, where st_size is 0.
        let end = lseek(fd, 0, SEEK_END)
        guard end >= 0 else {
            let code = errno
            close(fd)
            throw VirtioDeviceError("virtio-blk: cannot measure \(path): \(HostError.text(errno: code))")
        }
        guard end >= VirtioBlockSpec.sectorSize else {
            close(fd)
            throw VirtioDeviceError("virtio-blk: \(path) is \(end) bytes; a disk needs at least one 512-byte sector")
        }
        descriptor = fd
        size = UInt64(end)
        preferredBlockSize = Int(info.st_blksize)
    }

    deinit { close(descriptor) }

    /// preadv/pwritev of `count` iovecs at `offset` until `total` bytes moved. The iovecs are
    /// scratch: they are advanced in place over partial transfers. Returns the bytes moved and
    /// whether all of them did (an error or an unexpected end of file stops early).
    func transfer(write: Bool, _ iovecs: UnsafeMutablePointer<iovec>, count: Int, offset: Int64, total: Int)
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
    func flush() -> Bool {
        while true {
            if fdatasync(descriptor) == 0 { return true }
            if errno != EINTR { return false }
        }
    }

    /// fallocate(2) with `mode`, retried on EINTR; returns 0 or the errno.
    func allocate(mode: Int32, offset: Int64, length: Int64) -> Int32 {
        while true {
            let result = chost_fallocate(descriptor, mode, offset, length)
            if result == 0 { return 0 }
            if result != -EINTR { return -result }
        }
    }

    /// Writes `length` zero bytes at `offset` from `zeros` (a preallocated zero-filled buffer).
    func writeZeros(offset: Int64, length: Int64, from zeros: UnsafeRawBufferPointer) -> Bool {
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

extension BlockFile {
    // fallocate(2) modes (<linux/falloc.h>).
    static let keepSize: Int32 = 0x01
    static let punchHole: Int32 = 0x02
    static let zeroRange: Int32 = 0x10
}


