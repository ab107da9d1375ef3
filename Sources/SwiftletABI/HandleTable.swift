import CSwiftlet
import Host
import VMSpec

/// The objects behind the C ABI's handles. A handle is the object's kind in its top byte, a
/// generation in the next 32 bits and a slot index in the low 24: a handle of the wrong kind, one
/// destroyed (its slot's generation moved on), or one never issued is found out by lookup
/// (SWIFTLET_E_HANDLE) instead of being dereferenced, which a raw pointer handle could not offer.
/// A lookup is an index and a compare under a spin lock (no hashing and no thread id: it runs
/// twice per exit) and returns the object retained, so a destroy on another thread cannot free
/// it under a call. The state lives behind a pointer, so reaching it under the lock costs no
/// dynamic exclusivity check either.
public final class HandleTable<Object: AnyObject & Sendable>: @unchecked Sendable {
    private struct Slot {
        var handle: UInt64
        var object: Object?
    }

    private struct State {
        var slots: [Slot] = []
        var free: [Int] = []
        var count = 0
        var generation: UInt64 = 0
    }

    private let kind: UInt64
    private let kindName: String
    public let limit: Int
    private let lock = SpinLock()
    private let state: UnsafeMutablePointer<State>
    private static var indexMask: UInt64 { 0xFF_FFFF }

    /// - Parameters:
    ///   - kind: 1...255, distinct per table (the handle's top byte).
    ///   - name: what the handle is, for messages ("machine", "vCPU").
    ///   - limit: at most 2^24 objects at once.
    public init(kind: UInt8, name: String, limit: Int) {
        precondition(kind != 0 && limit <= 1 << 24)
        self.kind = UInt64(kind) << 56
        self.kindName = name
        self.limit = limit
        state = .allocate(capacity: 1)
        state.initialize(to: State())
    }

    deinit {
        state.deinitialize(count: 1)
        state.deallocate()
    }

    /// Runs `body` on the state, under the lock.
    @inline(__always)
    private func locked<T, E: Error>(_ body: (inout State) throws(E) -> T) throws(E) -> T {
        try lock.withLock { () throws(E) in try body(&state.pointee) }
    }

    public var count: Int { locked { $0.count } }

    /// Issues a handle for `object`.
    public func insert(_ object: Object) throws(ABIError) -> UInt64 {
        try locked { state throws(ABIError) in
            guard state.count < limit else {
                throw ABIError(SWIFTLET_E_LIMIT, "\(state.count) \(kindName)s exist already, the most one process may hold")
            }
            // Generations count up across the table, so a handle is never issued twice.
            state.generation = (state.generation &+ 1) & 0xFFFF_FFFF
            if state.generation == 0 { state.generation = 1 }
            let index = state.free.popLast() ?? state.slots.count
            let handle = kind | state.generation << 24 | UInt64(index)
            if index == state.slots.count { state.slots.append(Slot(handle: handle, object: object)) } else {
                state.slots[index] = Slot(handle: handle, object: object)
            }
            state.count += 1
            return handle
        }
    }

    @inline(__always)
    public func lookup(_ handle: UInt64) throws(ABIError) -> Object {
        let index = Int(handle & Self.indexMask)
        let object = locked { state -> Object? in
            guard index < state.slots.count, state.slots[index].handle == handle else { return nil }
            return state.slots[index].object
        }
        guard let object else { throw unknown(handle) }
        return object
    }

    /// Removes the handle if `canRemove` (called under the table's lock) agrees.
    public func remove(_ handle: UInt64, if canRemove: (Object) throws(ABIError) -> Void = { _ in }) throws(ABIError) -> Object {
        let index = Int(handle & Self.indexMask)
        return try locked { state throws(ABIError) in
            guard index < state.slots.count, state.slots[index].handle == handle, let object = state.slots[index].object else {
                throw unknown(handle)
            }
            try canRemove(object)
            state.slots[index] = Slot(handle: 0, object: nil)
            state.free.append(index)
            state.count -= 1
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
