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

    /// A virtio-blk disk backed by a file.
    public struct Disk: Sendable, Equatable {
        public var path: String
        public var readOnly: Bool
        public init(path: String, readOnly: Bool = false) { self.path = path; self.readOnly = readOnly }

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
