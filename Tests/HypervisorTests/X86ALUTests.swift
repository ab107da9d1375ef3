import Testing
@testable import Hypervisor

@Suite struct X86ALUTests {
    @Test func masksAndSignExtension() {
        #expect(X86ALU.mask(1) == 0xFF && X86ALU.mask(4) == 0xFFFF_FFFF && X86ALU.mask(8) == UInt64.max)
        #expect(X86ALU.signExtend(0x80, from: 1) == 0xFFFF_FFFF_FFFF_FF80)
        #expect(X86ALU.signExtend(0x7FFF, from: 2) == 0x7FFF)
    }

    @Test func sbbBorrowsWithoutOverflowingTheOperand() {
        // 0 - 0xff - CF at a byte: result 0, borrow.
        let (result, flags) = X86ALU.compute(.sbb, 0, 0xFF, size: 1, flags: X86Flags.carry)
        #expect(result == 0)
        #expect(flags & (X86Flags.carry | X86Flags.zero) == X86Flags.carry | X86Flags.zero)
        let wide = X86ALU.compute(.sbb, 5, UInt64.max, size: 8, flags: X86Flags.carry)
        #expect(wide.result == 5 && wide.flags & X86Flags.carry != 0)
    }

    @Test func adcCarriesAtEveryWidth() {
        for size in [1, 2, 4, 8] {
            let (result, flags) = X86ALU.compute(.adc, X86ALU.mask(size), 0, size: size, flags: X86Flags.carry)
            #expect(result == 0 && flags & X86Flags.carry != 0 && flags & X86Flags.zero != 0)
        }
    }

    /// Vectors recorded from the host CPU (each op run with PUSHF/POPF around it, RFLAGS masked to
    /// the six status flags). CMP leaves its first operand as the "result".
    @Test(arguments: [
        (.add, 1, 0xB8, 0xB9, 0, 0x71, 0x815),
        (.add, 2, 0x6568, 0x6569, 1, 0xCAD1, 0x894),
        (.add, 4, 0x6E4CA82B, 0x6E4CA82B, 0, 0xDC995056, 0x894),
        (.add, 8, 0x91882BE0A5432CEB, 0x91882BE0A5432CEC, 0, 0x231057C14A8659D7, 0x815),
        (.or, 1, 0x77, 0xFF, 1, 0xFF, 0x84),
        (.or, 2, 0xFFFF, 0xEB12, 1, 0xFFFF, 0x84),
        (.or, 4, 0xD4C06A3A, 0x0, 1, 0xD4C06A3A, 0x84),
        (.or, 8, 0xE73B9D9E8314BBBA, 0x905FEEC843D2F5A1, 0, 0xF77FFFDEC3D6FFBB, 0x84),
        (.adc, 1, 0xFF, 0x90, 1, 0x90, 0x95),
        (.adc, 2, 0xFFFF, 0xDF2B, 1, 0xDF2B, 0x95),
        (.adc, 4, 0x6FE49E4D, 0x2C0E47C9, 1, 0x9BF2E617, 0x894),
        (.adc, 8, 0x8C4CA4013ED9704F, 0x8C4CA4013ED9704F, 1, 0x189948027DB2E09F, 0x815),
        (.sbb, 1, 0x97, 0x97, 1, 0xFF, 0x95),
        (.sbb, 2, 0x62F9, 0xD90B, 1, 0x89ED, 0x895),
        (.sbb, 4, 0x915EAB3F, 0x915EAB3F, 1, 0xFFFFFFFF, 0x95),
        (.sbb, 8, 0xE99DC836B2CFA161, 0xE99DC836B2CFA161, 1, 0xFFFFFFFFFFFFFFFF, 0x95),
        (.and, 1, 0x8D, 0x8D, 1, 0x8D, 0x84),
        (.and, 2, 0x448C, 0x0, 0, 0x0, 0x44),
        (.and, 4, 0x8BBA9F0A, 0x0, 1, 0x0, 0x44),
        (.and, 8, 0xD2AA6FBC596668EF, 0x0, 1, 0x0, 0x44),
        (.sub, 1, 0x25, 0x26, 1, 0xFF, 0x95),
        (.sub, 2, 0x714, 0x715, 1, 0xFFFF, 0x95),
        (.sub, 4, 0x78694085, 0xAB9AE9DC, 1, 0xCCCE56A9, 0x895),
        (.sub, 8, 0x29153A46DAF8A532, 0x35F9D7B8EEE2FDAB, 0, 0xF31B628DEC15A787, 0x95),
        (.xor, 1, 0xFF, 0x27, 0, 0xD8, 0x84),
        (.xor, 2, 0x5A8C, 0xC96D, 0, 0x93E1, 0x84),
        (.xor, 4, 0xF700ABCC, 0xF700ABCC, 1, 0x0, 0x44),
        (.xor, 8, 0xA28A478114D96A05, 0x0, 1, 0xA28A478114D96A05, 0x84),
        (.cmp, 1, 0x45, 0x46, 0, 0x45, 0x95),
        (.cmp, 2, 0x1D90, 0x88C6, 0, 0x1D90, 0x895),
        (.cmp, 4, 0x1949C730, 0x1949C731, 0, 0x1949C730, 0x95),
        (.cmp, 8, 0x9B61A9D0386730E1, 0x9B61A9D0386730E2, 1, 0x9B61A9D0386730E1, 0x95),
    ] as [(X86Operation, Int, UInt64, UInt64, UInt64, UInt64, UInt64)])
    func matchesHardware(operation: X86Operation, size: Int, a: UInt64, b: UInt64, carryIn: UInt64,
                         result: UInt64, flags: UInt64) {
        let out = X86ALU.compute(operation, a, b, size: size, flags: 0x202 | carryIn)
        if operation != .cmp { #expect(out.result == result) }
        #expect(out.flags & X86Flags.arithmetic == flags)
        #expect(out.flags & 0x200 != 0)  // IF untouched
    }
}
