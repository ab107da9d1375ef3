import Synchronization

/// The part of an i8042 PS/2 keyboard controller a Linux guest touches with no keyboard attached:
/// probing through the command byte, self-tests, and above all "pulse the reset line" (command
/// 0xFE on port 0x64). That is how a PC reboots: Linux's keyboard-controller method writes it,
/// and the FADT reset register our ACPI tables advertise (port 0x64, value 0xFE) lands here too.
///
/// Register it as one 5-port window at 0x60 (offset 0 = data port 0x60, offset 4 =
/// status/command port 0x64), as Firecracker does. Offsets 1-3 are not the controller: port 0x61
/// (PC speaker / PIT gate) belongs to KVM's in-kernel PIT, which answers before an exit reaches
/// us; here those offsets read as 0xFF and ignore writes.
///
/// With nothing to send, status reads 0: output buffer empty (so Linux's flush finishes) and
/// input buffer empty (so the reboot path's wait for the controller never spins). Commands with
/// a reply put one byte in the output buffer and set status bit 0 until the guest reads it.
/// Keyboard/mouse traffic is ignored: there is no IRQ 1/12 and no device behind the ports, so the
/// guest's keyboard probe (asynchronous in Linux) times out and finds nothing. The mouse port is
/// not modelled: Linux skips it when ACPI lists a keyboard (PNP0303) but no mouse; booted
/// without ACPI, pass `i8042.noaux` or its AUX probe waits out its timeouts.
public final class I8042: PortIODevice {
    /// Base of the 5-port window (data port) and its length.
    public static let basePort: UInt16 = 0x60
    public static let portCount: UInt16 = 5
    static let dataOffset: UInt16 = 0
    static let commandOffset: UInt16 = 4

    // Status register bits.
    static let statusOutputFull: UInt8 = 0x01
    // Commands (port 0x64).
    static let readCommandByte: UInt8 = 0x20, writeCommandByte: UInt8 = 0x60
    static let disableAux: UInt8 = 0xA7, enableAux: UInt8 = 0xA8
    static let selfTest: UInt8 = 0xAA, keyboardInterfaceTest: UInt8 = 0xAB
    static let disableKeyboard: UInt8 = 0xAD, enableKeyboard: UInt8 = 0xAE
    static let readOutputPort: UInt8 = 0xD0, writeOutputPort: UInt8 = 0xD1
    static let pulseResetLine: UInt8 = 0xFE
    // Command-byte bits touched by the enable/disable commands.
    static let ctrKeyboardDisabled: UInt8 = 0x10, ctrAuxDisabled: UInt8 = 0x20
    /// Output port: bit 0 is the CPU reset line (active low), bit 1 the A20 gate.
    static let outputPortDefault: UInt8 = 0x03

    struct State {
        /// Power-on command byte: keyboard interrupt on, system flag, translation on.
        var commandByte: UInt8 = 0x45
        var outputPort: UInt8 = I8042.outputPortDefault
        /// A reply waiting at the data port.
        var output: UInt8?
        /// The command whose parameter the next data-port write supplies.
        var pendingCommand: UInt8?
    }

    private let state = Mutex(State())
    private let onReset: @Sendable () -> Void

    /// `onReset` runs when the guest pulses the reset line, on that vCPU's thread and outside the
    /// device's lock; the VMM stops the machine there (a reset of a microVM ends it).
    public init(onReset: @escaping @Sendable () -> Void) {
        self.onReset = onReset
    }

    public func read(offset: UInt16, size: Int) -> UInt32 {
        switch offset {
        case Self.dataOffset:
            // The reply, once; an empty buffer reads 0.
            return UInt32(state.withLock { s in
                defer { s.output = nil }
                return s.output ?? 0
            })
        case Self.commandOffset:
            return UInt32(state.withLock { $0.output == nil ? 0 : Self.statusOutputFull })
        default:
            return 0xFF
        }
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        let byte = UInt8(truncatingIfNeeded: value)
        let reset: Bool
        switch offset {
        case Self.dataOffset:
            reset = state.withLock { s in
                guard let command = s.pendingCommand else { return false } // keyboard traffic
                s.pendingCommand = nil
                switch command {
                case Self.writeCommandByte:
                    s.commandByte = byte
                    return false
                case Self.writeOutputPort:
                    s.outputPort = byte
                    // Writing the reset bit (bit 0) low resets the CPU, like the pulse command.
                    return byte & 0x01 == 0
                default:
                    return false
                }
            }
        case Self.commandOffset:
            reset = state.withLock { s in s.command(byte) }
        default:
            reset = false
        }
        if reset { onReset() }
    }
}

extension I8042.State {
    /// Runs a controller command; returns true when it resets the machine.
    mutating func command(_ command: UInt8) -> Bool {
        // A new command cancels a parameter that never arrived.
        pendingCommand = nil
        switch command {
        case I8042.readCommandByte: output = commandByte
        case I8042.writeCommandByte, I8042.writeOutputPort: pendingCommand = command
        case I8042.disableAux: commandByte |= I8042.ctrAuxDisabled
        case I8042.enableAux: commandByte &= ~I8042.ctrAuxDisabled
        case I8042.disableKeyboard: commandByte |= I8042.ctrKeyboardDisabled
        case I8042.enableKeyboard: commandByte &= ~I8042.ctrKeyboardDisabled
        case I8042.selfTest: output = 0x55          // "controller OK"
        case I8042.keyboardInterfaceTest: output = 0x00 // "no error"
        case I8042.readOutputPort: output = outputPort
        case 0xF0...0xFF:
            // "Pulse output lines": a 0 in bit 0 of the low nibble pulses reset (0xFE is the
            // usual form).
            return command & 0x01 == 0
        default:
            break
        }
        return false
    }
}
