/// Why an image could not be loaded or a guest could not be laid out: one line for the user.
public struct BootError: Error, CustomStringConvertible, Equatable, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension BootError {
    /// Runs a layout step, turning a guest-memory failure (a structure that does not fit) into a
    /// BootError and passing BootErrors through.
    static func layingOut<T>(_ body: () throws -> T) throws(BootError) -> T {
        do { return try body() } catch let error as BootError {
            throw error
        } catch {
            throw BootError("cannot lay out guest memory: \(error)")
        }
    }
}
