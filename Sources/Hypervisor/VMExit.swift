/// A port-I/O exit: `count` items of `size` bytes each (count > 1 for REP INS/OUTS).
public struct PortIOExit: Equatable, Sendable {
    public var port: UInt16
    /// Bytes per item: 1, 2 or 4.
    public var size: Int
    /// Items in this exit; more than one only for string instructions.
    public var count: Int
    /// OUT (guest to device) when true, IN when false.
    public var isWrite: Bool

    public init(port: UInt16, size: Int, count: Int, isWrite: Bool) {
        self.port = port; self.size = size; self.count = count; self.isWrite = isWrite
    }
}

/// An MMIO exit KVM already decoded: guest-physical address, width and direction.
public struct MMIOExit: Equatable, Sendable {
    public var address: UInt64
    public var size: Int
    public var isWrite: Bool

    public init(address: UInt64, size: Int, isWrite: Bool) {
        self.address = address; self.size = size; self.isWrite = isWrite
    }
}

/// Why the vCPU stopped running guest code. Payloads are plain values so that producing one per
/// exit allocates nothing; the bytes of an I/O exit are read through `VCPU.ioData`/`mmioData`.
public enum VMExit: Equatable, Sendable {
    case portIO(PortIOExit)
    case mmio(MMIOExit)
    /// The guest executed HLT (with no in-kernel local APIC).
    case halted
    /// Triple fault, or a shutdown the guest requested.
    case shutdown
    /// The hardware refused to enter the guest; `reason` is the vendor code.
    case failedEntry(reason: UInt64)
    /// KVM could not emulate something (suberror 1 = emulation failure).
    case internalError(suberror: UInt32)
    /// The guest asked for reset, shutdown or crash through a paravirtual or ACPI path.
    case systemEvent(type: UInt32)
    /// Another thread kicked this vCPU (or a signal arrived): no guest state changed.
    case kicked
    /// A breakpoint or single step armed with `VCPU.setGuestDebug` fired.
    case debug(DebugExit)
    /// An exit reason this library does not know yet.
    case unknown(reason: UInt32)
}
