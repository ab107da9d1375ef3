import Hypervisor
import Testing

/// KVM_SET_GUEST_DEBUG's debug registers and the decoding of debug exits.
@Suite struct GuestDebugTests {
    @Test func dr7Encoding() {
        #expect(GuestDebug().dr7 == 0x600)
        let exec = GuestDebug(hardware: [.init(address: 0x100fc0, trigger: .execute, length: 1)])
        #expect(exec.dr7 == 0x600 | 0b10)                                   // G0, R/W0 = 00, LEN0 = 00
        let watch = GuestDebug(hardware: [.init(address: 0x1000, trigger: .execute, length: 1),
                                          .init(address: 0x2000, trigger: .write, length: 4)])
        #expect(watch.dr7 == 0x600 | 0b10 | 0b1000 | (0b01 << 20) | (0b11 << 22))
        let access8 = GuestDebug(hardware: [.init(address: 0x2000, trigger: .readWrite, length: 8)])
        #expect(access8.dr7 == 0x600 | 0b10 | (0b11 << 16) | (0b10 << 18))
    }

    @Test func watchableRanges() {
        #expect(GuestDebug.isValid(length: 4, at: 0x1000, trigger: .write))
        #expect(!GuestDebug.isValid(length: 4, at: 0x1002, trigger: .write))   // unaligned
        #expect(!GuestDebug.isValid(length: 3, at: 0x1000, trigger: .write))
        #expect(!GuestDebug.isValid(length: 16, at: 0x1000, trigger: .readWrite))
        #expect(GuestDebug.isValid(length: 1, at: 0x1003, trigger: .execute))
    }

    @Test func debugExitReasons() {
        #expect(DebugExit(exception: 3, pc: 0x1000, dr6: 0, dr7: 0).isSoftwareBreakpoint)
        let step = DebugExit(exception: 1, pc: 0x1001, dr6: 0xFFFF4FF0, dr7: 0x400)
        #expect(step.isSingleStep && step.hardwareSlot == nil)
        let hw = DebugExit(exception: 1, pc: 0x1000, dr6: 0xFFFF0FF2, dr7: 0x60A)
        #expect(hw.hardwareSlot == 1 && !hw.isSingleStep)
    }
}
