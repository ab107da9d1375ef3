import Synchronization

/// The ACPI PM1a event block (FADT `PM1a_EVT_BLK`, 4 bytes): PM1_STS (u16 at offset 0,
/// write 1 to clear) and PM1_EN (u16 at offset 2). Register layout per the ACPI specification,
/// "PM1 Event Grouping".
///
/// Nothing here raises status bits yet (no power button, no SCI line), but the registers behave
/// as the spec says so the guest's ACPI core can initialise and clear them. Accesses of any width
/// at any offset are split into bytes, since ACPI lets firmware describe them either way.
public final class ACPIPM1EventBlock: PortIODevice {
    /// Length of the block (FADT `PM1_EVT_LEN`).
    public static let portCount: UInt16 = 4

    struct State {
        var status: UInt16 = 0
        var enable: UInt16 = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Sets PM1_STS bits as hardware would (e.g. a future power-button event); for the VMM and tests.
    public func setStatus(_ bits: UInt16) {
        state.withLock { $0.status |= bits }
    }

    /// The current PM1_EN value, for the VMM (which events the guest wants an SCI for).
    public var enabledEvents: UInt16 { state.withLock { $0.enable } }

    public func read(offset: UInt16, size: Int) -> UInt32 {
        state.withLock { s in
            let block = UInt32(s.status) | UInt32(s.enable) << 16
            return ACPIBytes.extract(block, blockLength: Self.portCount, offset: offset, size: size)
        }
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        state.withLock { s in
            ACPIBytes.forEachByte(blockLength: Self.portCount, offset: offset, size: size, value: value) { index, byte in
                let shift = UInt16(index & 1) * 8
                if index < 2 {
                    s.status &= ~(UInt16(byte) << shift) // write 1 to clear
                } else {
                    s.enable = s.enable & ~(0xFF << shift) | UInt16(byte) << shift
                }
            }
        }
    }
}

/// The ACPI PM1a control block (FADT `PM1a_CNT_BLK`, 2 bytes): PM1_CNT.
///
/// SCI_EN (bit 0) always reads 1: the machine is permanently in ACPI mode, so the FADT needs no
/// SMI_CMD and the guest never tries the legacy-to-ACPI handshake. Writing SLP_EN (bit 13) with
/// SLP_TYP (bits 12:10) equal to the S5 type the DSDT's `\_S5` object advertises calls
/// `onPowerOff`: that is how `poweroff` ends the VM. Other sleep states are ignored (the guest
/// resumes at once, as if woken). SLP_EN and GBL_RLS are write-only and read as 0.
public final class ACPIPM1ControlBlock: PortIODevice {
    /// Length of the block (FADT `PM1_CNT_LEN`).
    public static let portCount: UInt16 = 2
    /// The SLP_TYP value for S5 that the VMM's DSDT should advertise unless it passes another.
    public static let defaultS5SleepType: UInt8 = 5

    static let sciEnable: UInt16 = 1 << 0
    static let globalRelease: UInt16 = 1 << 2
    static let sleepEnable: UInt16 = 1 << 13
    static let sleepTypeShift: UInt16 = 10

    private let control = Mutex<UInt16>(ACPIPM1ControlBlock.sciEnable)
    private let s5SleepType: UInt8
    private let onPowerOff: @Sendable () -> Void

    /// `onPowerOff` runs on the writing vCPU's thread, outside the device's lock.
    public init(s5SleepType: UInt8 = ACPIPM1ControlBlock.defaultS5SleepType,
                onPowerOff: @escaping @Sendable () -> Void) {
        self.s5SleepType = s5SleepType & 0x7
        self.onPowerOff = onPowerOff
    }

    public func read(offset: UInt16, size: Int) -> UInt32 {
        let value = control.withLock { $0 }
        return ACPIBytes.extract(UInt32(value), blockLength: Self.portCount, offset: offset, size: size)
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        let powerOff = control.withLock { stored -> Bool in
            var written = stored
            ACPIBytes.forEachByte(blockLength: Self.portCount, offset: offset, size: size, value: value) { index, byte in
                let shift = UInt16(index) * 8
                written = written & ~(0xFF << shift) | UInt16(byte) << shift
            }
            let sleepType = UInt8((written >> Self.sleepTypeShift) & 0x7)
            let sleeping = written & Self.sleepEnable != 0
            // Keep what reads back: SCI_EN stuck at 1, write-only bits dropped.
            stored = (written | Self.sciEnable) & ~(Self.sleepEnable | Self.globalRelease)
            return sleeping && sleepType == s5SleepType
        }
        if powerOff { onPowerOff() }
    }
}

/// Byte-lane helpers shared by the PM1 blocks.
enum ACPIBytes {
    /// `size` bytes of the little-endian `block` starting at `offset`; lanes past the block read 0.
    static func extract(_ block: UInt32, blockLength: UInt16, offset: UInt16, size: Int) -> UInt32 {
        var result: UInt32 = 0
        for lane in 0..<max(0, min(size, 4)) {
            let index = Int(offset) + lane
            guard index < Int(blockLength) else { break }
            result |= ((block >> (UInt32(index) * 8)) & 0xFF) << (UInt32(lane) * 8)
        }
        return result
    }

    /// Calls `body(indexInBlock, byte)` for each byte of the access that lands inside the block.
    static func forEachByte(blockLength: UInt16, offset: UInt16, size: Int, value: UInt32,
                            _ body: (Int, UInt8) -> Void) {
        for lane in 0..<max(0, min(size, 4)) {
            let index = Int(offset) + lane
            guard index < Int(blockLength) else { break }
            body(index, UInt8(truncatingIfNeeded: value >> (UInt32(lane) * 8)))
        }
    }
}
