#if canImport(Glibc)
import Glibc
#endif

/// The OS layer's one error: a failed system call (what was attempted, and errno), or a check of
/// ours that refused before any call (errno 0, and the whole line in `operation`). One line for
/// the user.
public struct HostError: Error, CustomStringConvertible, Equatable, Sendable {
    public var operation: String
    public var errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    /// A refusal of our own ("PATH exists and is not a socket"), said as it is.
    public init(message: String) {
        self.operation = message
        self.errno = 0
    }

    public var description: String { errno == 0 ? operation : "\(operation): \(Self.text(errno: errno))" }

    /// The C library's words for `errno` (what every one-line error says after a colon).
    public static func text(errno code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }
}
