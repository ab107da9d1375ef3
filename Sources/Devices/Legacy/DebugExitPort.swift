/// A one-byte "debug exit" port (the VMM places it at 0xF4): a guest write of byte V calls
/// `onExit(V)`. The test guest's /init reports its command's exit status through it, which gives
/// `swiftlet run` the guest's status without parsing console output. Reads return 0.
///
/// Stateless, so it needs no lock. Wider writes pass their low byte.
public final class DebugExitPort: PortIODevice {
    /// The conventional port and length.
    public static let defaultPort: UInt16 = 0xF4
    public static let portCount: UInt16 = 1

    private let onExit: @Sendable (UInt8) -> Void

    /// `onExit` runs on the writing vCPU's thread; the VMM records the status and stops the VM.
    public init(onExit: @escaping @Sendable (UInt8) -> Void) {
        self.onExit = onExit
    }

    public func read(offset: UInt16, size: Int) -> UInt32 { 0 }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        onExit(UInt8(truncatingIfNeeded: value))
    }
}
