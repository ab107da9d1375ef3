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

    @Test func keyboardTrafficAndOtherPortsAreIgnored() {
        send(0xFF)                         // a keyboard reset command with no keyboard
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
