#if canImport(Glibc)
import Glibc
#endif

/// A non-blocking, close-on-exec Unix stream socket owned by this value (closed on deinit), for
/// back ends that multiplex many connections on one event loop (vsock's host side). Transfers
/// never raise SIGPIPE and report -errno instead of throwing, so a loop can tell EAGAIN apart
/// without allocating.
public final class StreamSocket: @unchecked Sendable {
    /// Why `listen` failed: one line (the path and the reason).
    public struct ListenError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// The socket's descriptor, for an event set.
    public let descriptor: Int32

    private init(descriptor: Int32) { self.descriptor = descriptor }
    deinit { close(descriptor) }

    static let streamFlags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)

    /// Calls `body` with a sockaddr_un for `path` (UnixSocket's); nil when the path does not fit.
    static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R? {
        guard var address = try? UnixSocket.address(path) else { return nil }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// Binds and listens on `path`, first removing a stale socket file there (not other files).
    public static func listen(path: String, backlog: Int32 = 128) throws(ListenError) -> StreamSocket {
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFSOCK else { throw ListenError(description: "\(path) exists and is not a socket") }
            unlink(path)
        }
        let fd = socket(AF_UNIX, streamFlags, 0)
        guard fd >= 0 else { throw ListenError(description: "socket: \(HostError.text(errno: errno))") }
        guard let result = withAddress(path, { bind(fd, $0, $1) }) else {
            close(fd)
            throw ListenError(description: "socket path too long: \(path)")
        }
        guard result == 0, Glibc.listen(fd, backlog) == 0 else {
            let e = errno
            close(fd)
            throw ListenError(description: "bind/listen \(path): \(HostError.text(errno: e))")
        }
        return StreamSocket(descriptor: fd)
    }

    /// Connects to `path`; nil when nobody listens there (or its backlog is full: a Unix socket
    /// never completes a connect later, so there is nothing to wait for).
    public static func connect(path: String) -> StreamSocket? {
        let fd = socket(AF_UNIX, streamFlags, 0)
        guard fd >= 0 else { return nil }
        guard let result = withAddress(path, { Glibc.connect(fd, $0, $1) }), result == 0 else {
            close(fd)
            return nil
        }
        return StreamSocket(descriptor: fd)
    }

    /// The next waiting connection (non-blocking, close-on-exec); nil when none is left.
    public func accept() -> StreamSocket? {
        while true {
            let fd = Glibc.accept(descriptor, nil, nil)
            if fd >= 0 {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                return StreamSocket(descriptor: fd)
            }
            // EINTR, or a client that went away before we took it (ECONNABORTED, EPROTO): next.
            if errno == EINTR || errno == ECONNABORTED || errno == EPROTO { continue }
            return nil
        }
    }

    /// send(2) without SIGPIPE, never blocking; bytes sent, or -errno.
    public func send(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard bytes.count > 0 else { return 0 }
        while true {
            let n = Glibc.send(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            return -Int(errno)
        }
    }

    /// recv(2), never blocking; with `peek` the bytes stay queued. Bytes read (0 at end of
    /// stream), or -errno.
    public func receive(into bytes: UnsafeMutableRawBufferPointer, peek: Bool = false) -> Int {
        guard bytes.count > 0 else { return 0 }
        while true {
            let n = recv(descriptor, bytes.baseAddress, bytes.count, (peek ? Int32(MSG_PEEK) : 0) | Int32(MSG_DONTWAIT))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            return -Int(errno)
        }
    }

    /// Shuts the write side: the peer reads end of stream once queued bytes are out.
    public func shutdownWrite() { _ = shutdown(descriptor, Int32(SHUT_WR)) }
}
