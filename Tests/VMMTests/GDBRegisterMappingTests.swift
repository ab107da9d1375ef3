import GDBRemote
import Hypervisor
import Testing
@testable import VMM

/// The KVM register state <-> GDB's amd64 register file conversion, x87 tag word included.
@Suite struct GDBRegisterMappingTests {
    @Test func generalRegistersInGDBOrder() {
        var r = Registers()
        r.rax = 1; r.rbx = 2; r.rcx = 3; r.rdx = 4; r.rsi = 5; r.rdi = 6; r.rbp = 7; r.rsp = 8
        r.r8 = 9; r.r12 = 13; r.r15 = 16; r.rip = 0x100020; r.rflags = 0x246
        var s = SpecialRegisters()
        s.cs.selector = 8; s.ss.selector = 0x10; s.gs.selector = 0x10
        let g = GDBRegisterMapping.file(r, s, FPUState())
        #expect(g[.rax] == 1 && g[.rbx] == 2 && g[.rcx] == 3 && g[.rdx] == 4)
        #expect(g[.rsi] == 5 && g[.rdi] == 6 && g[.rbp] == 7 && g[.rsp] == 8)
        #expect(g[.r8] == 9 && g[.r12] == 13 && g[.r15] == 16)     // solo5-hvt-debug sends r12-r15 as 0
        #expect(g[.rip] == 0x100020 && g[.eflags] == 0x246)
        #expect(g[.cs] == 8 && g[.ss] == 0x10 && g[.gs] == 0x10)
        #expect(g[.fctrl] == 0x37F && g[.mxcsr] == 0x1F80)          // not shifted left 16 as the peer's
        #expect(g[.ftag] == 0xFFFF)                                  // all empty
    }

    @Test func writesComeBackAndReservedFlagBitsHold() {
        let r = Registers(), f = FPUState()
        var s = SpecialRegisters()
        s.cr0 = 0x80050033; s.cr2 = 0x7ffffffff000; s.efer = 0xD00; s.fs.base = 0x10c000
        var g = GDBRegisterMapping.file(r, s, f)
        #expect(g[.cr0] == 0x80050033 && g[.cr2] == 0x7ffffffff000 && g[.efer] == 0xD00 && g[.fsBase] == 0x10c000)
        g[.rdi] = 20
        g[.r13] = 0xDEAD
        g[.eflags] = 0x240                       // bit 1 cleared by the debugger
        let (newR, newS, newF) = GDBRegisterMapping.apply(g, to: r, s, f)
        #expect(newR?.rdi == 20 && newR?.r13 == 0xDEAD && newR?.rflags == 0x242)
        #expect(newS == nil && newF == nil)
        g[.gsBase] = 0x2000
        #expect(GDBRegisterMapping.apply(g, to: r, s, f).1?.gs.base == 0x2000)
        // Nothing changed: nothing to write.
        let same = GDBRegisterMapping.apply(GDBRegisterMapping.file(r, s, f), to: r, s, f)
        #expect(same.0 == nil && same.1 == nil && same.2 == nil)
    }

    @Test func x87TagWordFromTheAbridgedOne() {
        var f = FPUState()
        // ST0 holds 1.0 (exponent 0x3FFF, integer bit set), ST1 is +0; TOP = 6, so ST0 is
        // physical register 6 and ST1 physical 7.
        f.fsw = 6 << 11
        f.ftwx = 0b1100_0000
        f.st.replaceSubrange(0..<10, with: [0, 0, 0, 0, 0, 0, 0, 0x80, 0xFF, 0x3F])
        let word = GDBRegisterMapping.fullTagWord(f)
        #expect(word == 0b0100_1111_1111_1111)   // phys 7 zero (01), phys 6 valid (00), rest empty (11)
        #expect(GDBRegisterMapping.abridgedTag(word) == 0b1100_0000)
    }
}
