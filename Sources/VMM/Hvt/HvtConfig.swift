/// Configuration of one Solo5 hvt unikernel run, as `solo5-hvt`'s command line gives it.
public struct HvtConfig: Sendable, Equatable {
    /// A tap interface for manifest device `name`.
    public struct Net: Sendable, Equatable {
        public var name: String
        /// The tap's name, or `@N`: tap descriptor N, already open (solo5-hvt's `--net:NAME=@NN`,
        /// as MirageOS's albatross passes taps).
        public var interface: String
        /// Six bytes; generated (locally administered, random) when nil.
        public var mac: [UInt8]?
        public init(name: String, interface: String, mac: [UInt8]? = nil) {
            self.name = name; self.interface = interface; self.mac = mac
        }
    }

    /// A file backing manifest device `name`.
    public struct Block: Sendable, Equatable {
        public var name: String
        public var path: String
        public var sectorSize: UInt16
        /// Opened read-only (Firecracker's `is_read_only`, swiftletd's `readonly`): the guest's
        /// writes fail with SOLO5_R_EUNSPEC and the file is never written.
        public var readOnly: Bool
        public init(name: String, path: String, sectorSize: UInt16 = 512, readOnly: Bool = false) {
            self.name = name; self.path = path; self.sectorSize = sectorSize; self.readOnly = readOnly
        }
    }

    /// How much the tender itself says on stderr (`--solo5:quiet|error|warn|info|debug`).
    public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
        case quiet, error, warn, info, debug
        public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }

        /// The name on command lines (`--log-level NAME`, solo5-hvt's `--solo5:NAME`).
        public var name: String { ["quiet", "error", "warn", "info", "debug"][rawValue] }

        public init?(name: String) {
            guard let level = Self.allCases.first(where: { $0.name == name }) else { return nil }
            self = level
        }
    }

    /// The descriptor of an `@N` interface, nil for a name (and for a malformed `@…`).
    public static func descriptor(of interface: String) -> Int32? {
        guard interface.hasPrefix("@"), let n = Int32(interface.dropFirst()), n >= 0 else { return nil }
        return n
    }

    public var kernelPath: String
    /// Guest memory in MiB (solo5-hvt's default is 512); the tender rounds it down to 2 MiB steps
    /// (at least 2 MiB) and refuses more than 4 GiB, as solo5-hvt does.
    public var memoryMiB: UInt64 = 512
    public var nets: [Net] = []
    public var blocks: [Block] = []
    /// The unikernel's command line, joined with spaces.
    public var arguments: [String] = []
    public var logLevel: LogLevel = .warn
    public var kvmDevice = "/dev/kvm"
    /// `--gdb`: serve GDB's remote protocol on 127.0.0.1:`gdbPort`, the guest stopped before its
    /// first instruction until a debugger connects (solo5-hvt-debug's module).
    public var gdb = false
    /// `--gdb-port=N` (0: the kernel picks one, and the tender prints it).
    public var gdbPort: UInt16 = 1234
    /// `--dumpcore=DIR`: an ELF core file in DIR when the guest aborts (exit status 255) or
    /// triple-faults (solo5-hvt-debug's module).
    public var dumpCoreDirectory: String?
    /// `--jail=DIR`: run in a jail rooted at DIR (docs/jail.md; `ForegroundJail`).
    public var jail: String?
    /// Confine the tender with seccomp before the guest runs (off with `--no-seccomp`).
    public var seccomp = true
    /// Whether the filters go on: asked for, and no debugging module in use (`--gdb` accepts
    /// a connection, `--dumpcore` creates its file, at run time; solo5-hvt-debug has no filter).
    public var installsSeccompFilter: Bool { seccomp && !gdb && dumpCoreDirectory == nil }

    public init(kernelPath: String) { self.kernelPath = kernelPath }
}
