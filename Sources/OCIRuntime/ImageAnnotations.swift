import FoundationEssentials
import Host

/// Annotations an image carries in its root file system, for runtimes that get no image
/// annotations in the spec (ctr and the CRI pass none): `/swiftlet.json` (scripts/oci-image
/// writes it; plain `org.swiftlet.*` values) and urunc's `/urunc.json` (`com.urunc.unikernel.*`,
/// values in base64, with or without a `b64:` prefix, else plain text, as urunc reads them). The spec's own
/// annotations win over both.
public enum ImageAnnotations {
    /// At most this much of either file is read.
    static let maximumBytes = 64 * 1024

    /// `spec`'s annotations over those of the files in `rootfs`.
    public static func merged(_ spec: [String: String], rootfs: String) throws(OCIError) -> [String: String] {
        var merged: [String: String] = [:]
        for (key, value) in try file("/urunc.json", in: rootfs) where key.hasPrefix(GuestSpec.uruncPrefix) {
            merged[key] = decodeURunc(value)
        }
        for (key, value) in try file("/swiftlet.json", in: rootfs) where key.hasPrefix(GuestSpec.prefix) { merged[key] = value }
        merged.merge(spec) { $1 }
        return merged
    }

    /// urunc's value encoding: base64 (optionally after `b64:`), else the text itself.
    static func decodeURunc(_ value: String) -> String {
        let body = value.hasPrefix("b64:") ? String(value.dropFirst(4)) : value
        if let data = Data(base64Encoded: body), let text = String(data: data, encoding: .utf8), !text.isEmpty { return text }
        return value
    }

    /// A JSON object of strings at `path` inside the rootfs; empty when there is no such file.
    static func file(_ path: String, in rootfs: String) throws(OCIError) -> [String: String] {
        let host = try RootfsPath.resolve(path, in: rootfs)
        guard FileSystem.kind(of: host) == .regular else { return [:] }
        guard let data = FileManager.default.contents(atPath: host), data.count <= maximumBytes else {
            throw OCIError("\(path) in the image: unreadable or larger than \(maximumBytes / 1024) KiB")
        }
        guard let object = try? JSONDecoder().decode([String: String].self, from: data) else {
            throw OCIError("\(path) in the image: not a JSON object of strings")
        }
        return object
    }
}
