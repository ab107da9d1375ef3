import CHost
#if canImport(Glibc)
import Glibc
#endif

/// The Unix socket a VM's console listens on (`swiftlet api --console-socket`): one client at a
/// time reads the guest's output and types its input. Waiting and accepting happen on the
/// console's own thread; sends to the client come from vCPU threads and never wait.
public final class ConsoleListener: @unchecked Sendable {
    private let fd: Int32

    /// Listens at `path` (mode 0600; a stale socket file is replaced, see `UnixSocket.listen`).
    public init(path: String, backlog: Int32) throws(HostError) {
        fd = try UnixSocket.listen(path: path, backlog: backlog)
    }

    deinit { close(fd) }

    /// Waits until a client is waiting to be accepted or `client` has input (or hung up). Both
    /// false after a signal interrupted the wait.
    public func wait(client: StreamConnection?) -> (connecting: Bool, clientReadable: Bool) {
        let ready = chost_poll2(fd, client?.fd ?? -1, -1)
        return (ready & 1 != 0, ready & 2 != 0)
    }

    /// Accepts the waiting client (close-on-exec); nil when it went away first.
    public func accept() -> StreamConnection? {
        while true {
            let c = Glibc.accept(fd, nil, nil)
            if c >= 0 {
                _ = fcntl(c, F_SETFD, FD_CLOEXEC)
                return StreamConnection(owning: c)
            }
            if errno == EINTR { continue }
            return nil
        }
    }
}

extension StreamConnection {
    /// What `sendWithoutWaiting` did.
    public enum SendResult: Sendable, Equatable {
        /// Every byte went out.
        case sent
        /// The socket buffer was full: the rest was not sent (a slow reader loses output).
        case wouldBlock
        /// The peer is gone or the socket failed: the connection is of no further use.
        case failed
    }

    /// Sends `bytes` without ever waiting (MSG_DONTWAIT) and without SIGPIPE (MSG_NOSIGNAL).
    public func sendWithoutWaiting(_ bytes: UnsafeRawBufferPointer) -> SendResult {
        guard let base = bytes.baseAddress else { return .sent }
        var done = 0
        while done < bytes.count {
            let n = Glibc.send(fd, base + done, bytes.count - done, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .wouldBlock }
            return .failed
        }
        return .sent
    }
}

extension FileDescriptor {
    /// A new descriptor (close-on-exec) for standard stream `stream` (0, 1 or 2), owned by the
    /// result: closing it leaves the stream itself open.
    public static func duplicate(standardStream stream: Int32) throws(HostError) -> FileDescriptor {
        let fd = fcntl(stream, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else { throw HostError("dup \(stream)", errno: errno) }
        return FileDescriptor(owning: fd)
    }
}
