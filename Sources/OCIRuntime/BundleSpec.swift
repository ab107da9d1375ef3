import FoundationEssentials
import Host
import VMSpec

/// The part of an OCI bundle's `config.json` (OCI runtime spec 1.x, config.md and
/// config-linux.md) a VM needs: the process's arguments and terminal, the root file system, the
/// annotations that name the guest, the namespaces to join or create, the cgroup and the memory
/// limit. Every other field is ignored, as a VM has no use for it (mounts, capabilities, rlimits,
/// seccomp of a process that never runs: the VMM brings its own).
public struct BundleSpec: Decodable, Sendable, Equatable {
    public var ociVersion: String
    public var process: Process?
    public var root: Root?
    public var annotations: [String: String]?
    public var linux: Linux?

    /// `process`: what the container would run; for a VM, its arguments become the guest's.
    public struct Process: Decodable, Sendable, Equatable {
        public var terminal: Bool?
        public var args: [String]?
        public var env: [String]?
    }

    /// `root`: the root file system, relative to the bundle or absolute.
    public struct Root: Decodable, Sendable, Equatable {
        public var path: String
        public var readonly: Bool?
    }

    /// `linux`: namespaces, the cgroup path and resources.
    public struct Linux: Decodable, Sendable, Equatable {
        public var namespaces: [Namespace]?
        public var cgroupsPath: String?
        public var resources: Resources?
    }

    /// One namespace: created (no path) or joined (`path`, e.g. CNI's network namespace).
    public struct Namespace: Decodable, Sendable, Equatable {
        public var type: String
        public var path: String?
    }

    /// `linux.resources`: only the memory limit and the CPU share are read.
    public struct Resources: Decodable, Sendable, Equatable {
        public var memory: Memory?
        public var cpu: CPU?
        public struct Memory: Decodable, Sendable, Equatable { public var limit: Int64? }
        public struct CPU: Decodable, Sendable, Equatable {
            public var quota: Int64?
            public var period: UInt64?
        }
    }

    /// Parses `config.json`'s text; errors are one line.
    public static func parse(_ data: Data) throws(OCIError) -> BundleSpec {
        do {
            return try JSONDecoder().decode(BundleSpec.self, from: data)
        } catch let error as DecodingError {
            throw OCIError("config.json: \(Self.describe(error))")
        } catch {
            throw OCIError("config.json: \(error)")
        }
    }

    /// The largest config.json read (runc's are a few KiB; a spec with every hook and mount is
    /// well below this).
    public static let maximumBytes = 4 << 20

    /// Reads `DIR/config.json`.
    public static func load(bundle: String) throws(OCIError) -> BundleSpec {
        let path = bundle + "/config.json"
        switch FileSystem.kind(of: path) {
        case .regular: break
        case .missing: throw OCIError("\(path): cannot read (is --bundle an OCI bundle?)")
        default: throw OCIError("\(path): not a regular file")
        }
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int, size > maximumBytes {
            throw OCIError("\(path): larger than \(maximumBytes >> 20) MiB")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw OCIError("\(bundle)/config.json: cannot read (is --bundle an OCI bundle?)")
        }
        return try parse(data)
    }

    /// The absolute path of the root file system.
    public func rootfs(bundle: String) throws(OCIError) -> String {
        guard let path = root?.path, !path.isEmpty else { throw OCIError("config.json: root.path is missing") }
        return path.hasPrefix("/") ? path : bundle + "/" + path
    }

    /// The namespace of `type` ("network", "pid", …) the spec lists, if any.
    public func namespace(_ type: String) -> Namespace? { linux?.namespaces?.first { $0.type == type } }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? "." + $0.stringValue.printable }.joined().trimmingPrefix(".").description
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(path(context.codingPath + [key])): missing"
        case .typeMismatch(_, let context), .valueNotFound(_, let context): return "\(path(context.codingPath)): wrong type"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "not valid JSON" : "\(path(context.codingPath)): \(context.debugDescription.printable)"
        @unknown default: return "unreadable"
        }
    }
}

/// A runtime error: one line, as runc prints it and logs it for the shim.
public struct OCIError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    /// `message` is one line: text from a bundle, an image or a command line that reaches it
    /// should be escaped where it is put in (`printable`); a control character that got through
    /// anyway escapes the whole message.
    public init(_ message: String) {
        self.message = message.unicodeScalars.contains { $0.properties.generalCategory == .control || $0 == "\u{2028}" || $0 == "\u{2029}" }
            ? message.printable : message
    }
    public var description: String { message }
}
