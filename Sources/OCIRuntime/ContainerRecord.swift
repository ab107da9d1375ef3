import FoundationEssentials
import Host
#if canImport(Glibc)
import Glibc
#endif

/// What `swiftlet oci` remembers of one container between its commands (runc keeps the same in
/// `--root`/ID/state.json): written by `create`, updated by `start`, `pause` and `resume`, read by
/// every command, removed by `delete`. The VM process is named by pid and start time, so a
/// recycled pid never passes for it.
public struct ContainerRecord: Codable, Sendable, Equatable {
    public var id: String
    public var bundle: String
    public var rootfs: String
    public var pid: Int32
    public var startTicks: UInt64
    /// RFC 3339, UTC.
    public var created: String
    public var annotations: [String: String]
    public var started = false
    public var paused = false
    /// The cgroup directories the container's VM process was put in (removed at delete).
    public var cgroups: [String] = []
    /// The interface mirrored to the tap made in the container's network namespace, and that
    /// namespace (the tap and the mirroring are removed at delete).
    public var mirroredInterface: String?
    public var networkNamespace: String?

    public init(id: String, bundle: String, rootfs: String, pid: Int32, startTicks: UInt64, created: String, annotations: [String: String]) {
        self.id = id; self.bundle = bundle; self.rootfs = rootfs; self.pid = pid; self.startTicks = startTicks
        self.created = created; self.annotations = annotations
    }

    /// The OCI status (runtime spec, "State"): `stopped` once the VM process is gone (or a zombie
    /// waiting for its parent, the shim, to reap it).
    public func status(isRunning: (ProcessIdentity) -> Bool = { $0.isRunning }) -> String {
        guard isRunning(ProcessIdentity(pid: pid, startTicks: startTicks)) else { return "stopped" }
        return paused ? "paused" : started ? "running" : "created"
    }

    /// `swiftlet oci state`'s document: runc's fields (OCI's state plus `created` and `owner`).
    public func stateJSON(status: String) -> String {
        struct State: Encodable {
            var ociVersion: String
            var id: String
            var pid: Int32
            var status: String
            var bundle: String
            var rootfs: String
            var created: String
            var owner: String
            var annotations: [String: String]?
        }
        let state = State(ociVersion: OCIRuntime.ociVersion, id: id, pid: status == "stopped" ? 0 : pid, status: status, bundle: bundle,
                          rootfs: rootfs, created: created, owner: "", annotations: annotations.isEmpty ? nil : annotations)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(state)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

/// The containers under one `--root` (runc's default /run/runc; ours /run/swiftlet-oci; the
/// containerd shim passes /run/containerd/runc/NAMESPACE): a directory per container ID, holding
/// state.json and, between create and start, the exec FIFO the VM process waits on.
public struct ContainerStore: Sendable {
    public let root: String

    public static let defaultRoot = "/run/swiftlet-oci"

    public init(root: String) { self.root = root }

    public func directory(_ id: String) -> String { root + "/" + id }
    public func fifo(_ id: String) -> String { directory(id) + "/exec.fifo" }

    /// runc's rule for IDs: letters, digits and `_ + - .`, not `.` or `..` (an ID is a path component).
    public static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id != "." && id != ".." && id.utf8.count <= 1024
            && id.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || [0x5F, 0x2B, 0x2D, 0x2E].contains($0) }
    }

    /// Makes the container's directory; an existing one is runc's "already exists" error.
    public func claim(_ id: String) throws(OCIError) {
        guard Self.isValidID(id) else { throw OCIError("invalid container id format: \(id.printable)") }
        do { try FileSystem.makeDirectories(root, mode: 0o711) } catch { throw OCIError("--root \(root): \(error)") }
        do { try FileSystem.makeDirectory(directory(id), mode: 0o711) } catch {
            throw error.errno == EEXIST ? OCIError("container with id exists: \(id)") : OCIError("\(directory(id)): \(error)")
        }
    }

    public func load(_ id: String) throws(OCIError) -> ContainerRecord {
        guard Self.isValidID(id) else { throw OCIError("invalid container id format: \(id.printable)") }
        guard let data = FileManager.default.contents(atPath: directory(id) + "/state.json") else {
            throw OCIError("container \"\(id)\" does not exist")
        }
        do { return try JSONDecoder().decode(ContainerRecord.self, from: data) } catch {
            throw OCIError("container \"\(id)\": its state file is damaged (\(directory(id))/state.json)")
        }
    }

    /// Writes the record whole (a temporary file renamed over the old one).
    public func save(_ record: ContainerRecord) throws(OCIError) {
        let path = directory(record.id) + "/state.json"
        do { try JSONEncoder().encode(record).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw OCIError("\(path): cannot write (\(error))")
        }
    }

    /// Removes the container's directory and what is in it.
    public func remove(_ id: String) {
        _ = try? FileManager.default.removeItem(atPath: directory(id))
    }

    /// The IDs under the root.
    public func ids() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter(Self.isValidID).sorted()
    }
}
