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

    public var description: String { "\(operation): \(Self.text(errno: errno))" }

    /// The C library's words for `errno` (what every one-line error says after a colon).
    public static func text(errno code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }
}
