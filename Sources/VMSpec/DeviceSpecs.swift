/// A virtio-blk (or, for a unikernel, hvt block) drive as the command lines and swiftletd's config
/// give it: `PATH[,readonly][,root][,id=NAME]` (`ro` for readonly).
public struct DiskSpec: Equatable, Sendable {
    public var path: String
    public var readOnly: Bool
    /// Firecracker's `is_root_device`: `root=/dev/vdX` goes on a Linux command line.
    public var root: Bool
    /// Firecracker's `drive_id` (for a unikernel, the manifest's block device name), when given.
    public var id: String?

    public init(path: String, readOnly: Bool = false, root: Bool = false, id: String? = nil) {
        self.path = path; self.readOnly = readOnly; self.root = root; self.id = id
    }

    public static let textForm = "PATH[,readonly][,root][,id=NAME]"

    public init?(_ text: some StringProtocol) {
        guard let o = OptionString(text, positional: true), let path = o.positional,
              o.only(flags: ["readonly", "ro", "root"], keys: ["id"]),
              !(o.flags.contains("readonly") && o.flags.contains("ro")) else { return nil }
        if let id = o.pairs["id"], !DeviceName.isValid(id) { return nil }
        self.init(path: path, readOnly: o.flags.contains("readonly") || o.flags.contains("ro"),
                  root: o.flags.contains("root"), id: o.pairs["id"])
    }

    /// The option string `init?(_:)` reads back.
    public var text: String {
        path + (readOnly ? ",readonly" : "") + (root ? ",root" : "") + (id.map { ",id=\($0)" } ?? "")
    }
}

/// A network interface on a host tap: `tap=NAME[,mac=XX:XX:XX:XX:XX:XX][,id=NAME]`.
public struct NetSpec: Equatable, Sendable {
    /// The tap's name (1 to 15 characters, no `/` or space: IFNAMSIZ and the kernel's rules).
    public var tap: String
    /// The guest's MAC, a unicast one; nil picks a random one.
    public var mac: MACAddress?
    /// Firecracker's `iface_id` (for a unikernel, the manifest's net device name), when given.
    public var id: String?

    public init(tap: String, mac: MACAddress? = nil, id: String? = nil) { self.tap = tap; self.mac = mac; self.id = id }

    public static let textForm = "tap=NAME[,mac=XX:XX:XX:XX:XX:XX][,id=NAME] (tap name 1 to 15 characters, a unicast MAC)"

    public init?(_ text: some StringProtocol) {
        guard let o = OptionString(text), o.flags.isEmpty, o.only(keys: ["tap", "mac", "id"]),
              let tap = o.pairs["tap"], Self.isValidTapName(tap) else { return nil }
        var mac: MACAddress? = nil
        if let text = o.pairs["mac"] {
            guard let parsed = MACAddress(text), parsed.isUnicast else { return nil }
            mac = parsed
        }
        if let id = o.pairs["id"], !DeviceName.isValid(id) { return nil }
        self.init(tap: tap, mac: mac, id: o.pairs["id"])
    }

    public var text: String {
        "tap=\(tap)" + (mac.map { ",mac=\($0)" } ?? "") + (id.map { ",id=\($0)" } ?? "")
    }

    /// IFNAMSIZ is 16 with the NUL; a slash or a space cannot be in an interface name.
    public static func isValidTapName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 15 && !name.contains("/") && !name.contains(" ")
    }
}

/// A virtio-vsock device: `cid=N,uds=PATH`, N a guest CID (3 to 2^32-2; 0-2 are reserved and
/// Firecracker's guest_cid is 32 bits).
public struct VsockSpec: Equatable, Sendable {
    public var cid: UInt32
    /// The host Unix socket: `CONNECT <port>` on it reaches guest port <port>.
    public var uds: String

    public init(cid: UInt32, uds: String) { self.cid = cid; self.uds = uds }

    public static let textForm = "cid=N,uds=PATH (N in 3 to 4294967294)"

    public init?(_ text: some StringProtocol) {
        guard let o = OptionString(text), o.flags.isEmpty, o.only(keys: ["cid", "uds"]),
              let cidText = o.pairs["cid"], let cid = UInt32(cidText), Self.isValidCID(UInt64(cid)),
              let uds = o.pairs["uds"] else { return nil }
        self.init(cid: cid, uds: uds)
    }

    public var text: String { "cid=\(cid),uds=\(uds)" }

    public static func isValidCID(_ cid: UInt64) -> Bool { cid >= 3 && cid < 0xFFFF_FFFF }
}

/// Device ids (drive, interface): what Firecracker and a Solo5 manifest both accept.
public enum DeviceName {
    /// What `isValid` accepts, for messages.
    public static let form = "1 to 64 ASCII letters, digits, _ or -"

    /// 1 to 64 characters of letters, digits, `_` and `-`.
    public static func isValid(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F || $0 == 0x2D }
    }
}

/// A spec that is written as its option string wherever it is stored (swiftletd's config and
/// state files): decoding parses it with the one grammar and names the accepted form on failure.
public protocol OptionStringCodable: Codable, Equatable, Sendable {
    init?(_ text: String)
    var text: String { get }
    static var textForm: String { get }
}

extension OptionStringCodable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Self(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "'\(text.printable)' is not \(Self.textForm)"))
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(text)
    }
}

extension DiskSpec: OptionStringCodable {
    public init?(_ text: String) { self.init(text[...]) }
}
extension NetSpec: OptionStringCodable {
    public init?(_ text: String) { self.init(text[...]) }
}
extension VsockSpec: OptionStringCodable {
    public init?(_ text: String) { self.init(text[...]) }
}

/// An extension (`--extension`): a device or exit handler in any language, spoken to over the
/// extension protocol (docs/abi.md, "Extensions"). Two forms:
/// - `PROGRAM[,ARG...]`: a program the VMM starts, confined as the VM process, with the protocol
///   socket as its descriptor 3. Bare items after the program are its arguments, in order (an
///   argument cannot contain `,` or `=`).
/// - `listen=PATH`: the VMM listens on the Unix socket PATH (an absolute path, mode 0600) and the
///   extension is a process of the user's own that connects there, within `connectSeconds`,
///   before the VM starts.
/// Then `irq` is the interrupt line it may raise (5 to 23, the IOAPIC's lines our own devices
/// leave free); `timeout_ms` how long one access may take before the device is failed (1 to
/// 60,000; default 1,000).
public struct ExtensionSpec: Equatable, Sendable {
    /// Where the extension comes from.
    public enum Origin: Equatable, Sendable {
        /// A program the VMM starts, with its arguments.
        case program(String, arguments: [String])
        /// A socket the VMM listens on for the extension to connect to.
        case socket(String)
    }

    public var origin: Origin
    public var irq: UInt32?
    public var timeoutMilliseconds: Int

    public static let defaultTimeoutMilliseconds = 1000
    /// How long the VMM waits for the extension of a `listen=PATH` to connect.
    public static let connectSeconds = 30
    public static let textForm = "PROGRAM[,ARG...] or listen=PATH, then [,irq=N][,timeout_ms=MS] (N in 5 to 23, MS in 1 to 60000)"

    public init(program: String, arguments: [String] = [], irq: UInt32? = nil, timeoutMilliseconds: Int = defaultTimeoutMilliseconds) {
        self.init(origin: .program(program, arguments: arguments), irq: irq, timeoutMilliseconds: timeoutMilliseconds)
    }

    public init(origin: Origin, irq: UInt32? = nil, timeoutMilliseconds: Int = defaultTimeoutMilliseconds) {
        self.origin = origin
        self.irq = irq
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    public init?(_ text: some StringProtocol) {
        let listens = text.hasPrefix("listen=")
        guard let o = OptionString(text, positional: !listens), o.only(flags: listens ? [] : Set(o.flags), keys: listens ? ["listen", "irq", "timeout_ms"] : ["irq", "timeout_ms"])
        else { return nil }
        let origin: Origin
        if listens {
            guard let path = o.pairs["listen"], path.hasPrefix("/") else { return nil }
            origin = .socket(path)
        } else {
            guard let program = o.positional else { return nil }
            origin = .program(program, arguments: o.flags)
        }
        var irq: UInt32?
        if let value = o.pairs["irq"] {
            guard let line = UInt32(value), (5...23).contains(line) else { return nil }
            irq = line
        }
        var timeout = Self.defaultTimeoutMilliseconds
        if let value = o.pairs["timeout_ms"] {
            guard let ms = Int(value), (1...60_000).contains(ms) else { return nil }
            timeout = ms
        }
        self.init(origin: origin, irq: irq, timeoutMilliseconds: timeout)
    }

    /// The extension as the logs name it: its program's file name, or its socket's path.
    public var name: String {
        switch origin {
        case .program(let program, _): program.split(separator: "/").last.map(String.init) ?? program
        case .socket(let path): path
        }
    }

    public var text: String {
        let head: [String]
        switch origin {
        case .program(let program, let arguments): head = [program] + arguments
        case .socket(let path): head = ["listen=" + path]
        }
        return (head + (irq.map { ["irq=\($0)"] } ?? [])
            + (timeoutMilliseconds == Self.defaultTimeoutMilliseconds ? [] : ["timeout_ms=\(timeoutMilliseconds)"])).joined(separator: ",")
    }
}

extension ExtensionSpec: OptionStringCodable {
    public init?(_ text: String) { self.init(text[...]) }
}
