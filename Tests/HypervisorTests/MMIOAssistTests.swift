import GuestMemory
import Testing
@testable import Hypervisor

/// A fake MMIO device: records every access and answers reads from a script or a register file.
final class FakeDevice {
    enum Access: Equatable {
        case read(UInt64, Int)
        case write(UInt64, Int, UInt64)
    }

    var log: [Access] = []
    /// Values returned for reads at an address (default: the low bytes of the address, so every
    /// element of a string read is distinct).
    var values: [UInt64: UInt64] = [:]

    func read(_ address: UInt64, _ size: Int) -> UInt64 {
        log.append(.read(address, size))
        return values[address] ?? address
    }

    func write(_ address: UInt64, _ size: Int, _ value: UInt64) {
        log.append(.write(address, size, value))
        values[address] = value
    }
}

private let mmio: UInt64 = 0xFEE0_0000
private let cf = X86Flags.carry, pf = X86Flags.parity, af = X86Flags.adjust
private let zf = X86Flags.zero, sf = X86Flags.sign, of = X86Flags.overflow

@Suite struct MMIOAssistTests {
    let memory = try! GuestMemory(size: 1 << 20)
    let device = FakeDevice()

    /// Decodes `bytes` (64-bit mode unless given) and emulates them against the fake device.
    @discardableResult
    func run(_ bytes: [UInt8], _ registers: inout Registers, fault: UInt64 = mmio, mode: X86ExecutionMode = .bits64,
             context: MMIOAssist.Context = MMIOAssist.Context()) throws -> MMIOAssist.Outcome {
        let instruction = try X86InstructionDecoder.decode(bytes, mode: mode)
        return try MMIOAssist.emulate(instruction, faultAddress: fault, registers: &registers, memory: memory,
                                      context: context, read: device.read, write: device.write)
    }

    func registers(rip: UInt64 = 0x1000, _ set: (inout Registers) -> Void = { _ in }) -> Registers {
        var r = Registers()
        r.rip = rip
        set(&r)
        return r
    }

    // MARK: MOV

    @Test func storesAtEachSize() throws {
        var r = registers { $0.rax = 0x1122_3344_5566_7788; $0.rbx = mmio }
        try run([0x89, 0x03], &r)                  // mov %eax,(%rbx)
        try run([0x48, 0x89, 0x03], &r)            // mov %rax,(%rbx)
        try run([0x66, 0x89, 0x03], &r)            // mov %ax,(%rbx)
        try run([0x88, 0x03], &r)                  // mov %al,(%rbx)
        try run([0x88, 0x23], &r)                  // mov %ah,(%rbx)
        #expect(device.log == [.write(mmio, 4, 0x5566_7788), .write(mmio, 8, 0x1122_3344_5566_7788),
                               .write(mmio, 2, 0x7788), .write(mmio, 1, 0x88), .write(mmio, 1, 0x77)])
        #expect(r.rip == 0x1000 + 2 + 3 + 3 + 2 + 2)
    }

    @Test func immediateStores() throws {
        var r = registers { $0.rdi = mmio }
        try run([0x48, 0xC7, 0x07, 0xFF, 0xFF, 0xFF, 0xFF], &r)  // movq $-1,(%rdi)
        try run([0xC7, 0x07, 0xCD, 0xAB, 0x34, 0x12], &r)        // movl $0x1234abcd,(%rdi)
        r.rbp = mmio + 8
        try run([0xC6, 0x45, 0xF8, 0x7F], &r)                    // movb $0x7f,-8(%rbp)
        #expect(device.log == [.write(mmio, 8, UInt64.max), .write(mmio, 4, 0x1234_ABCD), .write(mmio, 1, 0x7F)])
    }

    @Test func loadsFollowRegisterWriteRules() throws {
        device.values[mmio] = 0x8877_6655_4433_2211
        var r = registers { $0.rbx = mmio; $0.rcx = UInt64.max; $0.rsi = mmio }
        try run([0x8B, 0x0B], &r)                  // mov (%rbx),%ecx: 32-bit write zero-extends
        #expect(r.rcx == 0x4433_2211)
        r.rcx = UInt64.max
        try run([0x66, 0x8B, 0x0B], &r)            // mov (%rbx),%cx: keeps bits 16-63
        #expect(r.rcx == 0xFFFF_FFFF_FFFF_2211)
        try run([0x8A, 0x0B], &r)                  // mov (%rbx),%cl
        #expect(r.rcx == 0xFFFF_FFFF_FFFF_2211)
        r.rbx = mmio
        try run([0x8A, 0x3E], &r)                  // mov (%rsi),%bh: bits 8-15 of RBX
        #expect(r.rbx == (mmio & ~0xFF00) | 0x1100)
        r.rbx = mmio
        try run([0x48, 0x8B, 0x03], &r)            // mov (%rbx),%rax
        #expect(r.rax == 0x8877_6655_4433_2211)
        #expect(device.log.allSatisfy { if case .read(mmio, _) = $0 { true } else { false } })
        #expect(device.log.map { if case .read(_, let size) = $0 { size } else { 0 } } == [4, 2, 1, 1, 8])
    }

    @Test func zeroAndSignExtendingLoads() throws {
        device.values[mmio] = 0x8081
        var r = registers { $0.rax = mmio; $0.rcx = UInt64.max; $0.r8 = 1 }
        try run([0x0F, 0xB6, 0x08], &r)            // movzbl (%rax),%ecx
        #expect(r.rcx == 0x81)
        try run([0x0F, 0xBE, 0x08], &r)            // movsbl (%rax),%ecx: 32-bit result, upper zero
        #expect(r.rcx == 0xFFFF_FF81)
        try run([0x4C, 0x0F, 0xB7, 0x00], &r)      // movzwq (%rax),%r8
        #expect(r.r8 == 0x8081)
        r.r13 = mmio
        try run([0x49, 0x0F, 0xBF, 0x45, 0x00], &r) // movswq 0(%r13),%rax
        #expect(r.rax == 0xFFFF_FFFF_FFFF_8081)
        device.values[mmio] = 0x8000_0000
        r.rax = mmio
        try run([0x48, 0x63, 0x10], &r)            // movslq (%rax),%rdx
        #expect(r.rdx == 0xFFFF_FFFF_8000_0000)
        #expect(device.log.map { if case .read(_, let size) = $0 { size } else { 0 } } == [1, 1, 2, 2, 4])
    }

    @Test func moffsAndFSRelativeAddressing() throws {
        var r = registers { $0.rax = 0xAB }
        try run([0xA2, 0x00, 0x00, 0xE0, 0xFE, 0, 0, 0, 0], &r)   // movabs %al,0xfee00000
        #expect(device.log == [.write(mmio, 1, 0xAB)])
        var context = MMIOAssist.Context()
        context.segmentBases.fs = mmio
        device.values[mmio + 0x28] = 0x42
        try run([0x64, 0x48, 0x8B, 0x04, 0x25, 0x28, 0, 0, 0], &r, fault: mmio + 0x28, context: context)
        #expect(r.rax == 0x42)
        // DS/ES bases are ignored in 64-bit mode.
        context.segmentBases.ds = 0x1000
        r.rbx = mmio
        try run([0x89, 0x03], &r, context: context)
    }

    @Test func ripRelativeUsesTheNextInstructionAddress() throws {
        var r = registers(rip: mmio - 0x100) { $0.rdx = 7 }
        // mov %edx,0xfa(%rip): length 6, so target = rip + 6 + 0xfa = mmio.
        try run([0x89, 0x15, 0xFA, 0x00, 0x00, 0x00], &r)
        #expect(device.log == [.write(mmio, 4, 7)])
        #expect(r.rip == mmio - 0x100 + 6)
    }

    @Test func mismatchedFaultAddressIsRefusedWithoutSideEffects() throws {
        var r = registers { $0.rbx = mmio + 4 }
        let before = r
        #expect(throws: MMIOAssistError.addressMismatch(faultAddress: mmio, computed: mmio + 4)) {
            try run([0x89, 0x03], &r)
        }
        #expect(r == before)
        #expect(device.log.isEmpty)
        // With real paging only the page offset can be checked.
        var context = MMIOAssist.Context()
        context.paging = GuestPaging(mode: .fourLevel, cr3: 0)
        r.rbx = 0xFFFF_8000_0000_0004
        try run([0x89, 0x03], &r, fault: mmio + 4, context: context)
        #expect(device.log == [.write(mmio + 4, 4, 0)])
        #expect(throws: MMIOAssistError.addressMismatch(faultAddress: mmio, computed: 0xFFFF_8000_0000_0004)) {
            try run([0x89, 0x03], &r, fault: mmio, context: context)
        }
    }

    @Test func thirtyTwoBitModeWrapsAddressesAndRIP() throws {
        var context = MMIOAssist.Context()
        context.segmentBases.ds = 0x20
        var r = registers(rip: 0xFFFF_FFFF) { $0.rbx = 0xFFFF_FFF0; $0.rax = 0xDEAD_BEEF }
        // mov %eax,(%ebx): 0x20 + 0xfffffff0 wraps to 0x10.
        try run([0x89, 0x03], &r, fault: 0x10, mode: .bits32, context: context)
        #expect(device.log == [.write(0x10, 4, 0xDEAD_BEEF)])
        #expect(r.rip == 1)
        // 16-bit addressing: mov %ax,(%bx,%si) adds modulo 64 KiB before the segment base.
        r.rbx = 0xFFFF; r.rsi = 0x11
        try run([0x67, 0x66, 0x89, 0x00], &r, fault: 0x30, mode: .bits32, context: context)
        #expect(device.log.last == .write(0x30, 2, 0xBEEF))
    }

    // MARK: ALU

    @Test func readModifyWrite() throws {
        device.values[mmio] = 0xF0F0
        var r = registers { $0.rax = mmio; $0.rcx = 0xFFFF_0000_0000_00FF; $0.rflags = 0x2 | cf | of }
        try run([0x81, 0x20, 0xF0, 0x00, 0x00, 0x00], &r)   // andl $0xf0,(%rax)
        #expect(device.log == [.read(mmio, 4), .write(mmio, 4, 0xF0)])
        #expect(r.rflags == 0x2 | pf)                       // 0xf0 has four bits set; CF/OF cleared
        try run([0x80, 0x08, 0x01], &r)                     // orb $1,(%rax)
        #expect(device.values[mmio] == 0xF1)
        #expect(r.rflags == 0x2 | sf)                       // 0xf1: five bits, sign bit of a byte
        try run([0x31, 0x08], &r)                           // xor %ecx,(%rax)
        #expect(device.values[mmio] == 0x0E)
        #expect(r.rflags == 0x2)                            // 0x0e: three bits
        try run([0xF0, 0x83, 0x08, 0x01], &r)               // lock orl $1,(%rax)
        #expect(device.values[mmio] == 0x0F)
        #expect(r.rflags == 0x2 | pf)
        #expect(r.rcx == 0xFFFF_0000_0000_00FF)
    }

    @Test func subIntoARegister() throws {
        device.values[mmio] = 7
        var r = registers { $0.rax = mmio; $0.rdx = 0xFFFF_FFFF_0000_0005 }
        try run([0x2B, 0x10], &r)                           // sub (%rax),%edx: 5 - 7
        #expect(r.rdx == 0xFFFF_FFFE)                       // 32-bit write zero-extends
        #expect(r.rflags == 0x2 | cf | sf | af)             // borrow, negative; 0xfe has 7 bits (odd)
        #expect(device.log == [.read(mmio, 4)])
        try run([0x29, 0x10], &r)                           // sub %edx,(%rax): 7 - 0xfffffffe
        #expect(device.values[mmio] == 9)
        #expect(r.rflags & (cf | zf | sf | of) == cf)
    }

    @Test(arguments: [
        // (device value, instruction, expected arithmetic flags)
        (UInt64(0x12345), [UInt8]([0x81, 0x38, 0x45, 0x23, 0x01, 0x00]), zf | pf),        // cmpl equal
        (UInt64(0x12344), [0x81, 0x38, 0x45, 0x23, 0x01, 0x00], cf | sf | pf | af),        // below: 0xffffffff
        (UInt64(0x0000), [0x66, 0x83, 0x38, 0xFE], cf | af),                               // 0 - 0xfffe = 2
        (UInt64(0x80), [0x80, 0x38, 0x01], of | af),                                       // 0x80 - 1 = 0x7f
        (UInt64(0x7F), [0x80, 0x38, 0x81], cf | of | sf),                                  // 0x7f - 0x81 = 0xfe (7 bits: odd)
        (UInt64(0x80), [0xF6, 0x00, 0x80], sf),                                            // testb $0x80
        (UInt64(0x7F), [0xF6, 0x00, 0x80], zf | pf),                                       // testb, no common bits
        (UInt64(0x8000_0000), [0xF7, 0x00, 0x00, 0x00, 0x00, 0x80], sf | pf),             // testl $0x80000000
        (UInt64(3), [0x85, 0x08], pf),                                                     // test %ecx,(%rax): 3 & 3
    ] as [(UInt64, [UInt8], UInt64)])
    func compareAndTestSetFlagsOnly(value: UInt64, bytes: [UInt8], flags: UInt64) throws {
        device.values[mmio] = value
        var r = registers { $0.rax = mmio; $0.rcx = 3; $0.rflags = 0x2 | X86Flags.arithmetic | X86Flags.direction }
        try run(bytes, &r)
        #expect(r.rflags & X86Flags.arithmetic == flags)
        #expect(r.rflags & X86Flags.direction != 0)         // untouched
        #expect(device.log.count == 1)                      // a read, never a write
        #expect(r.rax == mmio && r.rcx == 3)
    }

    @Test func compareRegisterWithMemoryKeepsOperandOrder() throws {
        device.values[mmio] = 5
        var r = registers { $0.rax = mmio; $0.rcx = 3 }
        try run([0x3B, 0x08], &r)                           // cmp (%rax),%ecx: ecx - mem = 3 - 5
        #expect(r.rflags & cf != 0)
        try run([0x39, 0x08], &r)                           // cmp %ecx,(%rax): mem - ecx = 5 - 3
        #expect(r.rflags & cf == 0)
    }

    @Test func addAndAdcCarry() throws {
        device.values[mmio] = 0xFFFF_FFFF_FFFF_FFFF
        var r = registers { $0.rax = mmio; $0.rcx = 1 }
        try run([0x48, 0x01, 0x08], &r)                     // add %rcx,(%rax)
        #expect(device.values[mmio] == 0)
        #expect(r.rflags & (cf | zf | of) == cf | zf)
        try run([0x48, 0x11, 0x08], &r)                     // adc %rcx,(%rax): 0 + 1 + CF
        #expect(device.values[mmio] == 2)
        device.values[mmio] = 0x7F
        try run([0x80, 0x00, 0x01], &r)                     // addb $1,(%rax)
        #expect(device.values[mmio] == 0x80)
        #expect(r.rflags & (cf | of | sf | af) == of | sf | af)
    }

    @Test func exchange() throws {
        device.values[mmio] = 0xAAAA_AAAA
        var r = registers { $0.rbx = mmio; $0.rax = 0xFFFF_FFFF_1234_5678 }
        try run([0x87, 0x03], &r)                           // xchg %eax,(%rbx)
        #expect(device.log == [.read(mmio, 4), .write(mmio, 4, 0x1234_5678)])
        #expect(r.rax == 0xAAAA_AAAA)
    }

    // MARK: String instructions

    @Test func repMovsFromRAMToDevice() throws {
        try memory.write((0..<16).map { UInt8($0) }, at: GuestAddress(0x2000))
        var r = registers { $0.rsi = 0x2000; $0.rdi = mmio; $0.rcx = 4 }
        let outcome = try run([0xF3, 0xA5], &r)             // rep movsl
        #expect(outcome == MMIOAssist.Outcome(iterations: 4, completed: true))
        #expect(device.log == [.write(mmio, 4, 0x0302_0100), .write(mmio + 4, 4, 0x0706_0504),
                               .write(mmio + 8, 4, 0x0B0A_0908), .write(mmio + 12, 4, 0x0F0E_0D0C)])
        #expect(r.rsi == 0x2010 && r.rdi == mmio + 16 && r.rcx == 0 && r.rip == 0x1002)
    }

    /// A string copy into a read-only mapping (ROM inside `memory`): the reads come from memory,
    /// the writes go to the device, as KVM makes a write to a read-only slot an MMIO exit.
    @Test func movsIntoReadOnlyMemoryGoesToTheDevice() throws {
        try memory.write([0xAA, 0xBB], at: GuestAddress(0x2000))
        try memory.write([0x11, 0x22], at: GuestAddress(0x8000))
        var context = MMIOAssist.Context()
        context.readOnlyRanges = [0x8000..<0x9000]
        var r = registers { $0.rsi = 0x2000; $0.rdi = 0x8000; $0.rcx = 2 }
        try run([0xF3, 0xA4], &r, fault: 0x8000, context: context)   // rep movsb
        #expect(device.log == [.write(0x8000, 1, 0xAA), .write(0x8001, 1, 0xBB)])
        #expect(try memory.read(at: GuestAddress(0x8000), count: 2) == [0x11, 0x22])
        // Reading the ROM is a memory read, not a device access.
        r = registers { $0.rsi = 0x8000; $0.rdi = mmio; $0.rcx = 1 }
        try run([0xF3, 0xA4], &r, context: context)
        #expect(device.log.last == .write(mmio, 1, 0x11))
        #expect(device.log.count == 3)
    }

    @Test func movsFromDeviceToRAMBackwards() throws {
        var r = registers { $0.rsi = mmio + 3; $0.rdi = 0x2003; $0.rcx = 3; $0.rflags = 0x2 | X86Flags.direction }
        try run([0xF3, 0xA4], &r, fault: mmio + 3)          // std; rep movsb
        #expect(device.log == [.read(mmio + 3, 1), .read(mmio + 2, 1), .read(mmio + 1, 1)])
        #expect(try memory.read(at: GuestAddress(0x2000), count: 4) == [0x00, 0x01, 0x02, 0x03])
        #expect(r.rsi == mmio && r.rdi == 0x2000 && r.rcx == 0)
        // A single MOVSQ with the fault on the destination side.
        try memory.store(UInt64(0x1122_3344_5566_7788), at: GuestAddress(0x3000))
        r.rflags = 0x2; r.rsi = 0x3000; r.rdi = mmio
        try run([0x48, 0xA5], &r)
        #expect(device.log.last == .write(mmio, 8, 0x1122_3344_5566_7788))
        #expect(r.rcx == 0 && r.rsi == 0x3008)
    }

    @Test func repStosIsBoundedPerCall() throws {
        var context = MMIOAssist.Context()
        context.maxRepeatCount = 4
        var r = registers { $0.rdi = mmio; $0.rcx = 10; $0.rax = 0xFFFF_FFFF_CAFE_F00D }
        var outcome = try run([0xF3, 0xAB], &r, context: context)  // rep stosl
        #expect(outcome == MMIOAssist.Outcome(iterations: 4, completed: false))
        #expect(r.rcx == 6 && r.rdi == mmio + 16 && r.rip == 0x1000)
        outcome = try run([0xF3, 0xAB], &r, fault: mmio + 16, context: context)
        #expect(outcome == MMIOAssist.Outcome(iterations: 4, completed: false))
        outcome = try run([0xF3, 0xAB], &r, fault: mmio + 32, context: context)
        #expect(outcome == MMIOAssist.Outcome(iterations: 2, completed: true))
        #expect(r.rcx == 0 && r.rdi == mmio + 40 && r.rip == 0x1002)
        #expect(device.log.count == 10)
        #expect(device.log.allSatisfy { if case .write(_, 4, 0xCAFE_F00D) = $0 { true } else { false } })
    }

    @Test func repWithZeroCountOnlyAdvancesRIP() throws {
        var r = registers { $0.rdi = mmio; $0.rcx = 0 }
        let outcome = try run([0xF3, 0xAA], &r)
        #expect(outcome == MMIOAssist.Outcome(iterations: 0, completed: true))
        #expect(device.log.isEmpty && r.rip == 0x1002)
    }

    @Test func addressSizeOverrideUsesECXAndEDI() throws {
        // 67 f3 aa: rep stosb %al,(%edi) with ECX as the count; the upper halves are zeroed.
        var r = registers { $0.rdi = 0xFFFF_FFFF_0000_0000 | mmio; $0.rcx = 0xFFFF_FFFF_0000_0002; $0.rax = 0x55 }
        try run([0x67, 0xF3, 0xAA], &r)
        #expect(device.log == [.write(mmio, 1, 0x55), .write(mmio + 1, 1, 0x55)])
        #expect(r.rcx == 0 && r.rdi == mmio + 2)
    }

    @Test func lodsLoadsIntoRAX() throws {
        device.values[mmio] = 0xBEEF
        var r = registers { $0.rsi = mmio; $0.rax = 0x1111_1111_1111_1111 }
        try run([0x66, 0xAD], &r)                           // lodsw: keeps bits 16-63
        #expect(r.rax == 0x1111_1111_1111_BEEF && r.rsi == mmio + 2)
        r.rsi = mmio
        try run([0xAD], &r)                                 // lodsl: zero-extends
        #expect(r.rax == 0xBEEF && r.rsi == mmio + 4)
        // GS-based source in 64-bit mode.
        var context = MMIOAssist.Context()
        context.segmentBases.gs = mmio
        r.rsi = 0x10
        try run([0x65, 0xAC], &r, fault: mmio + 0x10, context: context)
        #expect(device.log.last == .read(mmio + 0x10, 1))
        #expect(r.rsi == 0x11)
    }

    @Test func stringFaultMustMatchAnOperand() throws {
        var r = registers { $0.rsi = 0x2000; $0.rdi = mmio + 8; $0.rcx = 1 }
        let before = r
        #expect(throws: MMIOAssistError.addressMismatch(faultAddress: mmio, computed: 0x2000)) {
            try run([0xA4], &r)
        }
        #expect(r == before && device.log.isEmpty)
    }

    @Test func stringOperandsAreTranslatedAndPermissionChecked() throws {
        // Code pages are irrelevant here; map a read-only RAM page and an MMIO page.
        let tables = try PageTableBuilder(memory: memory, root: 0x80000)
        try tables.map(0x7000_0000, to: 0x4000, flags: PageTableBuilder.present | PageTableBuilder.user)
        try tables.map(0x7000_1000, to: mmio)
        var context = MMIOAssist.Context()
        context.paging = GuestPaging(mode: .fourLevel, cr3: 0x80000)
        try memory.store(UInt32(0x600D_F00D), at: GuestAddress(0x4000))

        // RAM (read-only is fine for reading) -> MMIO.
        var r = registers { $0.rsi = 0x7000_0000; $0.rdi = 0x7000_1000 }
        try run([0xA5], &r, context: context)
        #expect(device.log == [.write(mmio, 4, 0x600D_F00D)])

        // MMIO -> read-only RAM: refused before the device is read.
        r.rsi = 0x7000_1000; r.rdi = 0x7000_0000
        #expect(throws: MMIOAssistError.protectionViolation(linearAddress: 0x7000_0000, write: true)) {
            try run([0xA5], &r, context: context)
        }
        #expect(device.log.count == 1)
        // Without CR0.WP a supervisor write goes through.
        context.enforcesWriteProtect = false
        device.values[mmio] = 0x1234
        try run([0xA5], &r, context: context)
        #expect(try memory.load(UInt32.self, at: GuestAddress(0x4000)) == 0x1234)

        // Unmapped source page: a translation error, nothing done.
        r.rsi = 0x7000_5000; r.rdi = 0x7000_1000
        #expect(throws: MMIOAssistError.translation(.notPresent(virtualAddress: 0x7000_5000, level: 1))) {
            try run([0xA5], &r, context: context)
        }
    }

    @Test func elementsSpanningDiscontiguousPagesAreRefused() throws {
        let tables = try PageTableBuilder(memory: memory, root: 0x80000)
        try tables.map(0x7000_0000, to: 0x4000)
        try tables.map(0x7000_1000, to: 0x9000)
        try tables.map(0x7000_2000, to: mmio)
        var context = MMIOAssist.Context()
        context.paging = GuestPaging(mode: .fourLevel, cr3: 0x80000)
        var r = registers { $0.rsi = 0x7000_0FFE; $0.rdi = 0x7000_2000 }
        #expect(throws: MMIOAssistError.splitAccess(linearAddress: 0x7000_0FFE, size: 4)) {
            try run([0xA5], &r, context: context)
        }
        #expect(device.log.isEmpty)
    }

    // MARK: Whole-exit entry point

    @Test func fetchDecodeAndEmulateInLongMode() throws {
        // Identity-map the first 2 MiB with one large page and put the code at 0x1000.
        let tables = try PageTableBuilder(memory: memory, root: 0x80000)
        try tables.map(0, to: 0, pageSize: 1 << 21)
        try tables.map(0x4000_0000, to: mmio)
        try memory.write([0x89, 0x03], at: GuestAddress(0x1000))   // mov %eax,(%rbx)
        var s = SpecialRegisters()
        s.cr0 = 1 << 31 | 1 << 16 | 1
        s.cr3 = 0x80000
        s.cr4 = 1 << 5
        s.efer = 1 << 10 | 1 << 8
        s.cs.l = true
        var r = registers { $0.rbx = 0x4000_0010; $0.rax = 0x77 }
        let outcome = try MMIOAssist.emulate(faultAddress: mmio + 0x10, registers: &r, specialRegisters: s,
                                             memory: memory, read: device.read, write: device.write)
        #expect(outcome.completed)
        #expect(device.log == [.write(mmio + 0x10, 4, 0x77)])
        #expect(r.rip == 0x1002)
    }

    @Test func fetchDecodeAndEmulateInProtectedModeWithoutPaging() throws {
        try memory.write([0x66, 0xA5], at: GuestAddress(0x10500))   // movsw, CS base 0x10000
        try memory.store(UInt16(0xABCD), at: GuestAddress(0x2000))
        var s = SpecialRegisters()
        s.cr0 = 1
        s.cs.db = true
        s.cs.base = 0x10000
        var r = registers(rip: 0x500) { $0.rsi = 0x2000; $0.rdi = mmio }
        _ = try MMIOAssist.emulate(faultAddress: mmio, registers: &r, specialRegisters: s, memory: memory,
                                   read: device.read, write: device.write)
        #expect(device.log == [.write(mmio, 2, 0xABCD)])
        #expect(r.rip == 0x502 && r.rsi == 0x2002)
        #expect(MMIOAssist.executionMode(s) == .bits32)

        // Undecodable bytes at RIP surface as a decode error.
        try memory.write([0x0F, 0x0B], at: GuestAddress(0x10502))  // ud2
        #expect(throws: MMIOAssistError.decode(.unsupportedOpcode(0x0F0B))) {
            try MMIOAssist.emulate(faultAddress: mmio, registers: &r, specialRegisters: s, memory: memory,
                                   read: device.read, write: device.write)
        }
    }

    // MARK: Robustness

    @Test func handEditedInstructionsAreRefusedNotTrusted() throws {
        var instruction = try X86InstructionDecoder.decode([0x89, 0x03])
        instruction.accessSize = 3
        var r = registers { $0.rbx = mmio }
        #expect(throws: MMIOAssistError.unsupported(.mov)) {
            try MMIOAssist.emulate(instruction, faultAddress: mmio, registers: &r, memory: memory,
                                   context: MMIOAssist.Context(), read: device.read, write: device.write)
        }
        instruction.accessSize = 4
        instruction.length = -1
        #expect(throws: MMIOAssistError.unsupported(.mov)) {
            try MMIOAssist.emulate(instruction, faultAddress: mmio, registers: &r, memory: memory,
                                   context: MMIOAssist.Context(), read: device.read, write: device.write)
        }
        #expect(device.log.isEmpty)
    }

    @Test func randomInstructionsAndRegistersNeverTrap() {
        var state: UInt64 = 0x0123_4567_89AB_CDEF
        func random() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state ^ (state >> 29)
        }
        var context = MMIOAssist.Context(maxRepeatCount: 8)
        context.segmentBases = X86SegmentBases(es: random(), ds: random(), fs: random(), gs: random())
        var emulated = 0
        for round in 0..<30_000 {
            var bytes = X86InstructionBytes()
            for _ in 0..<15 { bytes.append(UInt8(truncatingIfNeeded: random())) }
            let mode: X86ExecutionMode = [.bits64, .bits32, .bits16][round % 3]
            guard let instruction = try? X86InstructionDecoder.decode(bytes, mode: mode) else { continue }
            var r = Registers()
            for n in 0..<16 { r[gpr: n] = round & 1 == 0 ? random() : random() & 0xF_FFFF }
            r.rip = random()
            r.rflags = random()
            // Aim the fault where the instruction points, so emulation goes past the cross-check.
            var fault = random()
            if let operand = instruction.memory {
                fault = MMIOAssist.linearAddress(of: operand, instruction: instruction, registers: r,
                                                 bases: context.segmentBases)
            } else if instruction.operation == .lods {
                fault = MMIOAssist.linear(r.rsi & X86ALU.mask(instruction.addressSize),
                                          segment: instruction.prefixes.segment ?? .ds, mode: mode,
                                          bases: context.segmentBases)
            } else {
                fault = MMIOAssist.linear(r.rdi & X86ALU.mask(instruction.addressSize), segment: .es, mode: mode,
                                          bases: context.segmentBases)
            }
            if (try? MMIOAssist.emulate(instruction, faultAddress: fault, registers: &r, memory: memory,
                                        context: context, read: { a, _ in a }, write: { _, _, _ in })) != nil {
                emulated += 1
            }
        }
        #expect(emulated > 1000)
    }
}
