#if canImport(Glibc)
import Glibc
#endif

/// An exclusive advisory lock (flock) on a file, held while this object lives: closing its
/// descriptor on deinit releases it, and so does the kernel when the process dies.
public final class FileLock: Sendable {
    private let descriptor: FileDescriptor

    private init(_ descriptor: FileDescriptor) { self.descriptor = descriptor }

    /// Opens `path` (created with `mode` if missing) and takes the lock without waiting. Nil when
    /// another open file already holds it; throws when the file cannot be opened or locked.
    public static func tryAcquire(_ path: String, mode: UInt32 = 0o600) throws(HostError) -> FileLock? {
        let descriptor = try FileDescriptor.open(path, flags: O_RDWR | O_CREAT, mode: mode)
        while flock(descriptor.rawValue, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            if errno == EWOULDBLOCK { return nil }
            throw HostError("flock \(path)", errno: errno)
        }
        return FileLock(descriptor)
    }
}
