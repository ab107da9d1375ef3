import Testing
@testable import Devices

@Suite struct I8042Tests {
    let resets = Recorder<Int>()
    let controller: I8042

    init() {
        let resets = self.resets
        controller = I8042 { resets.record(1) }
    }

    func status() -> UInt32 { controller.read(offset: 4, size: 1) }
    func data() -> UInt32 { controller.read(offset: 0, size: 1) }
    func command(_ c: UInt8) { controller.write(offset: 4, size: 1, value: UInt32(c)) }
    func send(_ d: UInt8) { controller.write(offset: 0, size: 1, value: UInt32(d)) }

    @Test func idleControllerReadsZero() {
        #expect(status() == 0)
        #expect(data() == 0)
        #expect(resets.all.isEmpty)
    }

    @Test func pulseResetLineResets() {
        command(0xFE)
        #expect(resets.all.count == 1)
        command(0xFF)                      // pulses nothing
        #expect(resets.all.count == 1)
    }

    @Test func resetThroughTheOutputPort() {
        command(0xD0)
        #expect(data() & 0x01 == 1)        // reset line inactive (high)
        command(0xD1)
        send(0x03)                         // keep it high: nothing happens
        #expect(resets.all.isEmpty)
        command(0xD1)
        send(0x02)                         // drive it low
        #expect(resets.all.count == 1)
    }

    @Test func commandByteRoundTrips() {
        command(0x20)
        #expect(status() == 1)             // output buffer full
        let initial = data()
        #expect(status() == 0)             // read once
        #expect(data() == 0)
        command(0x60)
        send(0x47)
        command(0x20)
        #expect(data() == 0x47)
        #expect(initial != 0x47)
        command(0xAD)                      // disable keyboard sets bit 4
        command(0x20)
        #expect(data() == 0x57)
    }

    @Test func selfTestsPass() {
        command(0xAA)
        #expect(data() == 0x55)
        command(0xAB)
        #expect(status() == 1)
        #expect(data() == 0x00)
    }

    @Test func otherPortsAreIgnored() {
        send(0xFF)                         // a keyboard reset: the keyboard answers, nothing resets
        #expect(data() == 0xFA && data() == 0xAA)
        #expect(status() == 0)
        #expect(controller.read(offset: 1, size: 1) == 0xFF)
        controller.write(offset: 1, size: 1, value: 0xFE)
        #expect(resets.all.isEmpty)
    }

    @Test func onTheBusAt0x60() throws {
        let bus = IOBus()
        try bus.register(controller, base: I8042.basePort, length: I8042.portCount)
        #expect(bus.read(port: 0x64, size: 1) == 0)
        bus.write(port: 0x64, size: 1, value: 0xFE)
        #expect(resets.all.count == 1)
    }
}

/// The keyboard behind the controller: enough for Linux's atkbd, and Ctrl+Alt+Del injection.
@Suite struct I8042KeyboardTests {
    final class Line: InterruptLine, @unchecked Sendable {
        var pulses = 0
        func setLevel(_ high: Bool) { if high { pulses += 1 } }
    }
    let irq = Line()
    let controller: I8042
    init() { controller = I8042(keyboardInterrupt: irq) {} }

    func drain() -> [UInt8] {
        var out: [UInt8] = []
        while controller.read(offset: 4, size: 1) & 1 == 1 { out.append(UInt8(controller.read(offset: 0, size: 1))) }
        return out
    }
    func send(_ d: UInt8) { controller.write(offset: 0, size: 1, value: UInt32(d)) }

    @Test func keyboardCommandsAreAnswered() {
        send(0xFF); #expect(drain() == [0xFA, 0xAA])
        send(0xF2); #expect(drain() == [0xFA, 0xAB, 0x83])
        send(0xED); #expect(drain() == [0xFA])
        send(0x07); #expect(drain() == [0xFA])         // the LED parameter
        send(0xF0); send(0x00); #expect(drain() == [0xFA, 0x02])
        send(0xF4); #expect(drain() == [0xFA])
        #expect(irq.pulses > 0)
    }

    @Test func ctrlAltDelInTranslatedSet1() {
        #expect(controller.ctrlAltDelScanCodes() == [0x1D, 0x38, 0xE0, 0x53, 0xE0, 0xD3, 0xB8, 0x9D])
        var read: [UInt8] = []
        for code in controller.ctrlAltDelScanCodes() {
            #expect(controller.sendKeyboardByte(code))
            #expect(!controller.isOutputEmpty)
            read += drain()
            #expect(controller.isOutputEmpty)
        }
        #expect(read == controller.ctrlAltDelScanCodes())
        #expect(irq.pulses == 8)                        // one per byte
    }

    @Test func ctrlAltDelInSet2WithoutTranslationOrInterrupts() {
        controller.write(offset: 4, size: 1, value: 0x60)
        send(0x04)                                       // command byte: no translation, no IRQ 1
        #expect(controller.ctrlAltDelScanCodes() == [0x14, 0x11, 0xE0, 0x71, 0xE0, 0xF0, 0x71, 0xF0, 0x11, 0xF0, 0x14])
        controller.sendKeyboardByte(0x14)
        #expect(irq.pulses == 0)
        #expect(drain() == [0x14])
    }

    @Test func queuedKeyBytesRaiseIRQ1AgainAsTheyAreRead() {
        controller.sendKeyboardByte(0x1D)
        controller.sendKeyboardByte(0x9D)
        #expect(drain() == [0x1D, 0x9D])
        #expect(irq.pulses == 3)                        // two sends, one re-raise on reading the first
    }

    @Test func unreadKeyBytesCanRaiseIRQ1Again() {
        controller.repeatKeyboardInterrupt()
        #expect(irq.pulses == 0, "nothing waiting, no interrupt")
        controller.sendKeyboardByte(0x1D)
        controller.repeatKeyboardInterrupt()
        #expect(irq.pulses == 2)
        #expect(drain() == [0x1D])
        controller.repeatKeyboardInterrupt()
        #expect(irq.pulses == 2, "read: no retry")
        controller.write(offset: 4, size: 1, value: 0xAA)  // a controller reply is not a key
        controller.repeatKeyboardInterrupt()
        #expect(irq.pulses == 2)
    }

    @Test func aGuestThatNeverReadsCannotGrowTheBuffer() {
        for _ in 0..<100 { controller.sendKeyboardByte(0x1D) }
        #expect(drain().count <= I8042.outputLimit)
    }
}
