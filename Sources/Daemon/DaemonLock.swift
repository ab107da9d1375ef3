import DaemonProtocol
import Foundation
import Host

/// One daemon per state directory: two daemons adopting the same VMs would fight over them.
public enum DaemonLock {
    /// Creates the state directory if needed and takes an exclusive lock on `swiftletd.lock` in
    /// it. Hold the result while the daemon runs; dropping it lets the lock go.
    public static func acquire(stateDirectory: String) throws(DaemonError) -> FileLock {
        do {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw DaemonError(400, "cannot create state directory \(stateDirectory): \(error.localizedDescription)")
        }
        let path = stateDirectory + "/swiftletd.lock"
        let lock: FileLock?
        do { lock = try FileLock.tryAcquire(path) } catch { throw DaemonError(400, "\(path): \(HostError.text(errno: error.errno))") }
        guard let lock else { throw DaemonError(400, "another swiftletd uses the state directory \(stateDirectory)") }
        return lock
    }
}
