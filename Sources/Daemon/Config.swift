import Foundation
import VMSpec
import Yams

/// One VM as the config file (or `ctl start --kernel …`) defines it. The same Codable shape is read
/// from YAML (the config file), from JSON (the body of `PUT /vms/NAME/start`) and written to the
/// state directory, so the three never drift apart. Decoding is strict: an unknown key is an error.
public struct VMDefinition: Codable, Sendable, Equatable {
    /// A Linux bzImage, a PVH ELF or a Solo5 hvt unikernel; `swiftlet api` tells them apart.
    public var kernel: String
    public var initrd: String?
    /// Linux: the kernel command line; hvt: the unikernel's arguments. Nil sends none.
    public var cmdline: String?
    public var memoryMiB: Int
    public var cpus: Int
    public var disks: [Disk]
    public var networks: [Network]
    public var vsock: Vsock?
    public var autostart: Bool

    public static let defaultMemoryMiB = Int(FirecrackerConfig.MachineConfig.defaultMemSizeMib)

    public init(kernel: String, initrd: String? = nil, cmdline: String? = nil, memoryMiB: Int = VMDefinition.defaultMemoryMiB,
                cpus: Int = 1, disks: [Disk] = [], networks: [Network] = [], vsock: Vsock? = nil, autostart: Bool = false) {
        self.kernel = kernel; self.initrd = initrd; self.cmdline = cmdline; self.memoryMiB = memoryMiB
        self.cpus = cpus; self.disks = disks; self.networks = networks; self.vsock = vsock; self.autostart = autostart
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kernel, initrd, cmdline, memory, cpus, disks, networks, vsock, autostart
    }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let verify = verifiesFiles(decoder)
        kernel = try c.decode(String.self, forKey: .kernel)
        if verify { try requireFile(kernel, c, .kernel) }
        initrd = try c.decodeIfPresent(String.self, forKey: .initrd)
        if verify, let initrd { try requireFile(initrd, c, .initrd) }
        cmdline = try c.decodeIfPresent(String.self, forKey: .cmdline)
        if let size = try c.decodeIfPresent(MemoryMiB.self, forKey: .memory) {
            memoryMiB = size.mib
        } else {
            memoryMiB = Self.defaultMemoryMiB
        }
        cpus = try c.decodeIfPresent(Int.self, forKey: .cpus) ?? 1
        guard (1...255).contains(cpus) else { throw invalid(c, .cpus, "\(cpus) is out of range (1 to 255)") }
        disks = try c.decodeIfPresent([Disk].self, forKey: .disks) ?? []
        if verify {
            for (index, disk) in disks.enumerated() where !FileManager.default.fileExists(atPath: disk.path) {
                throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [CodingKeys.disks, IndexKey(index)],
                                                        debugDescription: "\(disk.path): no such file"))
            }
        }
        networks = try c.decodeIfPresent([Network].self, forKey: .networks) ?? []
        vsock = try c.decodeIfPresent(Vsock.self, forKey: .vsock)
        autostart = try c.decodeIfPresent(Bool.self, forKey: .autostart) ?? false
        // Drive and interface ids become API path components and, for unikernels, manifest names.
        var seen = Set<String>()
        for id in diskIDs + networkIDs where !seen.insert(id).inserted {
            throw invalid(c, diskIDs.contains(id) ? .disks : .networks, "device id '\(id)' is used twice")
        }
    }

    /// Firecracker drive ids, in order: `id=` when given, else `diskN`.
    public var diskIDs: [String] { disks.enumerated().map { $0.element.id ?? "disk\($0.offset)" } }
    /// Firecracker iface ids, in order: `id=` when given, else `netN`.
    public var networkIDs: [String] { networks.enumerated().map { $0.element.id ?? "net\($0.offset)" } }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kernel, forKey: .kernel)
        try c.encodeIfPresent(initrd, forKey: .initrd)
        try c.encodeIfPresent(cmdline, forKey: .cmdline)
        try c.encode(memoryMiB, forKey: .memory)
        try c.encode(cpus, forKey: .cpus)
        if !disks.isEmpty { try c.encode(disks, forKey: .disks) }
        if !networks.isEmpty { try c.encode(networks, forKey: .networks) }
        try c.encodeIfPresent(vsock, forKey: .vsock)
        if autostart { try c.encode(autostart, forKey: .autostart) }
    }

    /// A disk (`PATH[,readonly][,root][,id=NAME]`), a network interface (`tap=NAME[,mac=…][,id=NAME]`)
    /// and a vsock device (`cid=N,uds=PATH`): VMSpec's specs, written as their option strings.
    /// `id` is the Firecracker drive or iface id (for a unikernel: the manifest's device name).
    public typealias Disk = DiskSpec
    public typealias Network = NetSpec
    public typealias Vsock = VsockSpec
}

/// A VM's memory in swiftletd's config: VMSpec's one size grammar (`256M`, `2G`, `131072K`, a
/// bare number of MiB), in whole MiB because Firecracker's machine-config counts MiB.
struct MemoryMiB: Decodable {
    var mib: Int

    static let maximumMiB = Int(FirecrackerConfig.MachineConfig.maximumMemoryMiB)

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let text: String
        if let n = try? c.decode(Int.self) { text = String(n) } else { text = try c.decode(String.self) }
        guard let mib = MemoryMiB.parseMiB(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                debugDescription: "'\(text)' is not a memory size of 1 MiB to 1 TiB in whole MiB (e.g. 256M, 2G, or a number of MiB)"))
        }
        self.mib = mib
    }

    /// `256M` → 256, `2G` → 2048, `4096K` → 4, `64` → 64; nil when malformed, zero, not whole
    /// MiB, or over 1 TiB.
    static func parseMiB(_ text: String) -> Int? {
        guard let bytes = MemorySize.bytes(text), bytes % (1 << 20) == 0, bytes >> 20 <= UInt64(maximumMiB) else { return nil }
        return Int(bytes >> 20)
    }
}

/// The daemon's configuration file (YAML).
public struct DaemonConfig: Decodable, Sendable, Equatable {
    /// Where sockets, logs, pid and state files live (default /run/swiftlet).
    public var stateDir: String?
    /// VM processes drop to this user's uid/gid.
    public var user: String?
    public var uid: UInt32?
    public var gid: UInt32?
    public var vms: [String: VMDefinition]

    public init(stateDir: String? = nil, user: String? = nil, vms: [String: VMDefinition] = [:]) {
        self.stateDir = stateDir; self.user = user; self.vms = vms
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case stateDir = "state_dir", user, vms
    }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        stateDir = try c.decodeIfPresent(String.self, forKey: .stateDir)
        if let stateDir, !stateDir.hasPrefix("/") { throw invalid(c, .stateDir, "'\(stateDir)' must be an absolute path") }
        user = try c.decodeIfPresent(String.self, forKey: .user)
        if let user {
            guard let entry = getpwnam(user) else { throw invalid(c, .user, "no such user '\(user)'") }
            uid = entry.pointee.pw_uid
            gid = entry.pointee.pw_gid
        }
        // Names are checked before their definitions so a bad name is reported as such.
        if c.contains(.vms), try c.decodeNil(forKey: .vms) == false {
            let names = try c.nestedContainer(keyedBy: AnyKey.self, forKey: .vms)
            var vms: [String: VMDefinition] = [:]
            for key in names.allKeys {
                guard isValidName(key.stringValue) else {
                    throw DecodingError.dataCorrupted(.init(codingPath: names.codingPath + [key],
                        debugDescription: "'\(key.stringValue)' is not a VM name (1 to 64 of A-Z a-z 0-9 . _ -)"))
                }
                vms[key.stringValue] = try names.decode(VMDefinition.self, forKey: key)
            }
            self.vms = vms
        } else {
            vms = [:]
        }
    }

    /// Reads and validates a config file. Every error is one line naming the file and, where the
    /// YAML parser or the node tree knows it, the line.
    public static func load(path: String) throws(DaemonError) -> DaemonConfig {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot read it (or it is not UTF-8)" : "no such file"
            throw DaemonError(400, "\(path): \(reason)")
        }
        return try parse(yaml: text, name: path)
    }

    /// Parses config text; `name` prefixes every error (the file's path).
    public static func parse(yaml text: String, name: String) throws(DaemonError) -> DaemonConfig {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw DaemonError(400, "\(name): \(describeYAMLError(error))")
        }
        guard let root, root != Node("") else { return DaemonConfig() }  // an empty file: no VMs
        if case .scalar = root { throw DaemonError(400, "\(name): line 1: expected a mapping (state_dir, user, vms)") }
        do {
            return try YAMLDecoder().decode(DaemonConfig.self, from: text)
        } catch let error as DecodingError {
            throw DaemonError(400, "\(name): \(describe(error, root: root))")
        } catch {
            throw DaemonError(400, "\(name): \(error)")
        }
    }
}

// MARK: - strict keys and readable errors

/// A coding key for any string (the VM names under `vms`, unknown keys).
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { stringValue = String(intValue); self.intValue = intValue }
}

extension CodingUserInfoKey {
    /// Set to `false` to decode a ``VMDefinition`` without checking that its files exist (a state
    /// file of a running VM must load even when its kernel file was removed since).
    public static let verifyFiles = CodingUserInfoKey(rawValue: "swiftlet.verifyFiles")!
}

func verifiesFiles(_ decoder: any Decoder) -> Bool { decoder.userInfo[.verifyFiles] as? Bool ?? true }

/// Throws a DecodingError naming the first key not in `known` (typos must not be silently ignored).
func rejectUnknownKeys(_ decoder: any Decoder, known: [String]) throws {
    let c = try decoder.container(keyedBy: AnyKey.self)
    for key in c.allKeys.sorted(by: { $0.stringValue < $1.stringValue }) where !known.contains(key.stringValue) {
        throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [key],
            debugDescription: "unknown key '\(key.stringValue)' (known keys: \(known.joined(separator: ", ")))"))
    }
}

/// An array position in a coding path (`disks[1]`).
struct IndexKey: CodingKey {
    var intValue: Int?
    var stringValue: String { "\(intValue ?? 0)" }
    init(_ index: Int) { intValue = index }
    init?(intValue: Int) { self.intValue = intValue }
    init?(stringValue: String) { nil }
}

func invalid<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ key: K, _ message: String) -> DecodingError {
    DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [key], debugDescription: message))
}

func requireFile<K: CodingKey>(_ path: String, _ c: KeyedDecodingContainer<K>, _ key: K) throws {
    guard !path.isEmpty else { throw invalid(c, key, "must not be empty") }
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw invalid(c, key, "\(path): no such file") }
    guard !isDirectory.boolValue else { throw invalid(c, key, "\(path): is a directory") }
}

/// `[A-Za-z0-9._-]{1,64}`: VM names become file names in the state directory.
public func isValidName(_ name: String) -> Bool {
    let bytes = Array(name.utf8)
    guard (1...64).contains(bytes.count) else { return false }
    return bytes.allSatisfy { b in
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E || b == 0x5F || b == 0x2D
    }
}

/// `vms.web.disks[1]` from a coding path.
func render(_ path: [any CodingKey]) -> String {
    var s = ""
    for key in path {
        if let i = key.intValue { s += "[\(i)]" } else { s += s.isEmpty ? key.stringValue : ".\(key.stringValue)" }
    }
    return s
}

/// One line for a Codable error: `line N: vms.web.cpus: 300 is out of range (1 to 255)`.
/// `root` (when the text was YAML) maps the coding path back to a line.
func describe(_ error: DecodingError, root: Node? = nil) -> String {
    let path: [any CodingKey]
    let what: String
    switch error {
    case .typeMismatch(let type, let context):
        path = context.codingPath
        what = "expected \(typeName(type))"
    case .valueNotFound(let type, let context):
        path = context.codingPath
        what = "expected \(typeName(type)), found nothing"
    case .keyNotFound(let key, let context):
        path = context.codingPath
        what = "missing key '\(key.stringValue)'"
    case .dataCorrupted(let context):
        path = context.codingPath
        what = context.debugDescription
    @unknown default:
        return "\(error)"
    }
    var prefix = ""
    if let root, let line = line(of: path, in: root) { prefix = "line \(line): " }
    let where_ = render(path)
    return prefix + (where_.isEmpty ? what : "\(where_): \(what)")
}

private func typeName(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: return "a string"
    case is Int.Type, is UInt32.Type, is UInt64.Type: return "an integer"
    case is Bool.Type: return "true or false"
    case is Double.Type: return "a number"
    default:
        let name = "\(type)"
        if name.hasPrefix("Array") || name.hasSuffix("Sequence") { return "a list" }
        if name.hasPrefix("Dictionary") || name.hasSuffix("Mapping") || name.contains("Keyed") || name.hasSuffix("Config") || name.hasSuffix("Definition") { return "a mapping" }
        return name
    }
}

/// The line of the key (or list item) a coding path ends at, looked up in the composed YAML tree.
func line(of path: [any CodingKey], in root: Node) -> Int? {
    var node = root
    var best = root.mark?.line
    for key in path {
        if let mapping = node.mapping {
            guard let pair = mapping.first(where: { $0.key.string == key.stringValue }) else { return best }
            best = pair.key.mark?.line ?? best
            node = pair.value
        } else if let sequence = node.sequence, let i = key.intValue, i < sequence.count {
            node = sequence[i]
            best = node.mark?.line ?? best
        } else {
            return best
        }
    }
    return best
}

/// `line 7: mapping values are not allowed in this context` from a Yams error.
func describeYAMLError(_ error: any Error) -> String {
    guard let yaml = error as? YamlError else { return "\(error)" }
    switch yaml {
    case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
         .composer(let context, let problem, let mark, _):
        var s = "line \(mark.line): \(problem)"
        if let context { s += " (\(context.text), line \(context.mark.line))" }
        return s
    case .reader(let problem, let offset, _, _):
        return "\(problem)" + (offset.map { " at byte \($0)" } ?? "")
    default:
        return "\(yaml)".split(separator: "\n").first.map(String.init) ?? "invalid YAML"
    }
}
