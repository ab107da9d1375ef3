import CSwiftlet
import Hypervisor

/// A failure as the C ABI reports it: a SWIFTLET_E_* status (swiftlet.h) and the one-line
/// message swiftlet_last_error gives the calling thread.
public struct ABIError: Error, Equatable, Sendable {
    public var status: Int32
    public var message: String

    public init(_ status: Int32, _ message: String) {
        self.status = status
        self.message = message
    }

    /// The status a Hypervisor failure maps to.
    public init(_ error: HypervisorError) {
        let status: Int32 = switch error.code {
        case .unavailable: SWIFTLET_E_UNAVAILABLE
        case .unsupported: SWIFTLET_E_UNSUPPORTED
        case .kernel, .memory: SWIFTLET_E_KERNEL
        case .invalidArgument: SWIFTLET_E_INVALID
        case .guestFault: SWIFTLET_E_GUEST
        case .overlap: SWIFTLET_E_OVERLAP
        case .misaligned: SWIFTLET_E_ALIGNMENT
        case .notFound: SWIFTLET_E_NOT_FOUND
        case .limit: SWIFTLET_E_LIMIT
        }
        self.init(status, error.message)
    }

    public static func invalid(_ message: String) -> ABIError { ABIError(SWIFTLET_E_INVALID, message) }
}

/// Runs one entry point's body: its status, with the thread's last-error message set (or
/// cleared on success). Every exported function goes through here, so none can return without
/// a status or leave a stale message behind.
@inline(__always)
public func abiCall(_ body: () throws(ABIError) -> Void) -> Int32 {
    do {
        try body()
        ABIErrorMessage.clear()
        return SWIFTLET_OK
    } catch {
        ABIErrorMessage.set(error.message)
        return error.status
    }
}

/// The calling thread's last error message (a C thread-local buffer: no allocation to set it).
public enum ABIErrorMessage {
    public static func set(_ message: String) {
        var line = message
        // One line, whatever a lower layer said.
        if line.contains(where: { $0 == "\n" || $0 == "\r" }) {
            line = String(line.map { $0 == "\n" || $0 == "\r" ? " " : $0 })
        }
        line.withUTF8 { cswiftlet_set_error(UnsafeRawPointer($0.baseAddress)?.assumingMemoryBound(to: CChar.self), $0.count) }
    }

    @inline(__always)
    public static func clear() { cswiftlet_clear_error() }

    /// What swiftlet_last_error would copy (for tests).
    public static var current: String {
        var buffer = [CChar](repeating: 0, count: 512)
        let n = buffer.withUnsafeMutableBufferPointer { cswiftlet_copy_error($0.baseAddress, $0.count) }
        return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The ABI's version and the sizes of version 1's structs. A struct's `size` field must be at
/// least its v1 size; these stay fixed when a later version grows a struct (the library then
/// writes the new fields only when the caller's size covers them).
public enum ABIVersion {
    public static let current: UInt32 = 2
    public static let capabilitiesSize: UInt32 = 40
    public static let regsSize: UInt32 = 152
    public static let sregsSize: UInt32 = 288
    public static let fpuSize: UInt32 = 416
    public static let exitSize: UInt32 = 264

    /// Throws SWIFTLET_E_STRUCT_SIZE unless `size` covers version 1 of `name`.
    @inline(__always)
    public static func check(_ size: UInt32, atLeast minimum: UInt32, _ name: StaticString) throws(ABIError) {
        guard size >= minimum else {
            throw ABIError(SWIFTLET_E_STRUCT_SIZE, "struct \(name).size is \(size), version 1's is \(minimum)")
        }
    }
}
