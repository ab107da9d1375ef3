/// Why a device could not be set up (for example a port range the bus refuses): a stable code
/// and a one-line message for the user.
public struct DeviceError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Failure classes, stable for callers that branch on them.
    public enum Code: String, Sendable {
        /// A range that is empty or runs past the end of its address space.
        case invalidRange
        /// A range that overlaps one already registered.
        case overlap
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
