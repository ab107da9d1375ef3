import Foundation
import VMSpec

/// Reading Firecracker's config (JSONDecoder: the startup path, not the VMM hot path) and mapping
/// it onto the VMM's machines.
extension FirecrackerConfig {
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
        config.source = .firecracker
        config.initrdPath = bootSource.initrdPath
        config.cpus = machineConfig?.vcpuCount ?? 1
        config.memoryBytes = (machineConfig?.memSizeMib ?? MachineConfig.defaultMemSizeMib) << 20
        let ordered = drives.filter(\.isRootDevice) + drives.filter { !$0.isRootDevice }
        config.disks = ordered.map { LinuxConfig.Disk(path: $0.pathOnHost, readOnly: $0.isReadOnly, id: $0.driveId) }
        var args = bootSource.bootArgs ?? LinuxConfig.defaultCommandLine
        if let root = drives.first(where: \.isRootDevice),
           !args.split(whereSeparator: \.isWhitespace).contains(where: { $0.hasPrefix("root=") }) {
            let device = root.partuuid.map { "PARTUUID=\($0)" } ?? "/dev/vda"
            args += (args.isEmpty ? "" : " ") + "root=\(device)" + (root.isReadOnly ? " ro" : "")
        }
        config.commandLine = args
        config.nets = networkInterfaces.map { LinuxConfig.Net(tap: $0.hostDevName, mac: $0.guestMac?.bytes, id: $0.ifaceId) }
        config.vsock = vsock.map { LinuxConfig.Vsock(cid: UInt64($0.guestCid), uds: $0.udsPath) }
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
        config.memoryMiB = machineConfig?.memSizeMib ?? MachineConfig.defaultMemSizeMib
        config.blocks = drives.map { HvtConfig.Block(name: $0.driveId, path: $0.pathOnHost, readOnly: $0.isReadOnly) }
        config.nets = networkInterfaces.map { HvtConfig.Net(name: $0.ifaceId, interface: $0.hostDevName, mac: $0.guestMac?.bytes) }
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

