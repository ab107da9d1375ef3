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

    /// Takes over `descriptor`, a tap already open (as an orchestrator such as albatross passes
    /// one: solo5-hvt's `--net:NAME=@FD`). Refuses a closed descriptor or one that is not a tap,
    /// and makes it non-blocking and close-on-exec like one this process opened.
    public init(adopting descriptor: Int32) throws(HostError) {
        var nameBytes = [CChar](repeating: 0, count: 16)
        var flags: Int32 = 0
        let r = chost_tap_query(descriptor, &nameBytes, &flags)
        switch -r {
        case 0: break
        case EBADF: throw HostError("fd \(descriptor)", errno: EBADF)
        case EPROTONOSUPPORT:
            throw HostError("fd \(descriptor): tap \(Self.text(nameBytes)) carries virtio-net headers (IFF_VNET_HDR set)", errno: EINVAL)
        case EPFNOSUPPORT:
            throw HostError("fd \(descriptor): tap \(Self.text(nameBytes)) carries packet-information headers (IFF_NO_PI unset)", errno: EINVAL)
        // EBADFD/EINVAL/ENOTTY/EPROTOTYPE all mean "open, but not a tap": say that plainly.
        default: throw HostError("fd \(descriptor) is not a tap device", errno: ENOTTY)
        }
        let nonblocking = chost_set_nonblocking(descriptor)
        guard nonblocking == 0 else { throw HostError("fd \(descriptor)", errno: -nonblocking) }
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        name = Self.text(nameBytes)
        fd = FileDescriptor(owning: descriptor)
    }

    /// The interface's MTU (SIOCGIFMTU), what the guest is told it may send.
    public func mtu() throws(HostError) -> Int {
        let r = chost_if_mtu(name)
        guard r >= 0 else { throw HostError("MTU of \(name)", errno: -r) }
        return Int(r)
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

/// A tap for a virtio-net back end: vnet-header mode and receive offloads.
extension TapDevice {
    /// Whether an interface called `name` exists.
    public static func interfaceExists(_ name: String) -> Bool { if_nametoindex(name) != 0 }

    /// Opens tap `name` with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and a `headerSize`-byte vnet header,
    /// creating it (not persistent) when `create`. The owned descriptor, or the errno.
    public static func openVnet(name: String, create: Bool, headerSize: Int) -> Result<FileDescriptor, HostError> {
        let fd = chost_tap_open_vnet(name, create ? 1 : 0, Int32(headerSize))
        guard fd >= 0 else { return .failure(HostError("tap \(name)", errno: -fd)) }
        return .success(FileDescriptor(owning: fd))
    }

    /// TUNSETOFFLOAD: which offloads (TUN_F_*) the reader of the tap open on `fd` accepts. 0 or the errno.
    public static func setOffloads(_ fd: Int32, _ flags: UInt32) -> Int32 {
        let r = chost_tap_set_offload(fd, flags)
        return r < 0 ? -r : 0
    }

    /// A NUL-terminated interface name as the kernel returns it.
    private static func text(_ bytes: [CChar]) -> String {
        String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
