import Foundation
import Host
import VMSpec

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
    /// Extensions (`--extension` of `swiftlet api`), in order: a program is started inside the
    /// VM's jail, as its user, under the extension filter (docs/abi.md, "Extensions").
    public var extensions: [ExtensionSpec]
    public var autostart: Bool

    public static let defaultMemoryMiB = Int(FirecrackerConfig.MachineConfig.defaultMemSizeMib)

    public init(kernel: String, initrd: String? = nil, cmdline: String? = nil, memoryMiB: Int = VMDefinition.defaultMemoryMiB,
                cpus: Int = 1, disks: [Disk] = [], networks: [Network] = [], vsock: Vsock? = nil, extensions: [ExtensionSpec] = [],
                autostart: Bool = false) {
        self.kernel = kernel; self.initrd = initrd; self.cmdline = cmdline; self.memoryMiB = memoryMiB
        self.cpus = cpus; self.disks = disks; self.networks = networks; self.vsock = vsock; self.extensions = extensions
        self.autostart = autostart
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kernel, initrd, cmdline, memory, cpus, disks, networks, vsock, extensions, autostart
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
        // Read as text first: Yams' own Int reading takes YAML 1.1's base 60 (`1:2:3`) and traps
        // on overflow (fuzz target daemon-config); a JSON body gives a number.
        if let text = try? c.decodeIfPresent(String.self, forKey: .cpus) {
            guard let n = Int(text) else { throw invalid(c, .cpus, "'\(text.printable)' is not a number of vCPUs (1 to 255)") }
            cpus = n
        } else {
            cpus = try c.decodeIfPresent(Int.self, forKey: .cpus) ?? 1
        }
        guard (1...255).contains(cpus) else { throw invalid(c, .cpus, "\(cpus) is out of range (1 to 255)") }
        disks = try c.decodeIfPresent([Disk].self, forKey: .disks) ?? []
        if verify {
            for (index, disk) in disks.enumerated() {
                if let problem = ImageFile.problem(at: disk.path, blockDeviceAllowed: true) {
                    throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [CodingKeys.disks, IndexKey(index)],
                                                            debugDescription: "\(disk.path.printable): \(problem)"))
                }
            }
        }
        networks = try c.decodeIfPresent([Network].self, forKey: .networks) ?? []
        vsock = try c.decodeIfPresent(Vsock.self, forKey: .vsock)
        extensions = try c.decodeIfPresent([ExtensionSpec].self, forKey: .extensions) ?? []
        if verify {
            for (index, spec) in extensions.enumerated() {
                guard case .program(let program, _) = spec.origin else { continue }
                // The daemon starts it, whatever its own directory: the path must be whole.
                guard program.hasPrefix("/"), FileSystem.isExecutable(program) else {
                    throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [CodingKeys.extensions, IndexKey(index)],
                                                            debugDescription: "\(program.printable): not an absolute path to an executable file"))
                }
            }
        }
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
        if !extensions.isEmpty { try c.encode(extensions, forKey: .extensions) }
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
package struct MemoryMiB: Decodable {
    package var mib: Int

    package static let maximumMiB = Int(FirecrackerConfig.MachineConfig.maximumMemoryMiB)

    package init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let text: String
        // Text first, as for cpus: Yams' Int reading traps on a base-60 `1:1:…:1` that overflows.
        if let t = try? c.decode(String.self) { text = t } else { text = String(try c.decode(Int.self)) }
        guard let mib = MemoryMiB.parseMiB(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                debugDescription: "'\(text.printable)' is not a memory size of 1 MiB to 1 TiB in whole MiB (e.g. 256M, 2G, or a number of MiB)"))
        }
        self.mib = mib
    }

    /// `256M` → 256, `2G` → 2048, `4096K` → 4, `64` → 64; nil when malformed, zero, not whole
    /// MiB, or over 1 TiB.
    package static func parseMiB(_ text: String) -> Int? {
        guard let bytes = MemorySize.bytes(text), bytes % (1 << 20) == 0, bytes >> 20 <= UInt64(maximumMiB) else { return nil }
        return Int(bytes >> 20)
    }
}

// MARK: - strict keys and readable errors

/// A coding key for any string (the VM names under `vms`, unknown keys).
package struct AnyKey: CodingKey {
    package var stringValue: String
    package var intValue: Int?
    package init(stringValue: String) { self.stringValue = stringValue }
    package init?(intValue: Int) { stringValue = String(intValue); self.intValue = intValue }
}

extension CodingUserInfoKey {
    /// Set to `false` to decode a ``VMDefinition`` without checking that its files exist (a state
    /// file of a running VM must load even when its kernel file was removed since).
    public static let verifyFiles = CodingUserInfoKey(rawValue: "swiftlet.verifyFiles")!
}

package func verifiesFiles(_ decoder: any Decoder) -> Bool { decoder.userInfo[.verifyFiles] as? Bool ?? true }

/// Throws a DecodingError naming the first key not in `known` (typos must not be silently ignored).
package func rejectUnknownKeys(_ decoder: any Decoder, known: [String]) throws {
    let c = try decoder.container(keyedBy: AnyKey.self)
    for key in c.allKeys.sorted(by: { $0.stringValue < $1.stringValue }) where !known.contains(key.stringValue) {
        throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [key],
            debugDescription: "unknown key '\(key.stringValue.printable)' (known keys: \(known.joined(separator: ", ")))"))
    }
}

/// An array position in a coding path (`disks[1]`).
package struct IndexKey: CodingKey {
    package var intValue: Int?
    package var stringValue: String { "\(intValue ?? 0)" }
    package init(_ index: Int) { intValue = index }
    package init?(intValue: Int) { self.intValue = intValue }
    package init?(stringValue: String) { nil }
}

package func invalid<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ key: K, _ message: String) -> DecodingError {
    DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [key], debugDescription: message))
}

package func requireFile<K: CodingKey>(_ path: String, _ c: KeyedDecodingContainer<K>, _ key: K) throws {
    guard !path.isEmpty else { throw invalid(c, key, "must not be empty") }
    if let problem = ImageFile.problem(at: path) { throw invalid(c, key, "\(path.printable): \(problem)") }
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
package func render(_ path: [any CodingKey]) -> String {
    var s = ""
    for key in path {
        if let i = key.intValue { s += "[\(i)]" } else { s += s.isEmpty ? key.stringValue.printable : ".\(key.stringValue.printable)" }
    }
    return s
}

/// One line for a Codable error: `line N: vms.web.cpus: 300 is out of range (1 to 255)`.
/// `lineOf` (when the text was YAML, whose parser knows lines) maps the coding path to a line.
package func describe(_ error: DecodingError, lineOf: (([any CodingKey]) -> Int?)? = nil) -> String {
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
        what = "missing key '\(key.stringValue.printable)'"
    case .dataCorrupted(let context):
        path = context.codingPath
        what = context.debugDescription
    @unknown default:
        return "\(error)"
    }
    var prefix = ""
    if let line = lineOf?(path) { prefix = "line \(line): " }
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

