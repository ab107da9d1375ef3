import CSwiftlet
import Synchronization
import VMSpec

/// The objects behind the C ABI's handles. A handle is the object's kind in its top byte and a
/// serial number below, never reused: a handle of the wrong kind, one destroyed, or one never
/// issued is found out by lookup (SWIFTLET_E_HANDLE) instead of being dereferenced, which a raw
/// pointer handle could not offer. A lookup returns the object retained, so a destroy on another
/// thread cannot free it under a call in progress.
public final class HandleTable<Object: AnyObject & Sendable>: Sendable {
    private let kind: UInt64
    private let kindName: String
    public let limit: Int
    private let state = Mutex<(next: UInt64, objects: [UInt64: Object])>((1, [:]))

    /// - Parameters:
    ///   - kind: 1...255, distinct per table (the handle's top byte).
    ///   - name: what the handle is, for messages ("machine", "vCPU").
    public init(kind: UInt8, name: String, limit: Int) {
        precondition(kind != 0)
        self.kind = UInt64(kind) << 56
        self.kindName = name
        self.limit = limit
    }

    public var count: Int { state.withLock { $0.objects.count } }

    /// Issues a handle for `object`.
    public func insert(_ object: Object) throws(ABIError) -> UInt64 {
        try state.withLock { state throws(ABIError) in
            guard state.objects.count < limit else {
                throw ABIError(SWIFTLET_E_LIMIT, "\(state.objects.count) \(kindName)s exist already, the most one process may hold")
            }
            let handle = kind | (state.next & 0x00FF_FFFF_FFFF_FFFF)
            state.next &+= 1
            state.objects[handle] = object
            return handle
        }
    }

    @inline(__always)
    public func lookup(_ handle: UInt64) throws(ABIError) -> Object {
        let object = state.withLock { $0.objects[handle] }
        guard let object else { throw unknown(handle) }
        return object
    }

    /// Removes the handle if `canRemove` (called under the table's lock) agrees.
    public func remove(_ handle: UInt64, if canRemove: (Object) throws(ABIError) -> Void = { _ in }) throws(ABIError) -> Object {
        try state.withLock { state throws(ABIError) in
            guard let object = state.objects[handle] else { throw unknown(handle) }
            try canRemove(object)
            state.objects[handle] = nil
            return object
        }
    }

    private func unknown(_ handle: UInt64) -> ABIError {
        if handle == 0 { return ABIError(SWIFTLET_E_HANDLE, "\(kindName) handle 0 (no \(kindName))") }
        if handle & 0xFF00_0000_0000_0000 != kind {
            return ABIError(SWIFTLET_E_HANDLE, "handle \(handle.hexString) is not a \(kindName) handle")
        }
        return ABIError(SWIFTLET_E_HANDLE, "\(kindName) handle \(handle.hexString) was destroyed or never issued")
    }
}
