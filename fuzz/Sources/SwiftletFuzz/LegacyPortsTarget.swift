import Devices
import Synchronization

extension FuzzTargets {
    /// The legacy PC devices behind the port-I/O bus, laid out as the Linux VM registers them
    /// (16550 UART at 0x3F8, i8042 at 0x60, CMOS RTC at 0x70, debug exit at 0xF4, ACPI PM1 event
    /// and control blocks at 0x600 and 0x604): a fuzzed sequence of INs and OUTs of 1, 2 or 4
    /// bytes, with console input and keyboard bytes fed in between, all through `IOBus`.
    ///
    /// Input: the RTC's clock (4 bytes, seconds since 1970: a host clock, not the guest's), then
    /// up to 512 operations, each an opcode byte followed by its fields: a port access (port
    /// group, offset, size, direction, 4-byte value), console input (length byte and bytes) or
    /// a keyboard byte.
    ///
    /// Checks, besides never trapping: the UART drives its IRQ only on a change of level and its
    /// LSR's data-ready bit says whether input waits; input is queued or counted as dropped,
    /// never lost; the wake-up after a full queue comes only once it is half empty; the i8042's
    /// status says whether bytes wait at its data port.
    static let legacyPorts = FuzzTarget(
        name: "legacy-ports",
        summary: "16550 UART, i8042, CMOS RTC, debug exit and ACPI PM1 ports behind the IOBus"
    ) { bytes in
        var input = FuzzInput(bytes)
        let pc = LegacyPC(clock: Int(input.integer(UInt32.self)))
        for _ in 0..<512 where !input.isAtEnd {
            pc.step(&input)
            pc.check()
        }
    }
}

/// The port-I/O side of a Linux VM for one fuzz input (cheap to build, so built per input and
/// every run starts from power-on state).
private final class LegacyPC {
    /// A small receive queue, so inputs reach "full", dropping and the half-empty wake-up.
    static let inputCapacity = 16
    /// Where each device sits, as LinuxVM registers them; the fuzzer picks a group, then an offset.
    static let groups: [UInt16] = [Serial16550.com1Base, I8042.basePort, CMOSRTC.basePort, 0xF4, 0x600, 0x604]

    let bus = IOBus()
    let serialLine = CheckedLine(name: "serial IRQ 4")
    let keyboardLine = CountingLine()
    let serial: Serial16550
    let i8042: I8042
    let events = LegacyEvents()

    init(clock: Int) {
        let events = self.events
        // The wake-up runs outside the UART's lock once the guest has read a full queue down to
        // half; it must find at least half the queue free.
        let box = SerialBox()
        serial = Serial16550(interrupt: serialLine, inputCapacity: Self.inputCapacity, onInputSpace: {
            events.wakeUps.add(1, ordering: .relaxed)
            if let serial = box.serial, serial.inputSpace < Self.inputCapacity - Self.inputCapacity / 2 {
                fatalError("onInputSpace with only \(serial.inputSpace) of \(Self.inputCapacity) bytes free")
            }
        }, output: { _ in })
        box.serial = serial
        i8042 = I8042(keyboardInterrupt: keyboardLine, onReset: { events.resets.add(1, ordering: .relaxed) })
        try! bus.register(serial, base: Serial16550.com1Base, length: Serial16550.portCount)
        try! bus.register(i8042, base: I8042.basePort, length: I8042.portCount)
        try! bus.register(CMOSRTC(now: { clock }), base: CMOSRTC.basePort, length: CMOSRTC.portCount)
        try! bus.register(DebugExitPort { _ in events.exits.add(1, ordering: .relaxed) }, base: 0xF4, length: 1)
        try! bus.register(ACPIPM1EventBlock(), base: 0x600, length: ACPIPM1EventBlock.portCount)
        try! bus.register(ACPIPM1ControlBlock { events.powerOffs.add(1, ordering: .relaxed) }, base: 0x604,
                          length: ACPIPM1ControlBlock.portCount)
    }

    func step(_ input: inout FuzzInput) {
        switch input.byte() % 8 {
        case 0...4:
            // A port near a device (offsets past its range reach the unclaimed ports between).
            let port = input.pick(Self.groups) &+ UInt16(input.byte() % 8)
            access(port: port, &input)
        case 5:
            let chunk = input.take(Int(input.byte() % 24))
            let dropped = serial.droppedInputBytes
            let taken = serial.enqueueInput(chunk)
            guard taken + (serial.droppedInputBytes - dropped) == chunk.count else {
                fatalError("enqueueInput of \(chunk.count) bytes: \(taken) queued, \(serial.droppedInputBytes - dropped) dropped")
            }
        case 6:
            i8042.sendKeyboardByte(input.byte())
            if input.bool() { i8042.repeatKeyboardInterrupt() }
        default:
            access(port: input.integer(UInt16.self), &input)
        }
    }

    private func access(port: UInt16, _ input: inout FuzzInput) {
        let size = input.pick([1, 2, 4, 1])
        if input.bool() {
            bus.write(port: port, size: size, value: input.integer(UInt32.self))
        } else {
            _ = bus.read(port: port, size: size)
        }
    }

    /// Reads only registers whose reads have no side effects (LSR, i8042 status).
    func check() {
        let lsr = bus.read(port: Serial16550.com1Base + 5, size: 1)
        guard lsr & 0x60 == 0x60 else { fatalError("LSR \(lsr): THRE and TEMT must stay set (transmit is instant)") }
        let waiting = serial.inputSpace < Self.inputCapacity
        guard (lsr & 1 == 1) == waiting else { fatalError("LSR data ready is \(lsr & 1) with \(Self.inputCapacity - serial.inputSpace) bytes queued") }
        let status = bus.read(port: I8042.basePort + 4, size: 1)
        guard (status & 1 == 0) == i8042.isOutputEmpty else {
            fatalError("i8042 status \(status) while its output is \(i8042.isOutputEmpty ? "" : "not ")empty")
        }
    }
}

/// What the devices' callbacks reported (the machine would reboot, exit or power off there).
private final class LegacyEvents: Sendable {
    let wakeUps = Atomic<Int>(0), resets = Atomic<Int>(0), exits = Atomic<Int>(0), powerOffs = Atomic<Int>(0)
}

/// Lets the UART's wake-up callback look at the UART it was given to (set right after init;
/// weak, or the UART and its callback would keep each other alive).
private final class SerialBox: @unchecked Sendable {
    weak var serial: Serial16550?
}

/// An interrupt line that traps when its device drives the level it already drives: devices
/// promise to call `setLevel` only on a change (`InterruptLine`).
private final class CheckedLine: InterruptLine {
    let name: String
    private let level = Mutex(false)
    init(name: String) { self.name = name }
    func setLevel(_ high: Bool) {
        level.withLock { current in
            if current == high { fatalError("\(name): setLevel(\(high)) twice in a row") }
            current = high
        }
    }
}

/// The i8042's IRQ 1, which it pulses (high then low) per keyboard byte.
private final class CountingLine: InterruptLine {
    private let edges = Atomic<Int>(0)
    func setLevel(_ high: Bool) { if high { edges.add(1, ordering: .relaxed) } }
}
