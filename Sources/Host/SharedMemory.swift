import CHost

/// Access to memory another party writes at the same time (a guest's ring indices): every load
/// is a real load (acquire), every store a real store (release), and `fullBarrier` orders a store
/// before a later load, which the "set needs_kick, then look again" handshake needs.
public enum SharedMemory {
    @inline(__always)
    public static func load32(_ p: UnsafeMutableRawPointer) -> UInt32 { chost_shared_load_u32(p) }

    @inline(__always)
    public static func store32(_ p: UnsafeMutableRawPointer, _ value: UInt32) { chost_shared_store_u32(p, value) }

    @inline(__always)
    public static func fullBarrier() { chost_full_barrier() }

    /// A spin-wait hint to the CPU (x86 `pause`).
    @inline(__always)
    public static func cpuRelax() { chost_cpu_relax() }
}

extension EventFD {
    /// Blocks until this eventfd or `other` is readable, or `timeoutMilliseconds` pass (-1:
    /// no limit). Returns (this, other) readiness; both false after a timeout or a signal.
    public func waitReadable(or other: EventFD, timeoutMilliseconds: Int32 = -1) -> (this: Bool, other: Bool) {
        let r = chost_poll2(fd, other.fd, timeoutMilliseconds)
        return (r & 1 != 0, r & 2 != 0)
    }
}
