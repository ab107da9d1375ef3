import CHost
#if canImport(Glibc)
import Glibc
#endif

/// The files a guest is made from (a kernel, an initrd, a disk), opened in one place for every
/// door: the CLI, config files, the API and hvt's block devices. Opening never waits (a FIFO would
/// block in open(2) for a writer, with the stop signals blocked), anything but a regular file (or
/// a block device, where a disk may be one) is refused with one line naming the path and what it
/// is, and a whole-file read is bounded, so /dev/zero or a huge file cannot eat the host's memory.
public enum ImageFile {
    /// Opens `path` as the guest's `purpose` ("kernel", "initrd", "disk", or an API field's name,
    /// which starts each error line): read-only unless `writable`. The descriptor is blocking
    /// again when returned.
    public static func open(_ path: String, for purpose: String, writable: Bool = false,
                            blockDeviceAllowed: Bool = false) throws(HostError) -> FileDescriptor {
        try openChecked(path, for: purpose, writable: writable, blockDeviceAllowed: blockDeviceAllowed).file
    }

    /// Reads the whole regular file at `path` as the guest's `purpose`; refused, before any byte
    /// is read, when it is larger than `limit` (the most that could fit the guest's memory). A
    /// file that grows while it is read, or that says size 0 and is not (/proc), is held to the
    /// same limit.
    public static func read(_ path: String, for purpose: String, limit: UInt64) throws(HostError) -> [UInt8] {
        let (file, info) = try openChecked(path, for: purpose, writable: false, blockDeviceAllowed: false)
        let size = UInt64(max(info.st_size, 0))
        func tooLarge(_ size: String) -> HostError {
            HostError(message: "\(purpose) \(path) (\(size) bytes) does not fit in the guest's memory (\(limit) bytes)")
        }
        guard size <= limit else { throw tooLarge("\(size)") }
        guard let bytes = try file.readToEnd(sizeHint: size, limit: limit) else { throw tooLarge("more than \(limit)") }
        return bytes
    }

    /// The descriptor and what fstat said of it (disk images want st_blksize too).
    static func openChecked(_ path: String, for purpose: String, writable: Bool,
                            blockDeviceAllowed: Bool) throws(HostError) -> (file: FileDescriptor, info: stat) {
        func check(_ info: stat) throws(HostError) {
            if let problem = kindProblem(info, blockDeviceAllowed: blockDeviceAllowed) {
                throw HostError(message: "\(purpose) \(path) \(problem)")
            }
        }
        // A look before opening, so that no device is ever opened (opening some has effects of its
        // own: /dev/watchdog arms the watchdog); the fstat below is what decides, in case the path
        // changes in between.
        var before = stat()
        guard stat(path, &before) == 0 else { throw HostError("\(purpose) \(path)", errno: errno) }
        try check(before)
        let file: FileDescriptor
        do {
            file = try FileDescriptor.open(path, flags: (writable ? O_RDWR : O_RDONLY) | O_NONBLOCK | O_NOCTTY)
        } catch {
            throw HostError("\(purpose) \(path)", errno: error.errno)
        }
        var info = stat()
        guard fstat(file.rawValue, &info) == 0 else { throw HostError("\(purpose) \(path): fstat", errno: errno) }
        try check(info)
        do { try file.setNonBlocking(false) } catch { throw HostError("\(purpose) \(path): fcntl", errno: error.errno) }
        return (file, info)
    }

    /// Why `path` could not be a guest's kernel or initrd (or, with `blockDeviceAllowed`, disk),
    /// judged by stat alone, without opening it: nil when it could. The daemon checks a
    /// definition with it (the VM process, which opens the file, judges again), so both doors
    /// refuse the same files. "no such file", "is a FIFO, not a regular file", …
    public static func problem(at path: String, blockDeviceAllowed: Bool = false) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            return code == ENOENT ? "no such file" : String(cString: strerror(code))
        }
        return kindProblem(info, blockDeviceAllowed: blockDeviceAllowed)
    }

    /// nil for a regular file (or block device, if allowed), else "is a FIFO, not a regular file".
    static func kindProblem(_ info: stat, blockDeviceAllowed: Bool) -> String? {
        let kind = info.st_mode & S_IFMT
        if kind == S_IFREG || (blockDeviceAllowed && kind == S_IFBLK) { return nil }
        return "is \(describe(kind)), not \(blockDeviceAllowed ? "a regular file or block device" : "a regular file")"
    }

    /// A file type (st_mode & S_IFMT) in the words of a refusal.
    static func describe(_ kind: mode_t) -> String {
        switch kind {
        case S_IFREG: "a regular file"
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO"
        case S_IFSOCK: "a socket"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFLNK: "a symbolic link"
        default: "a special file"
        }
    }
}

extension FileDescriptor {
    /// Reads from offset 0 to end of file, at most `limit` bytes: nil when the file holds more.
    /// `sizeHint` (st_size) sizes the first read; a file whose size says nothing (/proc: 0) grows
    /// the buffer by doubling.
    func readToEnd(sizeHint: UInt64, limit: UInt64 = UInt64(Int.max - 1)) throws(HostError) -> [UInt8]? {
        // Room for one byte more than expected, so that a file read whole ends in a short read,
        // not in a doubled buffer; one more than the limit tells a file over it. Uninitialised:
        // pread fills what is kept, so no page is zeroed only to be overwritten.
        let most = Int(min(limit, UInt64(Int.max - 1))) + 1
        var capacity = min(max(Int(min(sizeHint, UInt64(Int.max - 1))) + 1, 4096), most)
        var bytes: [UInt8] = []
        while true {
            let offset = bytes.count
            var failure: HostError?
            let chunk = [UInt8](unsafeUninitializedCapacity: capacity - offset) { buffer, count in
                count = 0
                do throws(HostError) { count = try pread(into: UnsafeMutableRawBufferPointer(buffer), at: UInt64(offset)) } catch { failure = error }
            }
            if let failure { throw failure }
            if bytes.isEmpty { bytes = chunk } else { bytes += chunk }
            if bytes.count < capacity { return bytes } // short read: end of file
            if capacity == most { return nil }
            capacity = capacity > most / 2 ? most : capacity * 2
        }
    }
}
