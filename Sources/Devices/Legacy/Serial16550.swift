import Synchronization

/// A 16550A UART as Linux's 8250 driver probes and drives it (COM1: ports 0x3F8-0x3FF, IRQ 4).
///
/// Register facts follow the TI/National PC16550D datasheet. What is modelled and why:
/// - Transmit is instant: a THR write goes straight to `output`, so LSR.THRE and LSR.TEMT are
///   always set and the THR-empty interrupt re-arms after every write.
/// - Receive comes from `enqueueInput` (a console thread) into a bounded queue that stands in
///   for both the UART's FIFO and the host-side buffer; bytes beyond its capacity are dropped and
///   counted. `wantsInput` lets the caller stop reading its input source instead, and
///   `onInputSpace` tells it when to start again.
/// - FCR bit 0 turns on IIR bits 7:6 (0xC0), which is how Linux tells a 16550A from an 8250.
/// - Loopback (MCR bit 4) mirrors RTS/DTR/OUT1/OUT2 into CTS/DSR/RI/DCD in the MSR and sends
///   transmitted bytes back to the receiver; Linux checks the MSR this way while probing.
/// - The IRQ line follows "some enabled interrupt is pending". Unlike a PC board we do not gate
///   it with MCR.OUT2 (QEMU and Firecracker don't either); Linux sets OUT2 anyway.
/// Not modelled: line errors and break, the receive-timeout interrupt, baud timing.
public final class Serial16550: PortIODevice {
    /// COM1's base port and ISA IRQ, where Linux looks first (ttyS0).
    public static let com1Base: UInt16 = 0x3F8
    public static let com1IRQ: UInt32 = 4
    /// Ports the UART decodes.
    public static let portCount: UInt16 = 8
    /// Default bound of the receive queue.
    public static let defaultInputCapacity = 64 << 10

    // Register offsets (some share an offset; DLAB = LCR bit 7 or read/write picks one).
    static let rbrTHR: UInt16 = 0, ier: UInt16 = 1, iirFCR: UInt16 = 2, lcr: UInt16 = 3
    static let mcr: UInt16 = 4, lsr: UInt16 = 5, msr: UInt16 = 6, scr: UInt16 = 7

    // IER bits.
    static let ierReceivedData: UInt8 = 0x01, ierTHREmpty: UInt8 = 0x02
    static let ierLineStatus: UInt8 = 0x04, ierModemStatus: UInt8 = 0x08
    // IIR interrupt identifications, highest priority first (line status is never raised).
    static let iirNone: UInt8 = 0x01, iirReceivedData: UInt8 = 0x04
    static let iirTHREmpty: UInt8 = 0x02, iirModemStatus: UInt8 = 0x00
    static let iirFIFOsEnabled: UInt8 = 0xC0
    // LSR bits.
    static let lsrDataReady: UInt8 = 0x01, lsrTHREmpty: UInt8 = 0x20, lsrTransmitterEmpty: UInt8 = 0x40
    // MCR bits.
    static let mcrDTR: UInt8 = 0x01, mcrRTS: UInt8 = 0x02, mcrOut1: UInt8 = 0x04
    static let mcrOut2: UInt8 = 0x08, mcrLoop: UInt8 = 0x10
    // MSR bits: deltas in the low nibble, line states in the high nibble.
    static let msrDeltaCTS: UInt8 = 0x01, msrDeltaDSR: UInt8 = 0x02
    static let msrTrailingEdgeRI: UInt8 = 0x04, msrDeltaDCD: UInt8 = 0x08
    static let msrCTS: UInt8 = 0x10, msrDSR: UInt8 = 0x20, msrRI: UInt8 = 0x40, msrDCD: UInt8 = 0x80
    /// Outside loopback the "other end" is a terminal that is always there: CTS, DSR and DCD.
    static let msrConnected: UInt8 = 0xB0
    static let lcrDLAB: UInt8 = 0x80
    static let fcrEnable: UInt8 = 0x01

    struct State: ~Copyable {
        var ier: UInt8 = 0
        var lcr: UInt8 = 0
        var mcr: UInt8 = 0
        var scr: UInt8 = 0
        // 115200 / 12 = 9600 baud: the usual power-on divisor. Only stored.
        var dll: UInt8 = 12
        var dlm: UInt8 = 0
        var fifosEnabled = false
        /// THR has emptied since the guest last acknowledged that (IIR read or THR write).
        var thrEmptyPending = false
        /// MSR delta bits not yet read.
        var msrDeltas: UInt8 = 0
        /// The level this device last drove onto its interrupt line.
        var lineLevel = false
        // Receive queue: a ring over a buffer allocated once, so enqueue/dequeue never allocate.
        var input: [UInt8]
        var head = 0
        var count = 0
        var dropped = 0
        /// The queue filled up; the console side is owed an `onInputSpace` call once the guest
        /// has drained it to half (hysteresis, so a full queue does not wake it per byte).
        var inputBlocked = false

        init(capacity: Int) { input = [UInt8](repeating: 0, count: capacity) }

        var loopback: Bool { mcr & Serial16550.mcrLoop != 0 }

        /// MSR bits 7:4 as the modem lines stand now.
        var modemLines: UInt8 { Serial16550.modemLines(mcr: mcr) }

        /// The IIR identification of the highest-priority enabled pending interrupt.
        var pendingInterrupt: UInt8 {
            if ier & Serial16550.ierReceivedData != 0, count > 0 { return Serial16550.iirReceivedData }
            if ier & Serial16550.ierTHREmpty != 0, thrEmptyPending { return Serial16550.iirTHREmpty }
            if ier & Serial16550.ierModemStatus != 0, msrDeltas != 0 { return Serial16550.iirModemStatus }
            return Serial16550.iirNone
        }

        /// Drives the line to match what is pending; called after every state change, under the lock.
        mutating func updateLine(_ irq: any InterruptLine) {
            let level = pendingInterrupt != Serial16550.iirNone
            if level != lineLevel {
                lineLevel = level
                irq.setLevel(level)
            }
        }

        /// Appends up to the free space; returns how many bytes were taken.
        mutating func push<C: Collection<UInt8>>(_ bytes: C) -> Int {
            let capacity = input.count
            var taken = 0
            for byte in bytes {
                guard count < capacity else { break }
                var tail = head + count
                if tail >= capacity { tail -= capacity }
                input[tail] = byte
                count += 1
                taken += 1
            }
            return taken
        }

        mutating func pop() -> UInt8? {
            guard count > 0 else { return nil }
            let byte = input[head]
            head += 1
            if head == input.count { head = 0 }
            count -= 1
            return byte
        }
    }

    private let state: Mutex<State>
    private let irq: any InterruptLine
    private let output: @Sendable (UInt8) -> Void
    private let onInputSpace: (@Sendable () -> Void)?

    /// - Parameters:
    ///   - interrupt: the UART's IRQ (IRQ 4 for COM1).
    ///   - output: receives each transmitted byte, on the vCPU thread that wrote it and outside
    ///     the device's lock (it may block, e.g. on a full stdout pipe; that stalls only that vCPU).
    ///   - inputCapacity: bound of the receive queue, in bytes (at least 1).
    ///   - onInputSpace: called after the queue was full and the guest has read it down to half,
    ///     on the reading vCPU's thread and outside the lock; a console loop that stopped reading
    ///     its source because `wantsInput` was false resumes then (e.g. re-arms epoll on stdin).
    public init(interrupt: any InterruptLine, inputCapacity: Int = Serial16550.defaultInputCapacity,
                onInputSpace: (@Sendable () -> Void)? = nil,
                output: @escaping @Sendable (UInt8) -> Void) {
        irq = interrupt
        self.output = output
        self.onInputSpace = onInputSpace
        state = Mutex(State(capacity: max(1, inputCapacity)))
    }

    // MARK: - Console side

    /// Queues bytes for the guest to receive and raises the received-data interrupt if enabled.
    /// Safe from any thread. Bytes that do not fit are dropped and counted.
    /// Returns how many bytes were queued.
    @discardableResult
    public func enqueueInput(_ bytes: some Collection<UInt8>) -> Int {
        state.withLock { s in
            let taken = s.push(bytes)
            s.dropped += bytes.count - taken
            if s.count == s.input.count { s.inputBlocked = true }
            s.updateLine(irq)
            return taken
        }
    }

    /// True while the receive queue has room; a console thread stops reading its source when
    /// this is false and resumes when the guest has drained the queue.
    public var wantsInput: Bool { state.withLock { $0.count < $0.input.count } }

    /// Free space in the receive queue, in bytes.
    public var inputSpace: Int { state.withLock { $0.input.count - $0.count } }

    /// Input bytes dropped because the queue was full.
    public var droppedInputBytes: Int { state.withLock { $0.dropped } }

    // MARK: - Guest side

    public func read(offset: UInt16, size: Int) -> UInt32 {
        if offset == Self.rbrTHR { return UInt32(readReceiver()) }
        return UInt32(state.withLock { s -> UInt8 in
            switch offset {
            case Self.ier:
                return s.lcr & Self.lcrDLAB != 0 ? s.dlm : s.ier
            case Self.iirFCR:
                // IIR is readable whatever DLAB says; Linux relies on that to rule out an EFR.
                let id = s.pendingInterrupt
                // Reading IIR while it reports THR empty is that interrupt's acknowledgement.
                if id == Self.iirTHREmpty {
                    s.thrEmptyPending = false
                    s.updateLine(irq)
                }
                return id | (s.fifosEnabled ? Self.iirFIFOsEnabled : 0)
            case Self.lcr:
                return s.lcr
            case Self.mcr:
                return s.mcr
            case Self.lsr:
                return Self.lsrTHREmpty | Self.lsrTransmitterEmpty | (s.count > 0 ? Self.lsrDataReady : 0)
            case Self.msr:
                let value = s.modemLines | s.msrDeltas
                // Reading the MSR clears its delta bits and so the modem-status interrupt.
                s.msrDeltas = 0
                s.updateLine(irq)
                return value
            case Self.scr:
                return s.scr
            default:
                return 0xFF
            }
        })
    }

    /// RBR (or DLL under DLAB). Separate because it may owe the console side a wake-up, which
    /// must run outside the lock.
    private func readReceiver() -> UInt8 {
        let (byte, wake) = state.withLock { s -> (UInt8, Bool) in
            if s.lcr & Self.lcrDLAB != 0 { return (s.dll, false) }
            // An empty receiver reads as 0 (the stale byte on real parts; nobody relies on it).
            let byte = s.pop() ?? 0
            s.updateLine(irq)
            guard s.inputBlocked, s.count <= s.input.count / 2 else { return (byte, false) }
            s.inputBlocked = false
            return (byte, true)
        }
        if wake { onInputSpace?() }
        return byte
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        let byte = UInt8(truncatingIfNeeded: value)
        let transmitted: UInt8? = state.withLock { s -> UInt8? in
            switch offset {
            case Self.rbrTHR:
                if s.lcr & Self.lcrDLAB != 0 {
                    s.dll = byte
                    return nil
                }
                // Writing THR acknowledges THR-empty; the instant transmit re-arms it. Dropping
                // and raising the line gives an edge-triggered controller a fresh edge per byte.
                s.thrEmptyPending = false
                s.updateLine(irq)
                var sent: UInt8? = byte
                if s.loopback {
                    // The transmitter feeds the receiver; nothing leaves the UART.
                    if s.push(CollectionOfOne(byte)) == 0 { s.dropped += 1 }
                    sent = nil
                }
                s.thrEmptyPending = true
                s.updateLine(irq)
                return sent
            case Self.ier:
                if s.lcr & Self.lcrDLAB != 0 {
                    s.dlm = byte
                    return nil
                }
                let old = s.ier
                s.ier = byte & 0x0F
                // Enabling the THR-empty interrupt while THR is empty (always) raises it; the
                // Linux driver's start_tx and its THRE self-test depend on this.
                if old & Self.ierTHREmpty == 0, s.ier & Self.ierTHREmpty != 0 {
                    s.thrEmptyPending = true
                }
                s.updateLine(irq)
            case Self.iirFCR:
                // FCR. The clear-receiver bit is accepted but queued input is kept: every queued
                // byte came from the user, and Linux clears the FIFOs when the port is opened,
                // which would eat typed-ahead or piped input. Trigger levels are irrelevant when
                // data is readable at once.
                s.fifosEnabled = byte & Self.fcrEnable != 0
            case Self.lcr:
                s.lcr = byte
            case Self.mcr:
                let oldLines = s.modemLines
                s.mcr = byte & 0x1F
                let newLines = s.modemLines
                let changed = oldLines ^ newLines
                var deltas: UInt8 = 0
                if changed & Self.msrCTS != 0 { deltas |= Self.msrDeltaCTS }
                if changed & Self.msrDSR != 0 { deltas |= Self.msrDeltaDSR }
                if changed & Self.msrDCD != 0 { deltas |= Self.msrDeltaDCD }
                // TERI is set only when RI goes from on to off.
                if oldLines & Self.msrRI != 0, newLines & Self.msrRI == 0 { deltas |= Self.msrTrailingEdgeRI }
                s.msrDeltas |= deltas
                s.updateLine(irq)
            case Self.scr:
                s.scr = byte
            default:
                // LSR and MSR writes are factory-test features; ignore them.
                break
            }
            return nil
        }
        if let transmitted { output(transmitted) }
    }

    /// MSR bits 7:4 for a given MCR: in loopback the outputs are wired back to the inputs
    /// (RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD); otherwise a terminal is always attached.
    static func modemLines(mcr: UInt8) -> UInt8 {
        guard mcr & mcrLoop != 0 else { return msrConnected }
        var lines: UInt8 = 0
        if mcr & mcrRTS != 0 { lines |= msrCTS }
        if mcr & mcrDTR != 0 { lines |= msrDSR }
        if mcr & mcrOut1 != 0 { lines |= msrRI }
        if mcr & mcrOut2 != 0 { lines |= msrDCD }
        return lines
    }
}
