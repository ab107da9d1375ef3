/// A VMM failure with a stable code and a one-line message; the CLI prints the message and exits 1.
public struct VMMError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Failure classes: bad configuration from the user, a host resource, or the guest misbehaving.
    public enum Code: String, Sendable { case configuration, host, guest, hypervisor }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) { self.code = code; self.message = message }
    public var description: String { message }
}
