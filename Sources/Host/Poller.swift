import CHost
#if canImport(Glibc)
import Glibc
#endif

/// epoll plus a timerfd: waits until one of the registered descriptors is readable or a relative
/// timeout passes. Preallocated: `wait` allocates nothing, so it can sit on a hypercall hot path.
public final class Poller: @unchecked Sendable {
    private let epoll: Int32
    private let timer: Int32
    private let tokens: UnsafeMutablePointer<UInt64>
    private let capacity: Int32 = 64
    private static let timerToken: UInt64 = .max

    public init() throws(HostError) {
        epoll = chost_epoll_create()
        guard epoll >= 0 else { throw HostError("epoll_create1", errno: errno) }
        timer = chost_timerfd_create()
        guard timer >= 0 else { close(epoll); throw HostError("timerfd_create", errno: errno) }
        tokens = .allocate(capacity: Int(capacity))
        guard chost_epoll_add_input(epoll, timer, Self.timerToken) == 0 else {
            tokens.deallocate(); close(timer); close(epoll)
            throw HostError("epoll_ctl", errno: errno)
        }
    }

    deinit {
        tokens.deallocate()
        close(timer)
        close(epoll)
    }

    /// Watches `fd` for input; `token` comes back from `wait` when it is readable.
    public func add(_ fd: Int32, token: UInt64) throws(HostError) {
        guard chost_epoll_add_input(epoll, fd, token) == 0 else { throw HostError("epoll_ctl", errno: errno) }
    }

    /// Waits up to `timeoutNanoseconds` (nil = forever). Calls `ready(token)` for each readable
    /// descriptor. Returns false when interrupted by a signal (a kick).
    public func wait(timeoutNanoseconds: UInt64?, _ ready: (UInt64) -> Void) -> Bool {
        wait(timeoutNanoseconds: timeoutNanoseconds, signalMask: nil, ready)
    }

    /// The same, for a thread that `signal` stops (a vCPU's kick): a signal that arrives before
    /// the wait begins would find nothing to interrupt and the wait would run its whole timeout
    /// (an idle unikernel's poll: an hour), so `signal` stays blocked until epoll_pwait unblocks
    /// it atomically, and `pending()`, which the kicker sets before it signals, is looked at
    /// under the block: a kick either is seen there or interrupts the wait. Returns false then.
    public func wait(timeoutNanoseconds: UInt64?, interruptibleBy signal: Int32, unless pending: () -> Bool,
                     _ ready: (UInt64) -> Void) -> Bool {
        var old = sigset_t(), during = sigset_t()
        chost_block_signal(signal, &old, &during)
        defer { chost_restore_signal_mask(&old) }
        if pending() { return false }
        return wait(timeoutNanoseconds: timeoutNanoseconds, signalMask: &during, ready)
    }

    private func wait(timeoutNanoseconds: UInt64?, signalMask: UnsafePointer<sigset_t>?,
                      _ ready: (UInt64) -> Void) -> Bool {
        var timeoutMs: Int32 = -1
        // Always (re)arm: 0 disarms a timer left from the previous call.
        if let ns = timeoutNanoseconds, ns == 0 {
            _ = chost_timerfd_arm(timer, 0)
            timeoutMs = 0
        } else {
            _ = chost_timerfd_arm(timer, timeoutNanoseconds ?? 0)
        }
        let n = chost_epoll_pwait_tokens(epoll, tokens, capacity, timeoutMs, signalMask)
        if n < 0 { return false }
        for i in 0..<Int(n) {
            if tokens[i] == Self.timerToken {
                var expirations: UInt64 = 0
                _ = read(timer, &expirations, 8)
            } else {
                ready(tokens[i])
            }
        }
        return true
    }
}

/// Edge-triggered and switchable registrations, for a back end whose own event set is polled by a
/// device's event loop (nested epoll): the loop sees `descriptor` readable, the back end then
/// collects the ready tokens with `readyNow` without blocking.
extension Poller {
    /// The epoll descriptor itself, to register in an outer event loop.
    public var descriptor: Int32 { epoll }
    /// epoll event bits (EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLET).
    public static let input: UInt32 = 0x001, output: UInt32 = 0x004, peerHangUp: UInt32 = 0x2000, edgeTriggered: UInt32 = 1 << 31

    /// Watches `fd` for `events`.
    public func add(_ fd: Int32, token: UInt64, events: UInt32) throws(HostError) {
        let r = chost_epoll_control(epoll, 1, fd, events, token)
        guard r == 0 else { throw HostError("epoll_ctl", errno: -r) }
    }
    /// Changes what `fd` is watched for (0: nothing, while it stays registered).
    @discardableResult
    public func modify(_ fd: Int32, token: UInt64, events: UInt32) -> Bool { chost_epoll_control(epoll, 3, fd, events, token) == 0 }
    /// Stops watching `fd` (closing it does that too).
    @discardableResult
    public func remove(_ fd: Int32) -> Bool { chost_epoll_control(epoll, 2, fd, 0, 0) == 0 }
    /// The tokens ready now, without waiting (the timer is not involved): how many were stored.
    public func readyNow(into tokens: UnsafeMutableBufferPointer<UInt64>) -> Int {
        max(0, Int(chost_epoll_wait_tokens(epoll, tokens.baseAddress, Int32(min(tokens.count, 64)), 0)))
    }
}
