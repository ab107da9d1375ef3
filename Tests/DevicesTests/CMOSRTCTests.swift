import Testing
import Backends
@testable import Devices

@Suite struct CMOSRTCTests {
    /// 2026-11-21 19:05:09 UTC, a Saturday.
    static let knownTime = 1_795_287_909
    let rtc = CMOSRTC(now: { CMOSRTCTests.knownTime })

    func cmos(_ index: UInt8) -> UInt8 {
        rtc.write(offset: 0, size: 1, value: UInt32(index))
        return UInt8(truncatingIfNeeded: rtc.read(offset: 1, size: 1))
    }

    func setCMOS(_ index: UInt8, _ value: UInt8) {
        rtc.write(offset: 0, size: 1, value: UInt32(index))
        rtc.write(offset: 1, size: 1, value: UInt32(value))
    }

    @Test func timeRegistersAreBCDByDefault() {
        let expected: [(UInt8, UInt8)] = [
            (0x00, 0x09), (0x02, 0x05), (0x04, 0x19), (0x06, 0x07),  // Saturday = 7
            (0x07, 0x21), (0x08, 0x11), (0x09, 0x26), (0x32, 0x20),
        ]
        for (index, value) in expected {
            #expect(cmos(index) == value, "register 0x\(String(index, radix: 16))")
        }
    }

    @Test func binaryModeFollowsRegisterB() {
        setCMOS(0x0B, 0x02 | 0x04)
        #expect(cmos(0x00) == 9)
        #expect(cmos(0x04) == 19)
        #expect(cmos(0x09) == 26)
        #expect(cmos(0x32) == 20)
    }

    @Test func twelveHourMode() {
        setCMOS(0x0B, 0x00)                 // BCD, 12-hour
        #expect(cmos(0x04) == 0x80 | 0x07)  // 7 PM
        let midnight = CMOSRTC(now: { 0 })  // 1970-01-01 00:00:00, a Thursday
        midnight.write(offset: 0, size: 1, value: 0x0B)
        midnight.write(offset: 1, size: 1, value: 0x00)
        midnight.write(offset: 0, size: 1, value: 0x04)
        #expect(midnight.read(offset: 1, size: 1) == 0x12)  // 12 AM
        midnight.write(offset: 0, size: 1, value: 0x06)
        #expect(midnight.read(offset: 1, size: 1) == 5)
    }

    @Test func statusRegisters() {
        #expect(cmos(0x0A) == 0x26)        // UIP clear, 32.768 kHz, 1024 Hz
        #expect(cmos(0x0B) == 0x02)        // 24-hour, BCD
        #expect(cmos(0x0C) == 0)
        #expect(cmos(0x0D) == 0x80)        // valid RAM and time
        setCMOS(0x0A, 0xA6)                // UIP cannot be set by the guest
        #expect(cmos(0x0A) == 0x26)
        setCMOS(0x0D, 0x00)
        #expect(cmos(0x0D) == 0x80)
    }

    @Test func indexIgnoresTheNMIMaskBit() {
        #expect(cmos(0x80 | 0x04) == 0x19)
        setCMOS(0x80 | 0x40, 0xAB)
        #expect(cmos(0x40) == 0xAB)
    }

    @Test func ramBytesAreStoredAndTimeWritesIgnored() {
        for index: UInt8 in [0x01, 0x0E, 0x10, 0x31, 0x33, 0x7F] {
            setCMOS(index, index ^ 0x5A)
            #expect(cmos(index) == index ^ 0x5A)
        }
        setCMOS(0x00, 0x59)
        #expect(cmos(0x00) == 0x09)
        rtc.setRAM(0x12, at: 0x34)
        #expect(cmos(0x34) == 0x12)
        #expect(rtc.read(offset: 0, size: 1) == 0xFF)  // index port is write-only
    }

    @Test func clockIsReadFreshEachTime() {
        let clock = Recorder<Int>()
        let ticking = CMOSRTC(now: { clock.record(1); return CMOSRTCTests.knownTime + clock.all.count })
        ticking.write(offset: 0, size: 1, value: 0)
        #expect(ticking.read(offset: 1, size: 1) == 0x10)
        #expect(ticking.read(offset: 1, size: 1) == 0x11)
    }

    @Test func defaultClockIsTheHostClock() {
        let host = CMOSRTC()
        host.write(offset: 0, size: 1, value: 0x32)
        #expect(host.read(offset: 1, size: 1) == 0x20)  // 20xx
    }
}
