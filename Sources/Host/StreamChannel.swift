#if canImport(Glibc)
import Glibc
#endif

/// Whole-message transfers on a connected stream socket with deadlines, for a peer that may
/// stall or die (an extension process): a send never raises SIGPIPE and never waits past its
/// deadline; a read of an exact count can stop at a deadline or at the peer's end.
extension FileDescriptor {
    /// Sends all of `bytes` within `milliseconds` (negative: no limit). Throws on a deadline
    /// (ETIMEDOUT) or when the peer is gone.
    public func sendAll(_ bytes: UnsafeRawBufferPointer, milliseconds: Int) throws(HostError) {
        try Self.sendAll(bytes, on: rawValue, milliseconds: milliseconds)
    }

    /// `sendAll` on a descriptor this process does not own (an extension's channel, which its
    /// program opened and closes).
    public static func sendAll(_ bytes: UnsafeRawBufferPointer, on rawValue: Int32, milliseconds: Int) throws(HostError) {
        guard let base = bytes.baseAddress else { return }
        let deadline = milliseconds < 0 ? nil : Clock.monotonicNanoseconds() + UInt64(milliseconds) * 1_000_000
        var done = 0
        while done < bytes.count {
            let n = send(rawValue, base + done, bytes.count - done, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            guard n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) else { throw HostError("send", errno: n < 0 ? errno : EIO) }
            try waitFor(rawValue, Int16(POLLOUT), deadline: deadline, operation: "send")
        }
    }

    /// Reads exactly `buffer.count` bytes within `milliseconds` (negative: no limit). Returns
    /// false when the peer ended the stream before the first byte; throws at the deadline
    /// (ETIMEDOUT), on an error, or when the stream ends part-way.
    public func receiveExactly(_ buffer: UnsafeMutableRawBufferPointer, milliseconds: Int) throws(HostError) -> Bool {
        try Self.receiveExactly(buffer, on: rawValue, milliseconds: milliseconds)
    }

    /// `receiveExactly` on a descriptor this process does not own.
    public static func receiveExactly(_ buffer: UnsafeMutableRawBufferPointer, on rawValue: Int32, milliseconds: Int) throws(HostError) -> Bool {
        guard let base = buffer.baseAddress else { return true }
        let deadline = milliseconds < 0 ? nil : Clock.monotonicNanoseconds() + UInt64(milliseconds) * 1_000_000
        var done = 0
        while done < buffer.count {
            if deadline != nil { try waitFor(rawValue, Int16(POLLIN), deadline: deadline, operation: "receive") }
            let n = recv(rawValue, base + done, buffer.count - done, 0)
            if n > 0 { done += n; continue }
            if n == 0 {
                if done == 0 { return false }
                throw HostError("receive: the stream ended inside a message", errno: 0)
            }
            if errno == EINTR || errno == EAGAIN { continue }
            throw HostError("receive", errno: errno)
        }
        return true
    }

    /// Ends both directions of the socket: a thread blocked reading it returns at once.
    public func shutdownStream() { _ = shutdown(rawValue, Int32(SHUT_RDWR)) }

    /// Waits until `rawValue` has `events`, up to `deadline` (monotonic ns; nil: no limit).
    static func waitFor(_ rawValue: Int32, _ events: Int16, deadline: UInt64?, operation: String) throws(HostError) {
        while true {
            var timeout: Int32 = -1
            if let deadline {
                let now = Clock.monotonicNanoseconds()
                guard now < deadline else { throw HostError(operation, errno: ETIMEDOUT) }
                timeout = Int32(clamping: (deadline - now + 999_999) / 1_000_000)
            }
            var p = pollfd(fd: rawValue, events: events, revents: 0)
            let r = poll(&p, 1, timeout)
            if r > 0 { return }
            if r < 0 && errno != EINTR { throw HostError(operation, errno: errno) }
        }
    }
}
