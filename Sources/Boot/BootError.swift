/// Why an image could not be loaded or a guest could not be laid out: one line for the user.
public struct BootError: Error, CustomStringConvertible, Equatable, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
