import Host
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One daemon per state directory: two daemons adopting the same VMs would fight over them.
public enum DaemonLock {
    /// Creates the state directory if needed and takes an exclusive flock on `swiftletd.lock` in
    /// it. Returns the fd (hold it open while the daemon runs).
    public static func acquire(stateDirectory: String) throws(ConfigError) -> Int32 {
        do {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw ConfigError("cannot create state directory \(stateDirectory): \(error.localizedDescription)")
        }
        let path = stateDirectory + "/swiftletd.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ConfigError("\(path): \(HostError.text(errno: errno))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw ConfigError("another swiftletd uses the state directory \(stateDirectory)")
        }
        return fd
    }
}

extension ProcessTools {
    /// `NAME` in the directory of the running executable (the default `swiftlet` beside `swiftletd`).
    public static func besideExecutable(_ name: String) -> String? {
        executableDirectory().map { $0 + "/" + name }
    }
}
