import CHost
#if canImport(Glibc)
import Glibc
#endif

/// A Linux tap interface opened for frame I/O (no packet-info header, non-blocking).
public final class TapDevice: @unchecked Sendable {
    public let name: String
    public let fd: FileDescriptor

    /// Attaches to tap `name`. With `mustExist`, a missing interface is an error (ENODEV) rather
    /// than silently created, which TUNSETIFF would do for root.
    public init(name: String, mustExist: Bool = true) throws(HostError) {
        if mustExist && if_nametoindex(name) == 0 { throw HostError("tap \(name)", errno: ENODEV) }
        let r = chost_tap_open(name)
        guard r >= 0 else { throw HostError("tap \(name)", errno: -r) }
        self.name = name
        fd = FileDescriptor(owning: r)
    }

    /// Reads one frame; nil when none is waiting.
    @inline(__always)
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(HostError) -> Int? {
        while true {
            let n = Glibc.read(fd.rawValue, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            if errno == EAGAIN { return nil }
            throw HostError("read \(name)", errno: errno)
        }
    }

    /// Sends one frame.
    @inline(__always)
    public func write(_ frame: UnsafeRawBufferPointer) throws(HostError) {
        while true {
            let n = Glibc.write(fd.rawValue, frame.baseAddress, frame.count)
            if n == frame.count { return }
            if n < 0 && errno == EINTR { continue }
            throw HostError("write \(name)", errno: n < 0 ? errno : EMSGSIZE)
        }
    }
}
