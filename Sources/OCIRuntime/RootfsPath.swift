import Host
import VMSpec

/// A path inside a container's root file system, resolved the way the container would see it:
/// `..` stops at the root and a symbolic link, absolute or relative, is followed *inside* the root
/// (openat2's RESOLVE_IN_ROOT), so an image cannot name a host file such as /etc/shadow through
/// `kernel -> /../../etc/shadow`. The result is a host path with no symbolic link in it.
public enum RootfsPath {
    /// Links followed at most (Linux's own limit, MAXSYMLINKS).
    static let maximumLinks = 40

    /// The host path of `path` inside `root` (an absolute host path). `lookup` says what a host
    /// path is and reads a link (the file system; tests give their own).
    public static func resolve(_ path: String, in root: String,
                               kind: (String) -> FileSystem.Kind = FileSystem.kind(of:),
                               linkTarget: (String) -> String? = { try? FileSystem.linkTarget($0) }) throws(OCIError) -> String {
        let base = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
        var resolved: [Substring] = []
        var pending = path.split(separator: "/")[...]
        var links = 0
        while let component = pending.popFirst() {
            switch component {
            case ".": continue
            case "..": _ = resolved.popLast()
            default:
                let host = base + "/" + (resolved + [component]).joined(separator: "/")
                if kind(host) == .symbolicLink {
                    links += 1
                    guard links <= maximumLinks, let target = linkTarget(host) else {
                        throw OCIError("\(path.printable): too many symbolic links inside the root file system")
                    }
                    if target.hasPrefix("/") { resolved = [] }
                    pending = target.split(separator: "/")[...] + pending
                } else {
                    resolved.append(component)
                }
            }
        }
        return base + "/" + resolved.joined(separator: "/")
    }

    /// `resolve`, then the result must be a regular file (a kernel, an initrd, a disk image).
    public static func regularFile(_ path: String, in root: String, for purpose: String) throws(OCIError) -> String {
        let host = try resolve(path, in: root)
        switch FileSystem.kind(of: host) {
        case .regular: return host
        case .missing: throw OCIError("\(purpose) \(path.printable): no such file in the root file system")
        default: throw OCIError("\(purpose) \(path.printable): not a regular file")
        }
    }
}
