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
/// input buffer empty (so the reboot path's wait for the controller never spins). Replies queue
/// in the output buffer; status bit 0 stays set until the guest has read them all.
///
/// Behind the data port sits a minimal PS/2 keyboard, enough for Linux's atkbd to find it: every
/// command is acknowledged (0xFA), reset answers "self-test passed" (0xAA), get-ID answers an MF2
/// keyboard (0xAB 0x83). Its only keys are the ones the VMM sends with `sendKeyboardByte`
/// (Firecracker's SendCtrlAltDel): a Linux guest reboots on them, which ends a microVM. Keyboard bytes raise
/// IRQ 1 while the command byte enables it. The mouse port is not modelled: Linux skips it when
/// ACPI lists a keyboard (PNP0303) but no mouse; booted without ACPI, pass `i8042.noaux` or its
/// AUX probe waits out its timeouts.
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
        /// Bytes waiting at the data port, oldest first (at most a few: replies and 8 key codes).
        var output: [UInt8] = []
        /// Whether the bytes came from the keyboard (they raise IRQ 1) rather than the controller.
        var outputFromKeyboard = false
        /// The command whose parameter the next data-port write supplies.
        var pendingCommand: UInt8?
        /// The keyboard command whose parameter byte comes next (set LEDs, typematic, scan set).
        var pendingKeyboardCommand: UInt8?
    }

    private let state = Mutex(State())
    private let onReset: @Sendable () -> Void
    private let keyboardInterrupt: (any InterruptLine)?
    /// Beyond this many waiting bytes, new keyboard output is dropped (a guest that never reads).
    static let outputLimit = 64
    // Command-byte bits: keyboard interrupt enable, scan-code translation to set 1.
    static let ctrKeyboardInterrupt: UInt8 = 0x01, ctrTranslate: UInt8 = 0x40

    /// `onReset` runs when the guest pulses the reset line, on that vCPU's thread and outside the
    /// device's lock; the VMM stops the machine there (a reset of a microVM ends it).
    /// `keyboardInterrupt` is ISA IRQ 1 (nil: the keyboard never interrupts).
    public init(keyboardInterrupt: (any InterruptLine)? = nil, onReset: @escaping @Sendable () -> Void) {
        self.keyboardInterrupt = keyboardInterrupt
        self.onReset = onReset
    }

    /// The scan codes of pressing and releasing Ctrl, Alt and Delete, in the set the guest reads:
    /// set 1 when the controller translates (Linux's default), set 2 otherwise.
    public func ctrlAltDelScanCodes() -> [UInt8] {
        state.withLock { s in
            s.commandByte & Self.ctrTranslate != 0
                ? [0x1D, 0x38, 0xE0, 0x53, 0xE0, 0xD3, 0xB8, 0x9D]
                : [0x14, 0x11, 0xE0, 0x71, 0xE0, 0xF0, 0x71, 0xF0, 0x11, 0xF0, 0x14]
        }
    }

    /// A byte from the keyboard: queued at the data port, with IRQ 1 while the command byte
    /// enables it. Returns false (and drops it) when `outputLimit` bytes already wait. Feed keys
    /// one at a time, waiting for `isOutputEmpty`, as a real keyboard's bytes arrive: the next
    /// byte's interrupt then comes from here rather than from the guest's read of the previous one.
    @discardableResult
    public func sendKeyboardByte(_ byte: UInt8) -> Bool {
        let (queued, raise) = state.withLock { s -> (Bool, Bool) in
            guard s.output.count < Self.outputLimit else { return (false, false) }
            s.output.append(byte)
            s.outputFromKeyboard = true
            return (true, s.commandByte & Self.ctrKeyboardInterrupt != 0)
        }
        if raise { pulseKeyboardInterrupt() }
        return queued
    }

    /// Raises IRQ 1 again for keyboard bytes still waiting (a retry for an interrupt the guest
    /// may have missed); does nothing when the buffer is empty or interrupts are off.
    public func repeatKeyboardInterrupt() {
        let raise = state.withLock { s in
            !s.output.isEmpty && s.outputFromKeyboard && s.commandByte & Self.ctrKeyboardInterrupt != 0
        }
        if raise { pulseKeyboardInterrupt() }
    }

    /// Whether the guest has read every byte waiting at the data port.
    public var isOutputEmpty: Bool { state.withLock { $0.output.isEmpty } }

    private func pulseKeyboardInterrupt() {
        keyboardInterrupt?.setLevel(true)
        keyboardInterrupt?.setLevel(false)
    }

    public func read(offset: UInt16, size: Int) -> UInt32 {
        switch offset {
        case Self.dataOffset:
            // The oldest byte, once; an empty buffer reads 0. More keyboard bytes: IRQ 1 again.
            let (byte, more) = state.withLock { s -> (UInt8, Bool) in
                guard !s.output.isEmpty else { return (0, false) }
                let byte = s.output.removeFirst()
                return (byte, !s.output.isEmpty && s.outputFromKeyboard && s.commandByte & Self.ctrKeyboardInterrupt != 0)
            }
            if more { pulseKeyboardInterrupt() }
            return UInt32(byte)
        case Self.commandOffset:
            return UInt32(state.withLock { $0.output.isEmpty ? 0 : Self.statusOutputFull })
        default:
            return 0xFF
        }
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        let byte = UInt8(truncatingIfNeeded: value)
        let reset: Bool
        switch offset {
        case Self.dataOffset:
            var interrupt = false
            reset = state.withLock { s in
                guard let command = s.pendingCommand else {
                    interrupt = s.keyboardCommand(byte)
                    return false
                }
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
            if interrupt { pulseKeyboardInterrupt() }
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
        func reply(_ byte: UInt8) { output = [byte]; outputFromKeyboard = false }
        switch command {
        case I8042.readCommandByte: reply(commandByte)
        case I8042.writeCommandByte, I8042.writeOutputPort: pendingCommand = command
        case I8042.disableAux: commandByte |= I8042.ctrAuxDisabled
        case I8042.enableAux: commandByte &= ~I8042.ctrAuxDisabled
        case I8042.disableKeyboard: commandByte |= I8042.ctrKeyboardDisabled
        case I8042.enableKeyboard: commandByte &= ~I8042.ctrKeyboardDisabled
        case I8042.selfTest: reply(0x55)          // "controller OK"
        case I8042.keyboardInterfaceTest: reply(0x00) // "no error"
        case I8042.readOutputPort: reply(outputPort)
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

extension I8042.State {
    /// A byte the guest sent to the keyboard: queues its answer. Returns whether to raise IRQ 1.
    mutating func keyboardCommand(_ byte: UInt8) -> Bool {
        let ack: UInt8 = 0xFA
        var answer: [UInt8]
        if pendingKeyboardCommand != nil {
            // The parameter of set-LEDs, typematic rate or scan-code set; 0 asks for the set in use.
            answer = pendingKeyboardCommand == 0xF0 && byte == 0 ? [ack, 0x02] : [ack]
            pendingKeyboardCommand = nil
        } else {
            switch byte {
            case 0xFF: answer = [ack, 0xAA]            // reset: self-test passed
            case 0xF2: answer = [ack, 0xAB, 0x83]      // identify: MF2 keyboard
            case 0xEE: answer = [0xEE]                 // echo
            case 0xED, 0xF3, 0xF0:                     // set LEDs, typematic, scan set: a parameter follows
                pendingKeyboardCommand = byte
                answer = [ack]
            default: answer = [ack]                    // enable, disable, defaults, …
            }
        }
        output = answer
        outputFromKeyboard = true
        return commandByte & I8042.ctrKeyboardInterrupt != 0
    }
}
