import VMSpec

/// Parses `solo5-hvt`'s command line (Solo5 v0.12.1): `[--mem=MB] [--net:NAME=IFACE|@FD]
/// [--net-mac:NAME=HWADDR] [--block:NAME=PATH] [--block-sector-size:NAME=N] [--solo5:LEVEL] [--]
/// KERNEL [ARGS…]`, plus `--help` and `--version`, and solo5-hvt-debug's `--gdb`,
/// `--gdb-port=N` and `--dumpcore=DIR`. Options come before KERNEL; everything after
/// KERNEL belongs to the unikernel.
public enum HvtCommandLine {
    /// What the command line asked for: a run, the usage text, or the version.
    public enum Parsed: Equatable, Sendable {
        case run(HvtConfig, warnings: [String])
        case help
        case version
    }

    /// The Solo5 release whose `solo5-hvt` command line and ABIs this tender follows.
    public static let solo5Release = SwiftletVersion.solo5Release

    /// `--version`, printed on stderr as solo5-hvt does (first two lines in its shape, so scripts
    /// that read "ABI version N" keep working).
    public static let version = """
        swiftlet hvt tender, version \(solo5Release) (Swiftlet's drop-in for solo5-hvt \(solo5Release))
        ABI version 2
        ABI versions supported: \(SwiftletVersion.hvtABIs.map(String.init).joined(separator: " "))
        """

    /// The usage as `swiftlet hvt --help` prints it.
    public static let usage = usage(program: "swiftlet hvt")

    /// The usage naming `program` (`solo5-hvt-debug` when installed under that name, as the peer's does).
    public static func usage(program: String) -> String { """
        usage: \(program) [ CORE OPTIONS ] [ MODULE OPTIONS ] [ -- ] KERNEL [ ARGS ]
        KERNEL is the filename of the unikernel to run: Solo5 hvt ABI 2 (Solo5 0.8.0 to v0.12.1,
        today's MirageOS) or ABI 1 (Solo5 0.7 and older), chosen by the image's ABI note.
        ARGS are optional arguments passed to the unikernel.
        Core options:
          [ --mem=512 ] (guest memory in MB; rounded down to 2 MB steps, at most 4096)
          [ --solo5:quiet|error|warn|info|debug ] (tender log level; debug names the ABI)
            --help (display this help)
            --version (display version information)
        Compiled-in modules: core block net gdb dumpcore
        Compiled-in module options:
            --block:NAME=PATH (attach block device/file at PATH as block storage NAME)
          [ --block-sector-size:NAME=SECTORSIZE ] (set sector size for block device NAME; must be a power of two greater than or equal 512)
            --net:NAME=IFACE | @NN (attach tap at IFACE or at fd @NN as network NAME)
          [ --net-mac:NAME=HWADDR ] (set HWADDR for network NAME)
            --gdb (optional flag for running in a gdb debug session)
          [ --gdb-port=1234 ] (port to use)
            --dumpcore=DIR (enable guest core dump on abort/trap)
        Debugging (as solo5-hvt-debug): with --gdb the guest waits, stopped before its first
        instruction, for `gdb KERNEL` and `target remote localhost:PORT` (127.0.0.1 only);
        breakpoints (software and hardware), watchpoints, stepping, registers, memory, Ctrl-C;
        detaching lets the guest run on. With --dumpcore=DIR an abort (solo5_abort, a fatal
        trap) or a triple fault writes DIR/core.solo5-hvt.PID, for `gdb KERNEL CORE`.
        Swiftlet's own options:
          [ --jail=DIR ] (run jailed in DIR: own root, namespaces, cgroup, user; docs/jail.md)
          [ --no-seccomp ] (run without the seccomp filters; debugging only)
        Like solo5-hvt, the tender confines itself with seccomp before the guest runs (the
        process filter, and a narrower one per thread: vCPU, net ring); like solo5-hvt-debug,
        not when --gdb or --dumpcore is given (they open sockets and files at run time).
        Networking (ABI 2): frames go through a shared ring (HVT_FEATURE_RING_IO, a kick on
        port 0x600 served by an ioeventfd and an I/O thread) when the tender can offer it and
        the unikernel uses it; otherwise through hypercalls. The guest is told the tap's MTU.
        """
    }

    public static func parse(_ arguments: [String]) throws(VMMError) -> Parsed {
        var memory: UInt64 = 512
        var nets: [HvtConfig.Net] = []
        var blocks: [HvtConfig.Block] = []
        var macs: [(String, [UInt8])] = []
        var sectorSizes: [(String, UInt16)] = []
        var level = HvtConfig.LogLevel.warn
        var warnings: [String] = []
        var gdb = false, gdbPort: UInt16 = 1234
        var dumpCore: String? = nil
        var jail: String? = nil
        var seccomp = true
        var rest = arguments[...]

        // solo5-hvt answers --help and --version before looking at anything else.
        for arg in arguments {
            if arg == "--" || !arg.hasPrefix("-") { break }
            if arg == "--help" || arg == "-h" { return .help }
            if arg == "--version" { return .version }
        }
        while let arg = rest.first, arg.hasPrefix("-") {
            rest = rest.dropFirst()
            if arg == "--" { break }
            if let value = arg.dropPrefix("--mem=") {
                // solo5-hvt reads a signed size in MB; 0 or junk is malformed. Rounding and the
                // 4 GiB limit are the tender's (HvtTender.memoryLayout), as in solo5-hvt.
                guard let mb = Int64(value), mb != 0 else {
                    throw VMMError(.configuration, "Malformed argument to --mem: '\(value)' (a size in MB)")
                }
                guard mb > 0, mb <= 1 << 40 else {
                    throw VMMError(.configuration, "guest memory size \(value) MB exceeds the max size 4294967296 bytes")
                }
                memory = UInt64(mb)
            } else if let spec = arg.dropPrefix("--net:") {
                let (name, iface) = try nameValue(spec, option: "--net")
                if iface.hasPrefix("@") {
                    guard HvtConfig.descriptor(of: iface) != nil else {
                        throw VMMError(.configuration, "--net:\(name): '\(iface.printable)' is not @FD with FD a descriptor number")
                    }
                } else {
                    guard !iface.isEmpty, iface.utf8.count < 16 else { throw VMMError(.configuration, "--net:\(name): bad interface name '\(iface.printable)'") }
                }
                if let i = nets.firstIndex(where: { $0.name == name }) {
                    warnings.append("--net:\(name) given twice; using \(iface), not \(nets[i].interface)")
                    nets.remove(at: i)
                }
                nets.append(.init(name: name, interface: iface))
            } else if let spec = arg.dropPrefix("--net-mac:") {
                let (name, text) = try nameValue(spec, option: "--net-mac")
                guard let mac = MACAddress(text) else { throw VMMError(.configuration, "--net-mac:\(name): malformed MAC address '\(text)'") }
                macs.append((name, mac.bytes))
            } else if let spec = arg.dropPrefix("--block:") {
                let (name, path) = try nameValue(spec, option: "--block")
                guard !path.isEmpty else { throw VMMError(.configuration, "--block:\(name): missing path") }
                if let i = blocks.firstIndex(where: { $0.name == name }) {
                    warnings.append("--block:\(name) given twice; using \(path), not \(blocks[i].path)")
                    blocks.remove(at: i)
                }
                blocks.append(.init(name: name, path: path))
            } else if let spec = arg.dropPrefix("--block-sector-size:") {
                let (name, text) = try nameValue(spec, option: "--block-sector-size")
                guard let size = UInt16(text), size >= 512, size & (size - 1) == 0 else {
                    throw VMMError(.configuration, "Block size must be a multiple of 2 greater than or equal 512 (--block-sector-size:\(name)=\(text): a power of two from 512 to 32768)")
                }
                sectorSizes.append((name, size))
            } else if arg == "--gdb" {
                gdb = true
            } else if let value = arg.dropPrefix("--gdb-port=") {
                guard let port = UInt16(value) else {
                    throw VMMError(.configuration, "Malformed argument to --gdb-port: '\(value)' (a TCP port, 0 to 65535)")
                }
                gdbPort = port
            } else if let directory = arg.dropPrefix("--dumpcore=") {
                guard !directory.isEmpty else { throw VMMError(.configuration, "--dumpcore=DIR: missing directory") }
                dumpCore = String(directory)
            } else if arg == "--no-seccomp" {
                // Swiftlet's own option: for sanitizer runs and debugging (docs/hardening.md).
                seccomp = false
            } else if let directory = arg.dropPrefix("--jail=") {
                // Swiftlet's own option (docs/jail.md), not solo5-hvt's.
                guard directory.hasPrefix("/") else { throw VMMError(.configuration, "--jail=DIR: DIR must be an absolute path") }
                jail = String(directory)
            } else if let name = arg.dropPrefix("--solo5:") {
                guard let named = HvtConfig.LogLevel(name: String(name)) else { throw VMMError(.configuration, "unknown option '\(arg)'") }
                level = named
            } else {
                throw VMMError(.configuration, "Invalid option: `\(arg)' (see --help)")
            }
        }
        guard let kernel = rest.first else { throw VMMError(.configuration, "Missing KERNEL operand (see --help)") }

        for (name, mac) in macs {
            guard let i = nets.firstIndex(where: { $0.name == name }) else {
                throw VMMError(.configuration, "--net-mac:\(name) given without --net:\(name)=IFACE")
            }
            nets[i].mac = mac
        }
        for (name, size) in sectorSizes {
            guard let i = blocks.firstIndex(where: { $0.name == name }) else {
                throw VMMError(.configuration, "--block-sector-size:\(name) given without --block:\(name)=PATH")
            }
            blocks[i].sectorSize = size
        }
        var config = HvtConfig(kernelPath: kernel)
        config.memoryMiB = memory
        config.nets = nets
        config.blocks = blocks
        config.arguments = Array(rest.dropFirst())
        config.logLevel = level
        config.gdb = gdb
        config.gdbPort = gdbPort
        config.dumpCoreDirectory = dumpCore
        config.jail = jail
        config.seccomp = seccomp
        return .run(config, warnings: warnings)
    }

    /// Splits `NAME=VALUE`; NAME is 1–67 characters of [A-Za-z0-9] as Solo5 requires.
    static func nameValue(_ spec: Substring, option: String) throws(VMMError) -> (String, String) {
        guard let eq = spec.firstIndex(of: "=") else { throw VMMError(.configuration, "malformed \(option):\(spec) (expected \(option):NAME=VALUE)") }
        let name = spec[..<eq], value = spec[spec.index(after: eq)...]
        guard !name.isEmpty, name.utf8.count <= 67,
              name.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) }) else {
            throw VMMError(.configuration, "\(option): invalid device name '\(name.printable)' (1-67 letters and digits)")
        }
        return (String(name), String(value))
    }

}

extension String {
    fileprivate func dropPrefix(_ prefix: String) -> Substring? {
        hasPrefix(prefix) ? self[index(startIndex, offsetBy: prefix.count)...] : nil
    }
}
