import CHost
#if canImport(Glibc)
import Glibc
#endif

/// Paths on the host's file system: the one place our code calls unlink, rename, access, lstat and
/// readlink on a path.
public enum FileSystem {
    /// What is at a path, without following a final symbolic link.
    public enum Kind: Sendable, Equatable { case missing, regular, directory, socket, fifo, symbolicLink, other }

    /// Removes `path` (unlink); a path that is already gone is no error.
    public static func remove(_ path: String) throws(HostError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw HostError("remove \(path)", errno: errno) }
    }

    /// Removes each of `paths` that exists, ignoring failures (clean-up on the way out).
    public static func removeIfPresent(_ paths: [String]) {
        for path in paths { _ = unlink(path) }
    }

    /// Renames `from` to `to`, replacing `to` atomically.
    public static func rename(_ from: String, to: String) throws(HostError) {
        guard Glibc.rename(from, to) == 0 else { throw HostError("rename \(from) to \(to)", errno: errno) }
    }

    /// What `path` is (lstat).
    public static func kind(of path: String) -> Kind {
        var info = stat()
        guard lstat(path, &info) == 0 else { return .missing }
        switch info.st_mode & S_IFMT {
        case S_IFREG: return .regular
        case S_IFDIR: return .directory
        case S_IFSOCK: return .socket
        case S_IFIFO: return .fifo
        case S_IFLNK: return .symbolicLink
        default: return .other
        }
    }

    /// Checks that the calling process may write into (create files in) `path`; the error names
    /// why not (EACCES, EROFS, ...).
    public static func checkWritable(_ path: String) throws(HostError) {
        guard access(path, W_OK) == 0 else { throw HostError(path, errno: errno) }
    }

    /// Whether the calling process may execute `path`.
    public static func isExecutable(_ path: String) -> Bool { access(path, X_OK) == 0 }

    /// The target of symbolic link `path` (readlink), e.g. /proc/self/exe.
    public static func linkTarget(_ path: String) throws(HostError) -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { throw HostError("readlink \(path)", errno: errno) }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Makes the directory `path` (mkdir, `mode` less the umask); EEXIST when something is there.
    public static func makeDirectory(_ path: String, mode: mode_t = 0o755) throws(HostError) {
        guard mkdir(path, mode) == 0 else { throw HostError("mkdir \(path)", errno: errno) }
    }

    /// mkdir -p: makes `path` and every missing parent; an existing directory is no error.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(HostError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, mode) != 0 && errno != EEXIST { throw HostError("mkdir \(current)", errno: errno) }
        }
        guard kind(of: path) == .directory else { throw HostError("mkdir \(path)", errno: ENOTDIR) }
    }

    /// Removes the empty directory `path` (rmdir).
    public static func removeDirectory(_ path: String) throws(HostError) {
        guard rmdir(path) == 0 else { throw HostError("rmdir \(path)", errno: errno) }
    }

    /// Makes a FIFO (named pipe) at `path`.
    public static func makeFIFO(_ path: String, mode: mode_t) throws(HostError) {
        guard mkfifo(path, mode) == 0 else { throw HostError("mkfifo \(path)", errno: errno) }
    }

    /// Opens `path` as a directory (O_DIRECTORY): fails with ENOTDIR for anything else.
    public static func openDirectory(_ path: String) throws(HostError) -> FileDescriptor {
        try FileDescriptor.open(path, flags: O_RDONLY | O_DIRECTORY)
    }
}

/// This process.
public enum CurrentProcess {
    /// Its process ID.
    public static var id: Int32 { getpid() }
}

extension CurrentProcess {
    /// Whether it runs with effective user ID 0.
    public static var isRoot: Bool { geteuid() == 0 }
}
