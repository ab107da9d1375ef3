#if canImport(Glibc)
import Glibc
#endif
import KVM

/// A Hypervisor-layer failure: a stable code for programs and a one-line message for people.
public struct HypervisorError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Stable failure classes callers can switch on.
    public enum Code: String, Sendable {
        case unavailable, unsupported, kernel, memory, invalidArgument, guestFault
        /// Guest-physical mappings: overlapping, not page-aligned, not found, or no slot left.
        case overlap, misaligned, notFound, limit
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    @usableFromInline init(_ error: KVMError) {
        let code: Code = (error.errno == ENOENT || error.errno == EACCES) ? .unavailable : .kernel
        self.init(code, error.description)
    }

    public var description: String { message }
}

