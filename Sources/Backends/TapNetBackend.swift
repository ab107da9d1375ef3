import Devices
import Host
#if canImport(Glibc)
import Glibc
#endif

/// A virtio-net back end over a frame descriptor: a Linux tap in vnet-header mode
/// (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR with TUNSETVNETHDRSZ 12, so the kernel reads and writes the
/// virtio_net_hdr itself and offloads stay offloads), or any descriptor that moves one frame per
/// read/write (tests use a datagram socket). Its readiness source is a private epoll set holding
/// only that descriptor, where input is switched on and off.
public final class TapNetBackend: NetBackend, @unchecked Sendable {
    /// The interface's name (empty when not a tap).
    public let name: String
    /// True when opening created the interface; it is not persistent (TUNSETPERSIST 0), so it
    /// disappears when the descriptor closes.
    public let created: Bool
    private let file: FileDescriptor
    private let poller: Poller
    private let offloads: @Sendable (Int32, UInt32) -> Int32

    /// Attaches to tap `name`, or creates it when it does not exist and we may (CAP_NET_ADMIN).
    /// Throws one line naming the problem and what to do.
    public convenience init(tap name: String) throws(VirtioDeviceError) {
        guard !name.isEmpty, name.utf8.count < 16, !name.contains("/"), !name.contains(" ") else {
            throw VirtioDeviceError("tap '\(name)': an interface name is 1 to 15 characters without '/' or spaces")
        }
        let exists = TapDevice.interfaceExists(name)
        if !exists && !CurrentProcess.isRoot {
            throw VirtioDeviceError("tap \(name) does not exist; create it first (ip tuntap add \(name) mode tap user $USER) or run as root")
        }
        let file: FileDescriptor
        switch TapDevice.openVnet(name: name, create: !exists, headerSize: VirtioNetSpec.headerSize) {
        case .success(let opened): file = opened
        case .failure(let failure):
            let e = failure.errno
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
        try self.init(file: file, name: name, created: !exists, offloads: TapDevice.setOffloads)
    }

    /// A back end over `file` (non-blocking, one frame per read/write). `offloads` applies
    /// TUNSETOFFLOAD flags and returns 0 or an errno.
    public init(file: FileDescriptor, name: String = "", created: Bool = false,
                offloads: @escaping @Sendable (Int32, UInt32) -> Int32) throws(VirtioDeviceError) {
        do throws(HostError) {
            poller = try Poller()
            try poller.add(file.rawValue, token: 0, events: Poller.input)
        } catch { throw VirtioDeviceError("virtio-net: \(error)") }
        self.file = file
        self.name = name
        self.created = created
        self.offloads = offloads
    }

    public var readinessSource: Int32 { poller.descriptor }

    public func setInputEnabled(_ enabled: Bool) {
        poller.modify(file.rawValue, token: 0, events: enabled ? Poller.input : 0)
    }

    public func receive(_ vectors: UnsafeMutablePointer<iovec>, count: Int) -> Int {
        let n = VectoredIO.read(file.rawValue, vectors, count: count)
        if n == -Int(EAGAIN) { return 0 }
        return n > 0 ? n : -1
    }

    public func send(_ vectors: UnsafeMutablePointer<iovec>, count: Int) -> Int {
        VectoredIO.write(file.rawValue, vectors, count: count)
    }

    public func setReceiveOffloads(_ flags: UInt32) -> String? {
        let error = offloads(file.rawValue, flags)
        return error == 0 ? nil : HostError.text(errno: error)
    }
}

extension VirtioNet {
    /// Attaches to tap `name`, or creates it when it does not exist and we run as root (then it
    /// is removed when the device goes away). `mac` is the guest's address (6 bytes, unicast);
    /// nil picks a random locally administered one. Throws one line naming the problem.
    public convenience init(tap name: String, mac: [UInt8]? = nil) throws(VirtioDeviceError) {
        let tap: TapNetBackend
        do { tap = try TapNetBackend(tap: name) } catch { throw VirtioDeviceError("virtio-net: \(error.message)") }
        try self.init(backend: tap, mac: mac, name: name, created: tap.created)
    }
}
