/// Configuration of a Linux microVM (`swiftlet run`).
public struct LinuxConfig: Sendable, Equatable {
    public var kernelPath: String
    public var initrdPath: String?
    /// The kernel command line. The console is the 16550 on COM1, so it should name ttyS0.
    public var commandLine = LinuxConfig.defaultCommandLine
    public var memoryBytes: UInt64 = 256 << 20
    public var cpus = 1
    /// Disk images, in order: /dev/vda, /dev/vdb, …
    public var disks: [Disk] = []
    /// A virtio-rng device fed from the host's getrandom (on by default).
    public var entropy = true
    /// virtio-net devices on tap interfaces, in order: eth0, eth1, … (after the disks on the bus).
    public var nets: [Net] = []
    /// A virtio-vsock device with a Firecracker-style Unix-socket backend (attached last).
    public var vsock: Vsock?

    /// A virtio-blk disk backed by a file.
    public struct Disk: Sendable, Equatable {
        public var path: String
        public var readOnly: Bool
        /// A name for metrics (Firecracker's drive_id); nil: vda, vdb, …
        public var id: String?
        public init(path: String, readOnly: Bool = false, id: String? = nil) { self.path = path; self.readOnly = readOnly; self.id = id }

        /// Parses `PATH[,readonly]` (also `ro`).
        public static func parse(_ text: String) -> Disk? {
            var parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard let path = parts.first, !path.isEmpty else { return nil }
            parts.removeFirst()
            var disk = Disk(path: path)
            for option in parts {
                switch option {
                case "readonly", "ro": disk.readOnly = true
                default: return nil
                }
            }
            return disk
        }
    }

    /// A virtio-net device on a host tap interface.
    public struct Net: Sendable, Equatable {
        /// The tap's name; it is created (and removed on exit) when it does not exist and we are root.
        public var tap: String
        /// The guest's MAC address (6 bytes); nil picks a random locally administered one.
        public var mac: [UInt8]?
        /// A name for metrics (Firecracker's iface_id); nil: eth0, eth1, …
        public var id: String?
        public init(tap: String, mac: [UInt8]? = nil, id: String? = nil) { self.tap = tap; self.mac = mac; self.id = id }

        /// Parses `tap=NAME[,mac=02:00:00:00:00:01]`.
        public static func parse(_ text: String) -> Net? {
            var tap: String?
            var mac: [UInt8]?
            for option in text.split(separator: ",", omittingEmptySubsequences: false) {
                let pair = option.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard pair.count == 2, !pair[1].isEmpty else { return nil }
                switch pair[0] {
                case "tap" where tap == nil: tap = String(pair[1])
                case "mac" where mac == nil:
                    let bytes = pair[1].split(separator: ":", omittingEmptySubsequences: false)
                    guard bytes.count == 6 else { return nil }
                    var parsed: [UInt8] = []
                    for byte in bytes {
                        guard (1...2).contains(byte.count), let value = UInt8(byte, radix: 16) else { return nil }
                        parsed.append(value)
                    }
                    // A multicast address cannot be a station's.
                    guard parsed[0] & 1 == 0 else { return nil }
                    mac = parsed
                default: return nil
                }
            }
            guard let tap else { return nil }
            return Net(tap: tap, mac: mac)
        }
    }

    /// A virtio-vsock device: the guest's CID and the host Unix socket (`CONNECT <port>` on it
    /// reaches guest port <port>; guest connections to CID 2 port P go to `<uds>_<P>`).
    public struct Vsock: Sendable, Equatable {
        public var cid: UInt64
        public var uds: String
        public init(cid: UInt64, uds: String) { self.cid = cid; self.uds = uds }

        /// Parses `cid=N,uds=PATH` (N in 3...4294967294).
        public static func parse(_ text: String) -> Vsock? {
            var cid: UInt64?
            var uds: String?
            for option in text.split(separator: ",", omittingEmptySubsequences: false) {
                let pair = option.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard pair.count == 2, !pair[1].isEmpty else { return nil }
                switch pair[0] {
                case "cid" where cid == nil:
                    guard let value = UInt64(pair[1]), value >= 3, value < 0xFFFF_FFFF else { return nil }
                    cid = value
                case "uds" where uds == nil: uds = String(pair[1])
                default: return nil
                }
            }
            guard let cid, let uds else { return nil }
            return Vsock(cid: cid, uds: uds)
        }
    }
    public var kvmDevice = "/dev/kvm"

    public static let defaultCommandLine = "console=ttyS0 reboot=k panic=-1"
    public static let minimumMemory: UInt64 = 32 << 20

    public init(kernelPath: String) { self.kernelPath = kernelPath }

    /// Parses a memory size: `256M`, `2G`, `131072K`, or a bare number of MiB.
    public static func parseMemory(_ text: String) -> UInt64? {
        guard let last = text.last else { return nil }
        var digits = Substring(text)
        var shift: UInt64 = 20
        switch last {
        case "K", "k": shift = 10; digits = digits.dropLast()
        case "M", "m": shift = 20; digits = digits.dropLast()
        case "G", "g": shift = 30; digits = digits.dropLast()
        default: break
        }
        guard let n = UInt64(digits), n > 0, n < (1 << (64 - shift)) else { return nil }
        return n << shift
    }
}
