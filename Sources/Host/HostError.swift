#if canImport(Glibc)
import Glibc
#endif

/// A failed host system call: what was attempted and errno. One line for the user.
public struct HostError: Error, CustomStringConvertible, Equatable, Sendable {
    public var operation: String
    public var errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String { "\(operation): \(String(cString: strerror(errno)))" }
}
