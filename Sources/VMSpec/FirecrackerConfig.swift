/// Firecracker's JSON schema (API v1.x: `--config-file` and the request bodies of `PUT
/// /boot-source`, `/machine-config`, `/drives`, `/network-interfaces`, `/vsock`), written once
/// for every door: the VMM maps it onto its machines, the API process decodes requests into it,
/// swiftletd encodes it to configure a VM process.
///
/// Supported sections: `boot-source`, `machine-config`, `drives`, `network-interfaces`, `vsock`.
/// The sections `logger`, `metrics`, `balloon` and `mmds-config` are accepted but ignored
/// (their contents are not checked), as are the machine-config fields `smt` and
/// `track_dirty_pages` and the drive fields `partuuid` (except to name the root device),
/// `cache_type` and `io_engine`. Like Firecracker, any other key, at any level, is an error.
///
/// Decoding is strict and validates every field (ranges, NUL-free paths, unicast MACs, drive and
/// interface ids); JSON itself is read by the caller (the VMM's `FirecrackerConfig.parse`), so
/// this target needs no Foundation.
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

    public struct BootSource: Codable, Sendable, Equatable {
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
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(kernelImagePath, forKey: .kernelImagePath)
            try c.encodeIfPresent(initrdPath, forKey: .initrdPath)
            try c.encodeIfPresent(bootArgs, forKey: .bootArgs)
        }
    }

    public struct MachineConfig: Codable, Sendable, Equatable {
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
        /// 1 TiB: more is a typo, not a VM.
        public static let maximumMemoryMiB: UInt64 = 1 << 20
        /// Firecracker's default when machine-config (or swiftletd's `memory:`) says nothing.
        public static let defaultMemSizeMib: UInt64 = 128
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
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(vcpuCount, forKey: .vcpuCount)
            try c.encode(memSizeMib, forKey: .memSizeMib)
            try c.encodeIfPresent(smt, forKey: .smt)
            try c.encodeIfPresent(trackDirtyPages, forKey: .trackDirtyPages)
            try c.encodeIfPresent(hugePages, forKey: .hugePages)
        }
    }

    public struct Drive: Codable, Sendable, Equatable {
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
        public init(driveId: String, pathOnHost: String, isRootDevice: Bool = false, isReadOnly: Bool = false) {
            self.driveId = driveId; self.pathOnHost = pathOnHost; self.isRootDevice = isRootDevice; self.isReadOnly = isReadOnly
        }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(driveId, forKey: .driveId)
            try c.encode(pathOnHost, forKey: .pathOnHost)
            try c.encode(isRootDevice, forKey: .isRootDevice)
            try c.encode(isReadOnly, forKey: .isReadOnly)
            try c.encodeIfPresent(partuuid, forKey: .partuuid)
            try c.encodeIfPresent(cacheType, forKey: .cacheType)
            try c.encodeIfPresent(ioEngine, forKey: .ioEngine)
        }
        public init(from decoder: any Decoder) throws {
            let c = try strictContainer(decoder, CodingKeys.self)
            driveId = try c.decodeDeviceName(.driveId)
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

    public struct NetworkInterface: Codable, Sendable, Equatable {
        public var ifaceId: String
        public var hostDevName: String
        /// A unicast MAC; nil: the VMM picks a random one.
        public var guestMac: MACAddress?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case ifaceId = "iface_id", hostDevName = "host_dev_name", guestMac = "guest_mac"
        }
        public init(ifaceId: String, hostDevName: String, guestMac: MACAddress? = nil) {
            self.ifaceId = ifaceId; self.hostDevName = hostDevName; self.guestMac = guestMac
        }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(ifaceId, forKey: .ifaceId)
            try c.encode(hostDevName, forKey: .hostDevName)
            try c.encodeIfPresent(guestMac?.description, forKey: .guestMac)
        }
        public init(from decoder: any Decoder) throws {
            let c = try strictContainer(decoder, CodingKeys.self)
            ifaceId = try c.decodeDeviceName(.ifaceId)
            hostDevName = try c.decodePath(.hostDevName)
            if let text = try c.decodeIfPresent(String.self, forKey: .guestMac) {
                guard let mac = MACAddress(text), mac.isUnicast else {
                    throw DecodingError.dataCorruptedError(forKey: .guestMac, in: c,
                        debugDescription: "'\(text)' is not a unicast MAC (XX:XX:XX:XX:XX:XX)")
                }
                guestMac = mac
            }
        }
    }

    public struct Vsock: Codable, Sendable, Equatable {
        /// The guest's CID: 32 bits, as Firecracker's (0-2 are reserved, 2^32-1 is "any").
        public var guestCid: UInt32
        public var udsPath: String
        public var vsockId: String?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case guestCid = "guest_cid", udsPath = "uds_path", vsockId = "vsock_id"
        }
        public init(guestCid: UInt32, udsPath: String, vsockId: String? = nil) {
            self.guestCid = guestCid; self.udsPath = udsPath; self.vsockId = vsockId
        }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(guestCid, forKey: .guestCid)
            try c.encode(udsPath, forKey: .udsPath)
            try c.encodeIfPresent(vsockId, forKey: .vsockId)
        }
        public init(from decoder: any Decoder) throws {
            let c = try strictContainer(decoder, CodingKeys.self)
            let cid = try c.decode(UInt64.self, forKey: .guestCid)
            udsPath = try c.decodePath(.udsPath)
            vsockId = try c.decodeIfPresent(String.self, forKey: .vsockId)
            guard VsockSpec.isValidCID(cid) else {
                throw DecodingError.dataCorruptedError(forKey: .guestCid, in: c, debugDescription: "must be in 3...4294967294")
            }
            guestCid = UInt32(cid)
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

    /// A drive or interface id: checked here, where the config file and every API body are
    /// decoded, by the one rule (DeviceName) that the API's URL paths and the CLI's `id=` use too.
    public func decodeDeviceName(_ key: Key) throws -> String {
        let name = try decode(String.self, forKey: key)
        guard DeviceName.isValid(name) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "'\(name.printable)' is not an id (\(DeviceName.form))")
        }
        return name
    }

    public func decodePathIfPresent(_ key: Key) throws -> String? {
        try contains(key) && !decodeNil(forKey: key) ? decodePath(key) : nil
    }
}

/// Marks the error thrown for an unknown key (so it is not taken for a syntax error at the top level).
public struct UnknownKey: Error {
    public init() {}
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension CodingUserInfoKey {
    /// Set to `true` where a null must not stand for a field left out: the API's request bodies,
    /// whose schema (api/swiftlet-vm-api.yaml) makes no field nullable. A config file may say
    /// `"partuuid": null`, as Firecracker's own example configs do.
    public static let refusesNull = CodingUserInfoKey(rawValue: "swiftlet.refusesNull")!
}

/// A keyed container that first rejects any key not in `Keys` (Firecracker rejects unknown fields)
/// and, where the decoder's ``CodingUserInfoKey/refusesNull`` says so, any field that is null.
public func strictContainer<Keys: CodingKey & CaseIterable>(_ decoder: any Decoder, _: Keys.Type) throws -> KeyedDecodingContainer<Keys> {
    let any = try decoder.container(keyedBy: AnyKey.self)
    let allowed = Set(Keys.allCases.map(\.stringValue))
    let keys = any.allKeys.sorted(by: { $0.stringValue < $1.stringValue })
    for key in keys where !allowed.contains(key.stringValue) {
        throw DecodingError.dataCorrupted(.init(codingPath: any.codingPath,
            debugDescription: "unknown key '\(key.stringValue.printable)'", underlyingError: UnknownKey()))
    }
    if decoder.userInfo[.refusesNull] as? Bool == true {
        for key in keys where try any.decodeNil(forKey: key) {
            throw DecodingError.dataCorrupted(.init(codingPath: any.codingPath + [key], debugDescription: "must not be null"))
        }
    }
    return try decoder.container(keyedBy: Keys.self)
}
