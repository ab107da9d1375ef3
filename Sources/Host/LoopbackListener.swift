import CHost
#if canImport(Glibc)
import Glibc
#endif

/// A TCP socket listening on 127.0.0.1 only (a debugger stub must not be reachable from other
/// machines), and the one connection it accepts.
public final class LoopbackListener: @unchecked Sendable {
    public let fd: Int32
    public let port: UInt16

    /// Binds 127.0.0.1:`port` (SO_REUSEADDR, so a stub restarted at once can bind again).
    public init(port: UInt16) throws(HostError) {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw HostError("socket", errno: errno) }
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(s, 1) == 0 else {
            let e = errno
            close(s)
            throw HostError("bind 127.0.0.1:\(port)", errno: e)
        }
        // Port 0 lets the kernel choose: report the one it chose.
        var bound_ = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound_) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &length) }
        }
        fd = s
        self.port = UInt16(bigEndian: bound_.sin_port)
    }

    deinit { close(fd) }

    /// Waits for one connection. Returns nil when `shouldStop()` is true after a signal
    /// interrupted the wait (the caller's kick); TCP_NODELAY is set, as each reply is one packet.
    public func accept(shouldStop: () -> Bool) throws(HostError) -> StreamConnection? {
        while true {
            let c = Glibc.accept(fd, nil, nil)
            if c >= 0 {
                _ = fcntl(c, F_SETFD, FD_CLOEXEC)
                var one: Int32 = 1
                setsockopt(c, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return StreamConnection(owning: c)
            }
            let e = errno
            if e == EINTR { if shouldStop() { return nil } else { continue } }
            if e == ECONNABORTED { continue }
            throw HostError("accept", errno: e)
        }
    }
}

/// One connected stream socket, closed on deinit. Reads return nil at end of stream, on an
/// error, or when a signal interrupted them and `shouldStop()` says so.
public final class StreamConnection: @unchecked Sendable {
    public let fd: Int32

    public init(owning fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    public func read(into buffer: UnsafeMutableRawBufferPointer, shouldStop: () -> Bool) -> Int? {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n > 0 { return n }
            if n == 0 { return nil }
            if errno == EINTR && !shouldStop() { continue }
            return nil
        }
    }

    /// Writes all of `bytes`; false when the peer is gone. MSG_NOSIGNAL: no SIGPIPE.
    public func write(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 { offset += n; continue }
            if n < 0 && errno == EINTR { continue }
            return false
        }
        return true
    }

    /// Waits until the connection has input or `other` is readable: bit 0 / bit 1 as chost_poll2.
    public func waitReadable(or other: Int32, timeoutMilliseconds: Int32 = -1) -> Int32 {
        chost_poll2(fd, other, timeoutMilliseconds)
    }
}
