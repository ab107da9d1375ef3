import Foundation
import VMSpec

/// Firecracker's `--config-file` JSON format, mapped onto a ``LinuxConfig``.
///
/// Supported sections: `boot-source`, `machine-config`, `drives`, `network-interfaces`, `vsock`.
/// The sections `logger`, `metrics`, `balloon` and `mmds-config` are accepted but ignored
/// (their contents are not checked), as are the machine-config fields `smt` and
/// `track_dirty_pages` and the drive fields `partuuid` (except to name the root device),
/// `cache_type` and `io_engine`. Like Firecracker, any other key, at any level, is an error.
///
/// Foundation's JSONDecoder is used here: this is the startup path, not the VMM hot path.
public struct FirecrackerConfig: Decodable, Sendable, Equatable {
    public var bootSource: BootSource
    public var machineConfig: MachineConfig?
    public var drives: [Drive]
    public var networkInterfaces: [NetworkInterface]
    public var vsock: Vsock?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case bootSource = "boot-source", machineConfig = "machine-config", drives
        case networkInterfaces = "network-interfaces", vsock
        case logger, metrics, balloon, mmdsConfig = "mmds-config"
    }

    public struct BootSource: Decodable, Sendable, Equatable {
        public var kernelImagePath: String
        public var initrdPath: String?
        public var bootArgs: String?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case kernelImagePath = "kernel_image_path", initrdPath = "initrd_path", bootArgs = "boot_args"
        }
        public init(kernelImagePath: String, initrdPath: String? = nil, bootArgs: String? = nil) {
            self.kernelImagePath = kernelImagePath; self.initrdPath = initrdPath; self.bootArgs = bootArgs
        }
        public init(from decoder: any Decoder) throws {
            let c = try strictContainer(decoder, CodingKeys.self)
            kernelImagePath = try c.decodePath(.kernelImagePath)
            initrdPath = try c.decodePathIfPresent(.initrdPath)
            bootArgs = try c.decodeIfPresent(String.self, forKey: .bootArgs)
        }
    }

    public struct MachineConfig: Decodable, Sendable, Equatable {
        public var vcpuCount: Int
        public var memSizeMib: UInt64
        public var smt: Bool?
        public var trackDirtyPages: Bool?
        /// "None" or "2M" as given (guest RAM asks for transparent huge pages either way).
        public var hugePages: String?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case vcpuCount = "vcpu_count", memSizeMib = "mem_size_mib", smt, trackDirtyPages = "track_dirty_pages"
            case hugePages = "huge_pages", cpuTemplate = "cpu_template"
        }
        /// 1 TiB.
        public static let maximumMemoryMiB: UInt64 = 1 << 20
        public init(vcpuCount: Int = 1, memSizeMib: UInt64 = 128) {
            self.vcpuCount = vcpuCount; self.memSizeMib = memSizeMib
        }
        public init(from decoder: any Decoder) throws {
            let c = try strictContainer(decoder, CodingKeys.self)
            vcpuCount = try c.decode(Int.self, forKey: .vcpuCount)
            memSizeMib = try c.decode(UInt64.self, forKey: .memSizeMib)
            smt = try c.decodeIfPresent(Bool.self, forKey: .smt)
            trackDirtyPages = try c.decodeIfPresent(Bool.self, forKey: .trackDirtyPages)
            // Accepted for Firecracker clients that always send them: guest RAM already asks for
            // transparent huge pages, and no CPU template is applied.
            hugePages = try c.decodeIfPresent(String.self, forKey: .hugePages)
            if let hugePages, !["None", "2M"].contains(hugePages) {
                throw DecodingError.dataCorruptedError(forKey: .hugePages, in: c, debugDescription: "must be None or 2M")
            }
            if let template = try c.decodeIfPresent(String.self, forKey: .cpuTemplate), !["None", ""].contains(template) {
                throw DecodingError.dataCorruptedError(forKey: .cpuTemplate, in: c, debugDescription: "CPU templates are not supported (use None)")
            }
            guard (1...255).contains(vcpuCount) else {
                throw DecodingError.dataCorruptedError(forKey: .vcpuCount, in: c, debugDescription: "must be in 1...255")
            }
            // Linux guests need 32 MiB or more (checked when the VM is built); unikernels need less.
            guard memSizeMib >= 1, memSizeMib <= Self.maximumMemoryMiB else {
                throw DecodingError.dataCorruptedError(forKey: .memSizeMib, in: c, debugDescription: "must be in 1...\(Self.maximumMemoryMiB) (MiB)")
            }
        }
    }

    public struct Drive: Decodable, Sendable, Equatable {
        public var driveId: String
        public var pathOnHost: String
        public var isRootDevice: Bool
        public var isReadOnly: Bool
        public var partuuid: String?
        public var cacheType: String?
        public var ioEngine: String?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case driveId = "drive_id", pathOnHost = "path_on_host", isRootDevice = "is_root_device"
            case isReadOnly = "is_read_only", partuuid, cacheType = "cache_type", ioEngine = "io_engine"
        }
        public init(from decoder: any Decoder) throws {
            let c = try strictContainer(decoder, CodingKeys.self)
            driveId = try c.decode(String.self, forKey: .driveId)
            pathOnHost = try c.decodePath(.pathOnHost)
            isRootDevice = try c.decode(Bool.self, forKey: .isRootDevice)
            isReadOnly = try c.decodeIfPresent(Bool.self, forKey: .isReadOnly) ?? false
            partuuid = try c.decodeIfPresent(String.self, forKey: .partuuid)
            cacheType = try c.decodeIfPresent(String.self, forKey: .cacheType)
            ioEngine = try c.decodeIfPresent(String.self, forKey: .ioEngine)
            if let cacheType, !["Unsafe", "Writeback"].contains(cacheType) {
                throw DecodingError.dataCorruptedError(forKey: .cacheType, in: c, debugDescription: "must be Unsafe or Writeback")
            }
            if let ioEngine, !["Sync", "Async"].contains(ioEngine) {
                throw DecodingError.dataCorruptedError(forKey: .ioEngine, in: c, debugDescription: "must be Sync or Async")
            }
        }
    }

    public struct NetworkInterface: Decodable, Sendable, Equatable {
        public var ifaceId: String
        public var hostDevName: String
        public var guestMac: [UInt8]?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case ifaceId = "iface_id", hostDevName = "host_dev_name", guestMac = "guest_mac"
        }
        public init(from decoder: any Decoder) throws {
            let c = try strictContainer(decoder, CodingKeys.self)
            ifaceId = try c.decode(String.self, forKey: .ifaceId)
            hostDevName = try c.decodePath(.hostDevName)
            if let text = try c.decodeIfPresent(String.self, forKey: .guestMac) {
                guard let mac = MACAddress(text), mac.isUnicast else {
                    throw DecodingError.dataCorruptedError(forKey: .guestMac, in: c,
                        debugDescription: "'\(text)' is not a unicast MAC (XX:XX:XX:XX:XX:XX)")
                }
                guestMac = mac.bytes
            }
        }
    }

    public struct Vsock: Decodable, Sendable, Equatable {
        public var guestCid: UInt64
        public var udsPath: String
        public var vsockId: String?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case guestCid = "guest_cid", udsPath = "uds_path", vsockId = "vsock_id"
        }
        public init(from decoder: any Decoder) throws {
            let c = try strictContainer(decoder, CodingKeys.self)
            guestCid = try c.decode(UInt64.self, forKey: .guestCid)
            udsPath = try c.decodePath(.udsPath)
            vsockId = try c.decodeIfPresent(String.self, forKey: .vsockId)
            guard guestCid >= 3, guestCid < 0xFFFF_FFFF else {
                throw DecodingError.dataCorruptedError(forKey: .guestCid, in: c, debugDescription: "must be in 3...4294967294")
            }
        }
    }

    public init(bootSource: BootSource, machineConfig: MachineConfig? = nil, drives: [Drive] = [],
                networkInterfaces: [NetworkInterface] = [], vsock: Vsock? = nil) {
        self.bootSource = bootSource
        self.machineConfig = machineConfig
        self.drives = drives
        self.networkInterfaces = networkInterfaces
        self.vsock = vsock
    }

    public init(from decoder: any Decoder) throws {
        let c = try strictContainer(decoder, CodingKeys.self)
        bootSource = try c.decode(BootSource.self, forKey: .bootSource)
        machineConfig = try c.decodeIfPresent(MachineConfig.self, forKey: .machineConfig)
        drives = try c.decodeIfPresent([Drive].self, forKey: .drives) ?? []
        networkInterfaces = try c.decodeIfPresent([NetworkInterface].self, forKey: .networkInterfaces) ?? []
        vsock = try c.decodeIfPresent(Vsock.self, forKey: .vsock)
    }

    /// Reads and parses a config file; errors name the file.
    public static func load(path: String) throws(VMMError) -> FirecrackerConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw VMMError(.configuration, "config file \(path): cannot read")
        }
        do { return try parse(data) } catch { throw VMMError(.configuration, "config file \(path): \(error.message)") }
    }

    /// Parses the JSON text; errors are one line (`line N: invalid JSON …`, `drives[1].path_on_host: missing`, …).
    public static func parse(_ data: Data) throws(VMMError) -> FirecrackerConfig {
        let config = try decode(FirecrackerConfig.self, from: data)
        try config.checkUnique()
        return config
    }

    /// Decodes one of these types (or an API request body) with the same one-line errors.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws(VMMError) -> T {
        try checkStrictly(data)
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as DecodingError {
            throw VMMError(.configuration, describe(error, data: data))
        } catch {
            throw VMMError(.configuration, "invalid JSON")
        }
    }

    /// What `decode` checks before decoding, for a caller that reads the JSON another way (a
    /// partial PATCH body): no trailing commas, duplicate keys, deep nesting or fractional numbers.
    public static func checkStrictly(_ data: Data) throws(VMMError) {
        do { try StrictJSON.check(Array(data)) } catch {
            let line = 1 + data.prefix(min(error.offset, data.count)).reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
            throw VMMError(.configuration, error.isSyntaxError ? "line \(line): invalid JSON (\(error.message))" : "line \(line): \(error.message)")
        }
    }

    func checkUnique() throws(VMMError) {
        var ids: Set<String> = []
        for (i, d) in drives.enumerated() where !ids.insert(d.driveId).inserted {
            throw VMMError(.configuration, "drives[\(i)].drive_id: duplicate '\(d.driveId)'")
        }
        let roots = drives.indices.filter { drives[$0].isRootDevice }
        if roots.count > 1 {
            throw VMMError(.configuration, "drives[\(roots[1])]: more than one root device (is_root_device)")
        }
        ids = []
        for (i, n) in networkInterfaces.enumerated() where !ids.insert(n.ifaceId).inserted {
            throw VMMError(.configuration, "network-interfaces[\(i)].iface_id: duplicate '\(n.ifaceId)'")
        }
    }

    /// The microVM this file describes: the root device (if any) is /dev/vda, the other drives follow
    /// in file order; without `root=` in boot_args, `root=/dev/vda` (or `root=PARTUUID=…`) is appended,
    /// with `ro` for a read-only root.
    public func linuxConfig() throws(VMMError) -> LinuxConfig {
        try checkUnique()
        var config = LinuxConfig(kernelPath: bootSource.kernelImagePath)
        config.initrdPath = bootSource.initrdPath
        config.cpus = machineConfig?.vcpuCount ?? 1
        config.memoryBytes = (machineConfig?.memSizeMib ?? 128) << 20
        let ordered = drives.filter(\.isRootDevice) + drives.filter { !$0.isRootDevice }
        config.disks = ordered.map { LinuxConfig.Disk(path: $0.pathOnHost, readOnly: $0.isReadOnly, id: $0.driveId) }
        var args = bootSource.bootArgs ?? LinuxConfig.defaultCommandLine
        if let root = drives.first(where: \.isRootDevice),
           !args.split(whereSeparator: \.isWhitespace).contains(where: { $0.hasPrefix("root=") }) {
            let device = root.partuuid.map { "PARTUUID=\($0)" } ?? "/dev/vda"
            args += (args.isEmpty ? "" : " ") + "root=\(device)" + (root.isReadOnly ? " ro" : "")
        }
        config.commandLine = args
        config.nets = networkInterfaces.map { LinuxConfig.Net(tap: $0.hostDevName, mac: $0.guestMac, id: $0.ifaceId) }
        config.vsock = vsock.map { LinuxConfig.Vsock(cid: $0.guestCid, uds: $0.udsPath) }
        return config
    }

    /// The same file read for a Solo5 hvt unikernel: drives are manifest block devices named by
    /// drive_id, network interfaces manifest net devices named by iface_id, boot_args the
    /// unikernel's arguments. One vCPU, no initrd, no vsock.
    public func hvtConfig() throws(VMMError) -> HvtConfig {
        try checkUnique()
        guard (machineConfig?.vcpuCount ?? 1) == 1 else { throw VMMError(.configuration, "machine-config.vcpu_count: a Solo5 unikernel has exactly 1 vCPU") }
        guard bootSource.initrdPath == nil else { throw VMMError(.configuration, "boot-source.initrd_path: a Solo5 unikernel takes no initrd") }
        guard vsock == nil else { throw VMMError(.configuration, "vsock: a Solo5 unikernel has no vsock device") }
        var config = HvtConfig(kernelPath: bootSource.kernelImagePath)
        config.memoryMiB = machineConfig?.memSizeMib ?? 128
        config.blocks = drives.map { HvtConfig.Block(name: $0.driveId, path: $0.pathOnHost, readOnly: $0.isReadOnly) }
        config.nets = networkInterfaces.map { HvtConfig.Net(name: $0.ifaceId, interface: $0.hostDevName, mac: $0.guestMac) }
        config.arguments = (bootSource.bootArgs ?? "").split(whereSeparator: \.isWhitespace).map(String.init)
        return config
    }

    // MARK: - Error messages

    static func path(_ codingPath: [any CodingKey]) -> String {
        var out = ""
        for key in codingPath {
            if let i = key.intValue { out += "[\(i)]" } else { out += (out.isEmpty ? "" : ".") + key.stringValue }
        }
        return out
    }

    static func describe(_ error: DecodingError, data: Data) -> String {
        func at(_ codingPath: [any CodingKey]) -> String { codingPath.isEmpty ? "top level" : path(codingPath) }
        switch error {
        case .keyNotFound(let key, let context):
            return "\(path(context.codingPath + [key])): missing"
        case .typeMismatch(let type, let context):
            return "\(at(context.codingPath)): expected \(typeName(type))"
        case .valueNotFound(let type, let context):
            return "\(at(context.codingPath)): expected \(typeName(type)), found null"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty, !(context.underlyingError is UnknownKey) {
                // Valid JSON that does not fit (a negative or huge number for an unsigned field):
                // JSONDecoder reports it at the top level; say what it said.
                if (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil {
                    return "value out of range (\(context.debugDescription))"
                }
                return syntaxError(data, underlying: context.underlyingError)
            }
            return "\(at(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "invalid config"
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is Int.Type, is UInt64.Type: "an unsigned integer"
        case is [Any].Type: "an array"
        default: "an object"
        }
    }

    /// `line N: invalid JSON (…)` when a byte offset can be found, else `invalid JSON`.
    static func syntaxError(_ data: Data, underlying: (any Error)?) -> String {
        var index: Int?
        var detail: String?
        var errors: [NSError] = []
        if let underlying { errors.append(underlying as NSError) }
        // JSONDecoder on Linux carries no position; JSONSerialization's error does ("around character N").
        do { _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) } catch { errors.append(error as NSError) }
        for e in errors where index == nil {
            if let i = e.userInfo["NSJSONSerializationErrorIndex"] as? Int { index = i }
            let text = (e.userInfo[NSDebugDescriptionErrorKey] as? String) ?? ""
            if detail == nil, !text.isEmpty { detail = text.hasSuffix(".") ? String(text.dropLast()) : text }
            if index == nil, let r = text.range(of: "character ") {
                index = Int(text[r.upperBound...].prefix(while: \.isNumber))
            }
            if detail?.contains("end of file") == true { index = data.count }
        }
        let suffix = detail.map { " (\($0))" } ?? ""
        guard let index, index >= 0 else { return "invalid JSON" + suffix }
        let line = 1 + data.prefix(min(index, data.count)).reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
        return "line \(line): invalid JSON" + suffix
    }
}

extension KeyedDecodingContainer {
    /// A file or device path: a NUL byte would silently cut it short at the system call.
    public func decodePath(_ key: Key) throws -> String {
        let path = try decode(String.self, forKey: key)
        guard !path.utf8.contains(0) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "must not contain a NUL character")
        }
        return path
    }

    public func decodePathIfPresent(_ key: Key) throws -> String? {
        try contains(key) && !decodeNil(forKey: key) ? decodePath(key) : nil
    }
}

/// Marks the error thrown for an unknown key (so it is not taken for a syntax error at the top level).
struct UnknownKey: Error {}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// A keyed container that first rejects any key not in `Keys` (Firecracker rejects unknown fields).
public func strictContainer<Keys: CodingKey & CaseIterable>(_ decoder: any Decoder, _: Keys.Type) throws -> KeyedDecodingContainer<Keys> {
    let any = try decoder.container(keyedBy: AnyKey.self)
    let allowed = Set(Keys.allCases.map(\.stringValue))
    for key in any.allKeys.sorted(by: { $0.stringValue < $1.stringValue }) where !allowed.contains(key.stringValue) {
        throw DecodingError.dataCorrupted(.init(codingPath: any.codingPath,
            debugDescription: "unknown key '\(key.stringValue)'", underlyingError: UnknownKey()))
    }
    return try decoder.container(keyedBy: Keys.self)
}
