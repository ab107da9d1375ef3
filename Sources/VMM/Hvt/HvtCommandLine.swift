/// Parses `solo5-hvt`'s command line: `[--mem=MB] [--net:NAME=IFACE] [--net-mac:NAME=HWADDR]
/// [--block:NAME=PATH] [--block-sector-size:NAME=N] [--solo5:LEVEL] [--] KERNEL [ARGS…]`.
/// Options come before KERNEL; everything after KERNEL belongs to the unikernel.
public enum HvtCommandLine {
    /// What the command line asked for: a run, or the usage text.
    public enum Parsed: Equatable, Sendable {
        case run(HvtConfig)
        case help
    }

    public static let usage = """
        usage: swiftlet hvt [ CORE OPTIONS ] [ MODULE OPTIONS ] [ -- ] KERNEL [ ARGS ]
        KERNEL is the filename of the unikernel to run.
        ARGS are optional arguments passed to the unikernel.
        Core options:
          [ --mem=512 ] (guest memory in MB)
          [ --solo5:quiet|error|warn|info|debug ] (tender log level)
            --help (display this help)
        Module options:
            --block:NAME=PATH (attach block device/file at PATH as block storage NAME)
            --block-sector-size:NAME=SIZE (set the sector size of block NAME, default 512)
            --net:NAME=IFACE (attach tap at IFACE as network device NAME)
            --net-mac:NAME=HWADDR (set HWADDR for network device NAME)
        """

    public static func parse(_ arguments: [String]) throws(VMMError) -> Parsed {
        var memory: UInt64 = 512
        var nets: [HvtConfig.Net] = []
        var blocks: [HvtConfig.Block] = []
        var macs: [(String, [UInt8])] = []
        var sectorSizes: [(String, UInt16)] = []
        var level = HvtConfig.LogLevel.warn
        var rest = arguments[...]

        while let arg = rest.first, arg.hasPrefix("-") {
            rest = rest.dropFirst()
            if arg == "--" { break }
            if arg == "--help" || arg == "-h" { return .help }
            if let value = arg.dropPrefix("--mem=") {
                guard let mb = UInt64(value), mb > 0, mb <= 1 << 20 else {
                    throw VMMError(.configuration, "malformed argument to --mem: '\(value)' (a size in MB)")
                }
                memory = mb
            } else if let spec = arg.dropPrefix("--net:") {
                let (name, iface) = try nameValue(spec, option: "--net")
                guard !iface.isEmpty, iface.utf8.count < 16 else { throw VMMError(.configuration, "--net:\(name): bad interface name '\(iface)'") }
                nets.append(.init(name: name, interface: iface))
            } else if let spec = arg.dropPrefix("--net-mac:") {
                let (name, text) = try nameValue(spec, option: "--net-mac")
                guard let mac = MACAddress.parse(text) else { throw VMMError(.configuration, "--net-mac:\(name): malformed MAC address '\(text)'") }
                macs.append((name, mac))
            } else if let spec = arg.dropPrefix("--block:") {
                let (name, path) = try nameValue(spec, option: "--block")
                guard !path.isEmpty else { throw VMMError(.configuration, "--block:\(name): missing path") }
                blocks.append(.init(name: name, path: path))
            } else if let spec = arg.dropPrefix("--block-sector-size:") {
                let (name, text) = try nameValue(spec, option: "--block-sector-size")
                guard let size = UInt16(text), size >= 512, size & (size - 1) == 0 else {
                    throw VMMError(.configuration, "--block-sector-size:\(name): '\(text)' is not a power of two >= 512")
                }
                sectorSizes.append((name, size))
            } else if let name = arg.dropPrefix("--solo5:") {
                guard let named = HvtConfig.LogLevel(name: String(name)) else { throw VMMError(.configuration, "unknown option '\(arg)'") }
                level = named
            } else {
                throw VMMError(.configuration, "invalid option: '\(arg)' (see --help)")
            }
        }
        guard let kernel = rest.first else { throw VMMError(.configuration, "missing KERNEL operand (see --help)") }

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
        return .run(config)
    }

    /// Splits `NAME=VALUE`; NAME is 1–67 characters of [A-Za-z0-9] as Solo5 requires.
    static func nameValue(_ spec: Substring, option: String) throws(VMMError) -> (String, String) {
        guard let eq = spec.firstIndex(of: "=") else { throw VMMError(.configuration, "malformed \(option):\(spec) (expected \(option):NAME=VALUE)") }
        let name = spec[..<eq], value = spec[spec.index(after: eq)...]
        guard !name.isEmpty, name.utf8.count <= 67,
              name.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) }) else {
            throw VMMError(.configuration, "\(option): invalid device name '\(name)' (1-67 letters and digits)")
        }
        return (String(name), String(value))
    }

}

extension String {
    fileprivate func dropPrefix(_ prefix: String) -> Substring? {
        hasPrefix(prefix) ? self[index(startIndex, offsetBy: prefix.count)...] : nil
    }
}
