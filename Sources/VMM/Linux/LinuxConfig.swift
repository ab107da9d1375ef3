import VMSpec

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
    /// Extension processes serving port-I/O and MMIO ranges (`--extension`), started in order,
    /// and how they are confined.
    public var extensions = ExtensionSet()

    /// A virtio-blk disk backed by a file (from a ``DiskSpec`` on the command line, a drive in
    /// Firecracker's config).
    public struct Disk: Sendable, Equatable {
        public var path: String
        public var readOnly: Bool
        /// A name for metrics (Firecracker's drive_id); nil: vda, vdb, …
        public var id: String?
        public init(path: String, readOnly: Bool = false, id: String? = nil) { self.path = path; self.readOnly = readOnly; self.id = id }

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

    }

    /// A virtio-vsock device: the guest's CID and the host Unix socket (`CONNECT <port>` on it
    /// reaches guest port <port>; guest connections to CID 2 port P go to `<uds>_<P>`).
    public struct Vsock: Sendable, Equatable {
        public var cid: UInt64
        public var uds: String
        public init(cid: UInt64, uds: String) { self.cid = cid; self.uds = uds }

    }
    public var kvmDevice = "/dev/kvm"
    /// Which door the configuration came in by, so errors name what the user wrote: a flag of
    /// `swiftlet run`, or a field of Firecracker's JSON (config file, API, swiftletd).
    public var source = Source.commandLine

    /// See ``source``.
    public enum Source: Sendable, Equatable {
        case commandLine, firecracker

        func cpus(_ n: Int) -> String { self == .commandLine ? "--cpus \(n)" : "machine-config.vcpu_count \(n)" }
        func disk(_ d: Disk) -> String {
            self == .commandLine ? "--disk \(d.path)" : "drive '\((d.id ?? "").printable)' (path_on_host \(d.path.printable))"
        }
        func net(_ n: Net) -> String {
            self == .commandLine ? "--net tap=\(n.tap)" : "network interface '\((n.id ?? "").printable)' (host_dev_name \(n.tap.printable))"
        }
        func vsock(_ v: Vsock) -> String {
            self == .commandLine ? "--vsock cid=\(v.cid),uds=\(v.uds)" : "vsock (guest_cid \(v.cid), uds_path \(v.uds))"
        }
    }

    public static let defaultCommandLine = "console=ttyS0 reboot=k panic=-1"
    public static let minimumMemory: UInt64 = 32 << 20

    public init(kernelPath: String) { self.kernelPath = kernelPath }

}

extension LinuxConfig.Disk {
    public init(_ spec: DiskSpec) { self.init(path: spec.path, readOnly: spec.readOnly, id: spec.id) }
}

extension LinuxConfig.Net {
    public init(_ spec: NetSpec) { self.init(tap: spec.tap, mac: spec.mac?.bytes, id: spec.id) }
}

extension LinuxConfig.Vsock {
    public init(_ spec: VsockSpec) { self.init(cid: UInt64(spec.cid), uds: spec.uds) }
}

/// A VM's extension processes (`--extension`) and their confinement: the user they run as (the
/// VM process's own after its privilege drop: `--uid/--gid`, a jail's user; nil: the VMM's) and
/// whether they get `SeccompPolicy.extensionProcess` (off only with `--no-seccomp`).
public struct ExtensionSet: Sendable, Equatable {
    public var specs: [ExtensionSpec]
    public var user: User?
    public var seccomp: Bool

    /// A user and group id.
    public struct User: Sendable, Equatable {
        public var uid: UInt32
        public var gid: UInt32
        public init(uid: UInt32, gid: UInt32) { self.uid = uid; self.gid = gid }
    }

    public init(_ specs: [ExtensionSpec] = [], user: User? = nil, seccomp: Bool = true) {
        self.specs = specs
        self.user = user
        self.seccomp = seccomp
    }
}
