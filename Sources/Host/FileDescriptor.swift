import CHost
#if canImport(Glibc)
import Glibc
#endif

/// An owned file descriptor, closed on deinit, with EINTR-retrying full reads and writes.
public final class FileDescriptor: @unchecked Sendable {
    public let rawValue: Int32

    public init(owning fd: Int32) { rawValue = fd }
    deinit { close(rawValue) }

    /// Opens `path`; `flags` as for open(2). O_CLOEXEC is always added.
    public static func open(_ path: String, flags: Int32) throws(HostError) -> FileDescriptor {
        while true {
            let fd = chost_open(path, flags)
            if fd >= 0 { return FileDescriptor(owning: fd) }
            if errno == EINTR { continue }
            throw HostError(path, errno: errno)
        }
    }

    /// Opens `path` with an explicit creation `mode` (0o600 for a log or metrics file).
    public static func open(_ path: String, flags: Int32, mode: UInt32) throws(HostError) -> FileDescriptor {
        while true {
            let fd = chost_open_mode(path, flags, mode)
            if fd >= 0 { return FileDescriptor(owning: fd) }
            if errno == EINTR { continue }
            throw HostError(path, errno: errno)
        }
    }

    /// A second descriptor for the same open file (dup), owned by the result.
    public func duplicate() throws(HostError) -> FileDescriptor {
        let fd = fcntl(rawValue, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else { throw HostError("dup", errno: errno) }
        return FileDescriptor(owning: fd)
    }

    /// A new descriptor for the same open file (dup, close-on-exec) that the caller owns and must
    /// close: for handing one to code outside Swift (the C library's VM console).
    public func duplicateForCaller() throws(HostError) -> Int32 {
        let fd = fcntl(rawValue, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else { throw HostError("dup", errno: errno) }
        return fd
    }

    /// One read(2) into `buffer`, retried on EINTR: the byte count (0 at end of file), or nil when
    /// a non-blocking descriptor has nothing now (EAGAIN).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(HostError) -> Int? {
        try Self.once("read") { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// One transfer (`call`), retried on EINTR: its byte count, nil on EAGAIN, else the error.
    @inline(__always)
    static func once(_ operation: String, _ call: () -> Int) throws(HostError) -> Int? {
        while true {
            let n = call()
            if n >= 0 { return n }
            if errno == EINTR { continue }
            if errno == EAGAIN { return nil }
            throw HostError(operation, errno: errno)
        }
    }

    /// Makes reads and writes on the descriptor return EAGAIN instead of waiting (or wait again).
    public func setNonBlocking(_ nonBlocking: Bool = true) throws(HostError) {
        let rc = nonBlocking ? chost_set_nonblocking(rawValue) : chost_set_blocking(rawValue)
        guard rc == 0 else { throw HostError("fcntl", errno: -rc) }
    }

    /// Reads exactly `buffer.count` bytes at `offset`, unless end of file comes first. Returns bytes read.
    public func pread(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(HostError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pread(rawValue, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n > 0 { done += n; continue }
            if n == 0 { break }
            if errno == EINTR { continue }
            throw HostError("pread", errno: errno)
        }
        return done
    }

    /// Writes all of `buffer` at `offset`.
    public func pwrite(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(HostError) {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pwrite(rawValue, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            throw HostError("pwrite", errno: n < 0 ? errno : EIO)
        }
    }

    /// Writes `line` and a newline, ignoring failure: for messages on stderr, where there is no one
    /// left to tell (and without the C `stderr` global, which is not concurrency-safe).
    public func write(line: String) {
        var text = line + "\n"
        text.withUTF8 { try? writeAll(UnsafeRawBufferPointer($0)) }
    }

    /// Writes all of `buffer` (for pipes and terminals, where writes may be partial).
    public func writeAll(_ buffer: UnsafeRawBufferPointer) throws(HostError) {
        var done = 0
        while done < buffer.count {
            let n = Glibc.write(rawValue, buffer.baseAddress! + done, buffer.count - done)
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN {
                var p = pollfd(fd: rawValue, events: Int16(POLLOUT), revents: 0)
                _ = poll(&p, 1, -1)
                continue
            }
            throw HostError("write", errno: n < 0 ? errno : EIO)
        }
    }

    /// Size of the file (st_size) and whether it is a regular file.
    public func status() throws(HostError) -> (size: UInt64, isRegular: Bool, isDirectory: Bool) {
        var st = stat()
        guard fstat(rawValue, &st) == 0 else { throw HostError("fstat", errno: errno) }
        let type = st.st_mode & S_IFMT
        return (UInt64(st.st_size), type == S_IFREG, type == S_IFDIR)
    }


    /// Sets the file's length (ftruncate): growing it leaves a hole that reads as zeroes.
    public func truncate(to length: UInt64) throws(HostError) {
        guard ftruncate(rawValue, off_t(length)) == 0 else { throw HostError("ftruncate", errno: errno) }
    }

    /// Flushes file data to stable storage.
    public func syncData() throws(HostError) {
        guard fdatasync(rawValue) == 0 else { throw HostError("fdatasync", errno: errno) }
    }
}

/// Reads a whole file into memory. Files that report size 0 (procfs, pipes) are read to EOF.
/// For the host's own files (/proc); a guest's images go through ``ImageFile``, which refuses
/// FIFOs and devices and bounds the read.
public func readWholeFile(_ path: String) throws(HostError) -> [UInt8] {
    let fd = try FileDescriptor.open(path, flags: O_RDONLY)
    let st = try fd.status()
    if st.isDirectory { throw HostError(path, errno: EISDIR) }
    // Unbounded: nil (more than the limit) cannot happen below Int.max bytes.
    guard let bytes = try fd.readToEnd(sizeHint: st.size) else { throw HostError(path, errno: EFBIG) }
    return bytes
}

/// `count` bytes from the kernel's random source (getrandom).
public func randomBytes(_ count: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    _ = bytes.withUnsafeMutableBytes { chost_getrandom($0.baseAddress, UInt($0.count)) }
    return bytes
}

/// Fills `buffer` from the kernel's random source (getrandom, flags 0: blocks only until the pool
/// is first initialised), retrying on EINTR and partial results. Bytes filled: fewer than
/// `buffer.count` only if getrandom fails outright.
public func fillRandom(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
    guard let base = buffer.baseAddress else { return 0 }
    var done = 0
    while done < buffer.count {
        let result = chost_getrandom(base + done, UInt(buffer.count - done))
        if result < 0 {
            if errno == EINTR { continue }
            break
        }
        done += Int(result)
    }
    return done
}

// Added for the one log and the CLI (helper wt-log): the standard streams, a write that never
// waits, and a two-descriptor input wait.
extension FileDescriptor {
    /// The process's standard streams. Process-lifetime globals, so never released: descriptors
    /// 0, 1 and 2 are never closed through them.
    public static let standardInput = FileDescriptor(owning: 0)
    public static let standardOutput = FileDescriptor(owning: 1)
    public static let standardError = FileDescriptor(owning: 2)

    /// One write(2) of as much of `buffer` as fits now, retried on EINTR: the byte count, or nil
    /// when a non-blocking descriptor is full (EAGAIN). A log drops a line rather than stall the
    /// VM behind a slow FIFO reader.
    public func writeOnce(_ buffer: UnsafeRawBufferPointer) throws(HostError) -> Int? {
        try Self.once("write") { Glibc.write(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Waits until this descriptor or `other` has input or hung up (poll(2), so regular files
    /// count as always ready): bit 0 this one, bit 1 `other`; 0 on timeout or a signal. -1 waits
    /// forever.
    public func waitReadable(or other: FileDescriptor?, timeoutMilliseconds: Int32 = -1) -> Int32 {
        chost_poll2(rawValue, other?.rawValue ?? -1, timeoutMilliseconds)
    }
}
