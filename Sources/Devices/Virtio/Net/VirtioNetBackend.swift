import CHost
import Host
#if canImport(Glibc)
import Glibc
#endif

/// Where a virtio-net device's frames leave and arrive: one frame per call, each preceded by the
/// 12-byte struct virtio_net_hdr (VIRTIO 1.2 5.1.6), gathered from and scattered to iovecs that
/// point straight into guest buffers. A tap opened with IFF_VNET_HDR in production; a datagram
/// socket in tests.
protocol VirtioNetBackend: AnyObject, Sendable {
    /// Readable when a frame is waiting. Non-blocking.
    var descriptor: Int32 { get }
    /// Reads one frame into `vectors[0..<count]`. Returns the frame's full length, which is more
    /// than the vectors hold when it was truncated, or -errno (-EAGAIN: nothing waiting).
    func receive(_ vectors: UnsafeMutablePointer<iovec>, count: Int) -> Int
    /// Writes one frame gathered from `vectors[0..<count]`. Returns the bytes written or -errno.
    func send(_ vectors: UnsafeMutablePointer<iovec>, count: Int) -> Int
    /// Which offloads the guest accepts on receive (TUNSETOFFLOAD flags). Returns 0 or an errno.
    func setReceiveOffloads(_ flags: UInt32) -> Int32
}

/// A Linux tap interface in vnet-header mode: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR with
/// TUNSETVNETHDRSZ 12, so the kernel reads and writes the virtio_net_hdr itself (offloads stay
/// offloads: no checksum or segmentation work in userspace).
final class VirtioNetTap: VirtioNetBackend {
    let name: String
    /// True when opening created the interface; it is not persistent (TUNSETPERSIST 0), so it
    /// disappears when `file` closes.
    let created: Bool
    private let file: FileDescriptor

    var descriptor: Int32 { file.rawValue }

    /// Attaches to tap `name`, or creates it when it does not exist and we may (CAP_NET_ADMIN).
    /// Throws one line naming the problem and what to do.
    init(name: String) throws(VirtioDeviceError) {
        guard !name.isEmpty, name.utf8.count < 16, !name.contains("/"), !name.contains(" ") else {
            throw VirtioDeviceError("tap '\(name)': an interface name is 1 to 15 characters without '/' or spaces")
        }
        let exists = if_nametoindex(name) != 0
        if !exists && geteuid() != 0 {
            throw VirtioDeviceError("tap \(name) does not exist; create it first (ip tuntap add \(name) mode tap user $USER) or run as root")
        }
        let fd = chost_tap_open_vnet(name, exists ? 0 : 1, Int32(VirtioNetSpec.headerSize))
        guard fd >= 0 else {
            let e = -fd
            let reason = HostError.text(errno: e)
            switch e {
            case ENOENT, ENODEV, ENXIO:
                throw VirtioDeviceError("tap \(name): /dev/net/tun: \(reason) (is the tun module loaded?)")
            case EPERM, EACCES:
                throw VirtioDeviceError("tap \(name): \(reason) (the tap belongs to another user, or creating one needs CAP_NET_ADMIN)")
            case EBUSY:
                throw VirtioDeviceError("tap \(name): \(reason) (another process has it open, or it appeared while we created it)")
            case EINVAL:
                throw VirtioDeviceError("tap \(name): \(reason) (an interface of that name exists but is not a single-queue tap)")
            default:
                throw VirtioDeviceError("tap \(name): \(reason)")
            }
        }
        self.name = name
        created = !exists
        file = FileDescriptor(owning: fd)
    }

    func receive(_ vectors: UnsafeMutablePointer<iovec>, count: Int) -> Int {
        while true {
            // tun_put_user returns the frame's whole length even when the vectors were shorter.
            let n = readv(file.rawValue, vectors, Int32(count))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            return -Int(errno)
        }
    }

    func send(_ vectors: UnsafeMutablePointer<iovec>, count: Int) -> Int {
        while true {
            let n = writev(file.rawValue, vectors, Int32(count))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            return -Int(errno)
        }
    }

    func setReceiveOffloads(_ flags: UInt32) -> Int32 {
        let r = chost_tap_set_offload(file.rawValue, flags)
        return r < 0 ? -r : 0
    }
}
