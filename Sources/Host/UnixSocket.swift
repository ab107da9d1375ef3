import CHost
#if canImport(Glibc)
import Glibc
#endif

/// Unix stream sockets for the control plane: API sockets, console sockets, liveness checks.
public enum UnixSocket {
    /// A listening socket at `path`, mode 0600 (only its owner, normally root, may connect), made
    /// by hand so it accepts connections as soon as this returns. A stale socket file is replaced;
    /// a socket something still listens on, or a file that is not a socket, is an error.
    /// Returns the fd (close-on-exec, blocking).
    /// With `nonBlocking`, the listener and what it accepts would wait for nothing (an event loop's).
    public static func listen(path: String, backlog: Int32 = 128, nonBlocking: Bool = false) throws(HostError) -> Int32 {
        var address = try self.address(path)
        if let fd = try? connect(path: path) {
            close(fd)
            throw HostError(message: "\(path): another process is listening on it")
        }
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else { throw HostError(message: "\(path): exists and is not a socket") }
            unlink(path)
        }
        let fd = socket(AF_UNIX, streamType(nonBlocking: nonBlocking), 0)
        guard fd >= 0 else { throw HostError(message: "\(path): socket: \(HostError.text(errno: errno))") }
        // The umask makes bind create the file 0600, with no window where others could connect.
        let old = umask(0o177)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        let bindErrno = errno
        umask(old)
        guard bound == 0 else {
            close(fd)
            throw HostError(message: "\(path): \(HostError.text(errno: bindErrno))")
        }
        guard Glibc.listen(fd, backlog) == 0 else {
            let e = errno
            close(fd)
            throw HostError(message: "\(path): listen: \(HostError.text(errno: e))")
        }
        return fd
    }

    /// Connects to `path`; returns the fd (close-on-exec, blocking).
    /// With `nonBlocking`, transfers on it never wait (a Unix socket's connect completes at once
    /// or fails).
    public static func connect(path: String, nonBlocking: Bool = false) throws(HostError) -> Int32 {
        var address = try self.address(path)
        let fd = socket(AF_UNIX, streamType(nonBlocking: nonBlocking), 0)
        guard fd >= 0 else { throw HostError(message: "socket: \(HostError.text(errno: errno))") }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if result != 0 {
            let e = errno
            close(fd)
            throw HostError(message: "\(path): \(HostError.text(errno: e))")
        }
        return fd
    }

    /// A connected pair of stream sockets (close-on-exec, blocking): one end for each side of an
    /// in-process channel, as the C library's VM console descriptor.
    public static func pair() throws(HostError) -> (FileDescriptor, FileDescriptor) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, streamType(nonBlocking: false), 0, &fds) == 0 else {
            throw HostError(message: "socketpair: \(HostError.text(errno: errno))")
        }
        return (FileDescriptor(owning: fds[0]), FileDescriptor(owning: fds[1]))
    }

    /// The first connection to `listener` within `milliseconds`, and the connecting process's
    /// pid (SO_PEERCRED; 0 when the kernel gives none). Throws ETIMEDOUT when nobody connects.
    public static func acceptOne(on listener: Int32, milliseconds: Int) throws(HostError) -> (FileDescriptor, peer: Int32) {
        let deadline = Clock.monotonicNanoseconds() + UInt64(max(0, milliseconds)) * 1_000_000
        while true {
            try FileDescriptor.waitFor(listener, Int16(POLLIN), deadline: deadline, operation: "waiting for a connection")
            var peer: Int32 = 0
            let fd = chost_accept_peer(listener, &peer)
            if fd >= 0 { return (FileDescriptor(owning: fd), peer) }
            guard -fd == EINTR || -fd == EAGAIN || -fd == ECONNABORTED else { throw HostError("accept", errno: -fd) }
        }
    }

    /// Whether something accepts connections on `path` now.
    public static func isListening(_ path: String) -> Bool {
        guard let fd = try? connect(path: path) else { return false }
        close(fd)
        return true
    }

    /// SOCK_STREAM, close-on-exec, and non-blocking if asked.
    static func streamType(nonBlocking: Bool) -> Int32 {
        Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
    }

    static func address(_ path: String) throws(HostError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: address.sun_path), !bytes.contains(0) else {
            throw HostError(message: "\(path.isEmpty ? "''" : path): not a usable socket path (1 to 107 bytes)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }
}
