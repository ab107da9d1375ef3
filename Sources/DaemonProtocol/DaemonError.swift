/// The daemon layer's one error: an HTTP status (as swiftletd's API answers it; 0 when the daemon
/// could not be reached at all) and one line for the user. Config files, the supervisor, the
/// client `swiftlet ctl` uses and the calls to a VM process all throw it.
public struct DaemonError: Error, Sendable, CustomStringConvertible, Equatable {
    public var status: Int
    public var message: String
    /// For a 405: the methods the path serves, sent in the Allow header HTTP requires.
    public var allowedMethods: [String] = []
    public init(_ status: Int, _ message: String) { self.status = status; self.message = message }
    public var description: String { message }
}
