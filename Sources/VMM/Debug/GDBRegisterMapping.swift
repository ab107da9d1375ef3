import GDBRemote
import Hypervisor

/// Converts a vCPU's KVM register state to GDB's amd64 register file and back. The x87 part
/// follows what GDB itself does with an FXSAVE image: the full tag word is derived from the
/// abridged one and each register's contents, and in 64-bit mode fiseg/foseg hold the upper
/// halves of the last instruction and operand pointers.
enum GDBRegisterMapping {
    static var gprOrder: [KeyPath<Registers, UInt64>] { [
        \.rax, \.rbx, \.rcx, \.rdx, \.rsi, \.rdi, \.rbp, \.rsp,
        \.r8, \.r9, \.r10, \.r11, \.r12, \.r13, \.r14, \.r15,
    ] }
    static var writableGPROrder: [WritableKeyPath<Registers, UInt64>] { [
        \.rax, \.rbx, \.rcx, \.rdx, \.rsi, \.rdi, \.rbp, \.rsp,
        \.r8, \.r9, \.r10, \.r11, \.r12, \.r13, \.r14, \.r15,
    ] }

    static func file(_ r: Registers, _ s: SpecialRegisters, _ f: FPUState) -> AMD64Registers {
        var g = AMD64Registers()
        for (n, path) in gprOrder.enumerated() { g.set(n, bytes: le(r[keyPath: path], 8)) }
        g[.rip] = r.rip
        g[.eflags] = r.rflags & 0xFFFF_FFFF
        for (n, segment) in [s.cs, s.ss, s.ds, s.es, s.fs, s.gs].enumerated() {
            g.set(AMD64Registers.Number.cs.rawValue + n, bytes: le(UInt64(segment.selector), 4))
        }
        for i in 0..<8 { g.set(AMD64Registers.Number.st0.rawValue + i, bytes: f.st[i * 10..<i * 10 + 10]) }
        g[.fctrl] = UInt64(f.fcw)
        g[.fstat] = UInt64(f.fsw)
        g[.ftag] = UInt64(fullTagWord(f))
        g[.fiseg] = f.lastIP >> 32
        g[.fioff] = f.lastIP & 0xFFFF_FFFF
        g[.foseg] = f.lastDP >> 32
        g[.fooff] = f.lastDP & 0xFFFF_FFFF
        g[.fop] = UInt64(f.lastOpcode)
        for i in 0..<16 { g.set(AMD64Registers.Number.xmm0.rawValue + i, bytes: f.xmm[i * 16..<i * 16 + 16]) }
        g[.mxcsr] = UInt64(f.mxcsr)
        g[.fsBase] = s.fs.base
        g[.gsBase] = s.gs.base
        g[.cr0] = s.cr0; g[.cr2] = s.cr2; g[.cr3] = s.cr3; g[.cr4] = s.cr4; g[.cr8] = s.cr8
        g[.efer] = s.efer
        return g
    }

    /// Applies `g` over the current state; returns what changed (nil: unchanged). Segment
    /// selectors are not writable (a selector alone says nothing of the descriptor behind it);
    /// the segment bases and control registers are (KVM refuses values the CPU would).
    static func apply(_ g: AMD64Registers, to r: Registers, _ s: SpecialRegisters, _ f: FPUState)
        -> (Registers?, SpecialRegisters?, FPUState?) {
        var newR = r
        for (n, path) in writableGPROrder.enumerated() { newR[keyPath: path] = value(g.bytes(of: n)) }
        newR.rip = g[.rip]
        // Bit 1 of RFLAGS is reserved as one; the upper half is reserved as zero.
        newR.rflags = (g[.eflags] & 0xFFFF_FFFF) | 0x2
        var newF = f
        for i in 0..<8 { newF.st.replaceSubrange(i * 10..<i * 10 + 10, with: g.bytes(of: AMD64Registers.Number.st0.rawValue + i)) }
        newF.fcw = UInt16(truncatingIfNeeded: g[.fctrl])
        newF.fsw = UInt16(truncatingIfNeeded: g[.fstat])
        newF.ftwx = abridgedTag(UInt16(truncatingIfNeeded: g[.ftag]))
        newF.lastIP = (g[.fiseg] & 0xFFFF_FFFF) << 32 | (g[.fioff] & 0xFFFF_FFFF)
        newF.lastDP = (g[.foseg] & 0xFFFF_FFFF) << 32 | (g[.fooff] & 0xFFFF_FFFF)
        newF.lastOpcode = UInt16(truncatingIfNeeded: g[.fop])
        for i in 0..<16 { newF.xmm.replaceSubrange(i * 16..<i * 16 + 16, with: g.bytes(of: AMD64Registers.Number.xmm0.rawValue + i)) }
        newF.mxcsr = UInt32(truncatingIfNeeded: g[.mxcsr])
        var newS = s
        newS.fs.base = g[.fsBase]
        newS.gs.base = g[.gsBase]
        newS.cr0 = g[.cr0]; newS.cr2 = g[.cr2]; newS.cr3 = g[.cr3]; newS.cr4 = g[.cr4]; newS.cr8 = g[.cr8]
        newS.efer = g[.efer]
        return (newR == r ? nil : newR, newS == s ? nil : newS, newF == f ? nil : newF)
    }

    /// The x87 tag word (two bits per physical register: 00 valid, 01 zero, 10 special, 11
    /// empty) from FXSAVE's abridged tag and the registers' contents.
    static func fullTagWord(_ f: FPUState) -> UInt16 {
        let top = Int((f.fsw >> 11) & 7)
        var word: UInt16 = 0
        for physical in 0..<8 {
            var tag: UInt16 = 3
            if f.ftwx & (1 << UInt8(physical)) != 0 {
                let st = (physical - top + 8) & 7
                let bytes = f.st[st * 10..<st * 10 + 10]
                let exponent = UInt16(bytes[bytes.startIndex + 8]) | UInt16(bytes[bytes.startIndex + 9] & 0x7F) << 8
                let mantissa = value(bytes.prefix(8))
                if exponent == 0x7FFF { tag = 2 } else if exponent == 0 { tag = mantissa == 0 ? 1 : 2 } else { tag = mantissa >> 63 == 1 ? 0 : 2 }
            }
            word |= tag << (2 * UInt16(physical))
        }
        return word
    }

    /// FXSAVE's abridged tag: a register is in use unless its two tag bits say empty (11).
    static func abridgedTag(_ word: UInt16) -> UInt8 {
        var abridged: UInt8 = 0
        for i in 0..<8 where (word >> (2 * UInt16(i))) & 3 != 3 { abridged |= 1 << UInt8(i) }
        return abridged
    }

    private static func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }

    private static func value(_ bytes: some Collection<UInt8>) -> UInt64 {
        var v: UInt64 = 0
        for (i, b) in bytes.prefix(8).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        return v
    }
}
