#if canImport(Glibc)
import Glibc
#endif

/// A non-blocking, close-on-exec Unix stream socket owned by this value (closed on deinit), for
/// back ends that multiplex many connections on one event loop (vsock's host side). Transfers
/// never raise SIGPIPE and report -errno instead of throwing, so a loop can tell EAGAIN apart
/// without allocating.
public final class StreamSocket: @unchecked Sendable {
    /// The socket's descriptor, for an event set.
    public let descriptor: Int32

    private init(descriptor: Int32) { self.descriptor = descriptor }
    deinit { close(descriptor) }

    /// Binds and listens on `path` (UnixSocket's rules: mode 0600, a stale socket file replaced,
    /// a live one or any other file refused), non-blocking.
    public static func listen(path: String, backlog: Int32 = 128) throws(HostError) -> StreamSocket {
        StreamSocket(descriptor: try UnixSocket.listen(path: path, backlog: backlog, nonBlocking: true))
    }

    /// Connects to `path`, non-blocking; nil when nobody listens there (or its backlog is full: a
    /// Unix socket never completes a connect later, so there is nothing to wait for).
    public static func connect(path: String) -> StreamSocket? {
        guard let fd = try? UnixSocket.connect(path: path, nonBlocking: true) else { return nil }
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
