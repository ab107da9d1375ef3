import Testing
@testable import Hypervisor

/// One expected decoding. Byte sequences come from GNU as + objdump (AT&T syntax in `name`).
struct DecodeCase: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    var mode: X86ExecutionMode = .bits64
    var operation: X86Operation
    var form: X86OperandForm
    var operandSize: Int
    var accessSize: Int? = nil
    var addressSize: Int = 8
    var memory: X86MemoryOperand?
    var register: X86Register?
    var immediate: UInt64? = nil

    var testDescription: String { name }
}

private func mem(_ segment: X86SegmentRegister = .ds, base: Int? = nil, index: Int? = nil, scale: Int = 1,
                 disp: Int64 = 0, rip: Bool = false) -> X86MemoryOperand {
    X86MemoryOperand(segment: segment, base: base, index: index, scale: scale, displacement: disp, isRIPRelative: rip)
}

private func reg(_ number: Int, _ size: Int, high: Bool = false) -> X86Register {
    X86Register(number: number, size: size, isHighByte: high)
}

// Register numbers.
private let rax = 0, rcx = 1, rdx = 2, rbx = 3, rsp = 4, rbp = 5, rsi = 6, rdi = 7
private let r8 = 8, r9 = 9, r12 = 12, r13 = 13

@Suite struct X86InstructionDecoderTests {
    static let cases: [DecodeCase] = [
        DecodeCase(name: "mov %eax,(%rbx)", bytes: [0x89, 0x03], operation: .mov, form: .memoryRegister,
                   operandSize: 4, memory: mem(base: rbx), register: reg(rax, 4)),
        DecodeCase(name: "mov %rax,(%rbx)", bytes: [0x48, 0x89, 0x03], operation: .mov, form: .memoryRegister,
                   operandSize: 8, memory: mem(base: rbx), register: reg(rax, 8)),
        DecodeCase(name: "mov (%rbx),%ecx", bytes: [0x8B, 0x0B], operation: .mov, form: .registerMemory,
                   operandSize: 4, memory: mem(base: rbx), register: reg(rcx, 4)),
        DecodeCase(name: "mov %ah,(%rbx)", bytes: [0x88, 0x23], operation: .mov, form: .memoryRegister,
                   operandSize: 1, memory: mem(base: rbx), register: reg(rax, 1, high: true)),
        DecodeCase(name: "mov (%rsi),%bh", bytes: [0x8A, 0x3E], operation: .mov, form: .registerMemory,
                   operandSize: 1, memory: mem(base: rsi), register: reg(rbx, 1, high: true)),
        DecodeCase(name: "mov %sil,(%rbx) (bare REX)", bytes: [0x40, 0x88, 0x33], operation: .mov,
                   form: .memoryRegister, operandSize: 1, memory: mem(base: rbx), register: reg(rsi, 1)),
        DecodeCase(name: "mov %r9d,0x10(%r12) (REX.RB, SIB, disp8)", bytes: [0x45, 0x89, 0x4C, 0x24, 0x10],
                   operation: .mov, form: .memoryRegister, operandSize: 4, memory: mem(base: r12, disp: 0x10),
                   register: reg(r9, 4)),
        DecodeCase(name: "mov 0x12345678(%rip),%edx", bytes: [0x8B, 0x15, 0x78, 0x56, 0x34, 0x12], operation: .mov,
                   form: .registerMemory, operandSize: 4, memory: mem(disp: 0x1234_5678, rip: true),
                   register: reg(rdx, 4)),
        DecodeCase(name: "mov %ax,(%rbx,%rcx,4) (66)", bytes: [0x66, 0x89, 0x04, 0x8B], operation: .mov,
                   form: .memoryRegister, operandSize: 2, memory: mem(base: rbx, index: rcx, scale: 4),
                   register: reg(rax, 2)),
        DecodeCase(name: "mov 0x100(,%rcx,8),%eax (SIB no base)", bytes: [0x8B, 0x04, 0xCD, 0x00, 0x01, 0x00, 0x00],
                   operation: .mov, form: .registerMemory, operandSize: 4,
                   memory: mem(index: rcx, scale: 8, disp: 0x100), register: reg(rax, 4)),
        DecodeCase(name: "movl $0x1234abcd,(%rdi)", bytes: [0xC7, 0x07, 0xCD, 0xAB, 0x34, 0x12], operation: .mov,
                   form: .memoryImmediate, operandSize: 4, memory: mem(base: rdi), immediate: 0x1234_ABCD),
        DecodeCase(name: "movq $-1,(%rdi) (imm32 sign-extended)", bytes: [0x48, 0xC7, 0x07, 0xFF, 0xFF, 0xFF, 0xFF],
                   operation: .mov, form: .memoryImmediate, operandSize: 8, memory: mem(base: rdi),
                   immediate: UInt64.max),
        DecodeCase(name: "movb $0x7f,-8(%rbp) (disp8 negative, SS default)", bytes: [0xC6, 0x45, 0xF8, 0x7F],
                   operation: .mov, form: .memoryImmediate, operandSize: 1, memory: mem(.ss, base: rbp, disp: -8),
                   immediate: 0x7F),
        DecodeCase(name: "movw $0x1234,(%rax)", bytes: [0x66, 0xC7, 0x00, 0x34, 0x12], operation: .mov,
                   form: .memoryImmediate, operandSize: 2, memory: mem(base: rax), immediate: 0x1234),
        DecodeCase(name: "movabs 0x1122334455667788,%eax", bytes: [0xA1, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11],
                   operation: .mov, form: .registerMemory, operandSize: 4,
                   memory: mem(disp: 0x1122_3344_5566_7788), register: reg(rax, 4)),
        DecodeCase(name: "movabs %al,0x1122334455667788", bytes: [0xA2, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11],
                   operation: .mov, form: .memoryRegister, operandSize: 1,
                   memory: mem(disp: 0x1122_3344_5566_7788), register: reg(rax, 1)),
        DecodeCase(name: "movzbl (%rax),%ecx", bytes: [0x0F, 0xB6, 0x08], operation: .movzx, form: .registerMemory,
                   operandSize: 4, accessSize: 1, memory: mem(base: rax), register: reg(rcx, 4)),
        DecodeCase(name: "movzwq (%rax),%r8", bytes: [0x4C, 0x0F, 0xB7, 0x00], operation: .movzx,
                   form: .registerMemory, operandSize: 8, accessSize: 2, memory: mem(base: rax), register: reg(r8, 8)),
        DecodeCase(name: "movsbl (%rax),%ecx", bytes: [0x0F, 0xBE, 0x08], operation: .movsx, form: .registerMemory,
                   operandSize: 4, accessSize: 1, memory: mem(base: rax), register: reg(rcx, 4)),
        DecodeCase(name: "movswq 0(%r13),%rax (r13 needs disp8)", bytes: [0x49, 0x0F, 0xBF, 0x45, 0x00],
                   operation: .movsx, form: .registerMemory, operandSize: 8, accessSize: 2,
                   memory: mem(base: r13), register: reg(rax, 8)),
        DecodeCase(name: "movslq (%rax),%rdx", bytes: [0x48, 0x63, 0x10], operation: .movsxd, form: .registerMemory,
                   operandSize: 8, accessSize: 4, memory: mem(base: rax), register: reg(rdx, 8)),
        DecodeCase(name: "movsb", bytes: [0xA4], operation: .movs, form: .string, operandSize: 1),
        DecodeCase(name: "rep movsq", bytes: [0xF3, 0x48, 0xA5], operation: .movs, form: .string, operandSize: 8),
        DecodeCase(name: "rep stosl", bytes: [0xF3, 0xAB], operation: .stos, form: .string, operandSize: 4,
                   register: reg(rax, 4)),
        DecodeCase(name: "lodsw", bytes: [0x66, 0xAD], operation: .lods, form: .string, operandSize: 2,
                   register: reg(rax, 2)),
        DecodeCase(name: "andl $0xf0,(%rax)", bytes: [0x81, 0x20, 0xF0, 0x00, 0x00, 0x00], operation: .and,
                   form: .memoryImmediate, operandSize: 4, memory: mem(base: rax), immediate: 0xF0),
        DecodeCase(name: "orb $1,(%rax)", bytes: [0x80, 0x08, 0x01], operation: .or, form: .memoryImmediate,
                   operandSize: 1, memory: mem(base: rax), immediate: 1),
        DecodeCase(name: "xor %ecx,(%rax)", bytes: [0x31, 0x08], operation: .xor, form: .memoryRegister,
                   operandSize: 4, memory: mem(base: rax), register: reg(rcx, 4)),
        DecodeCase(name: "sub (%rax),%edx", bytes: [0x2B, 0x10], operation: .sub, form: .registerMemory,
                   operandSize: 4, memory: mem(base: rax), register: reg(rdx, 4)),
        DecodeCase(name: "cmpl $0x12345,(%rax)", bytes: [0x81, 0x38, 0x45, 0x23, 0x01, 0x00], operation: .cmp,
                   form: .memoryImmediate, operandSize: 4, memory: mem(base: rax), immediate: 0x12345),
        DecodeCase(name: "cmpw $-2,(%rax) (83 imm8 sign-extended)", bytes: [0x66, 0x83, 0x38, 0xFE], operation: .cmp,
                   form: .memoryImmediate, operandSize: 2, memory: mem(base: rax), immediate: UInt64.max - 1),
        DecodeCase(name: "cmp %cl,(%rdx)", bytes: [0x38, 0x0A], operation: .cmp, form: .memoryRegister,
                   operandSize: 1, memory: mem(base: rdx), register: reg(rcx, 1)),
        DecodeCase(name: "test %eax,(%rbx)", bytes: [0x85, 0x03], operation: .test, form: .memoryRegister,
                   operandSize: 4, memory: mem(base: rbx), register: reg(rax, 4)),
        DecodeCase(name: "testb $0x80,(%rbx)", bytes: [0xF6, 0x03, 0x80], operation: .test, form: .memoryImmediate,
                   operandSize: 1, memory: mem(base: rbx), immediate: UInt64.max - 0x7F),
        DecodeCase(name: "testl $0x80000000,(%rbx)", bytes: [0xF7, 0x03, 0x00, 0x00, 0x00, 0x80], operation: .test,
                   form: .memoryImmediate, operandSize: 4, memory: mem(base: rbx), immediate: 0xFFFF_FFFF_8000_0000),
        DecodeCase(name: "xchg %eax,(%rbx)", bytes: [0x87, 0x03], operation: .xchg, form: .memoryRegister,
                   operandSize: 4, memory: mem(base: rbx), register: reg(rax, 4)),
        DecodeCase(name: "mov %fs:0x28,%rax (SIB absolute)", bytes: [0x64, 0x48, 0x8B, 0x04, 0x25, 0x28, 0x00, 0x00, 0x00],
                   operation: .mov, form: .registerMemory, operandSize: 8, memory: mem(.fs, disp: 0x28),
                   register: reg(rax, 8)),
        DecodeCase(name: "mov %eax,%gs:(%rbx)", bytes: [0x65, 0x89, 0x03], operation: .mov, form: .memoryRegister,
                   operandSize: 4, memory: mem(.gs, base: rbx), register: reg(rax, 4)),
        DecodeCase(name: "cs mov (%rax),%eax", bytes: [0x2E, 0x8B, 0x00], operation: .mov, form: .registerMemory,
                   operandSize: 4, memory: mem(.cs, base: rax), register: reg(rax, 4)),
        DecodeCase(name: "mov %eax,(%ebx) (67)", bytes: [0x67, 0x89, 0x03], operation: .mov, form: .memoryRegister,
                   operandSize: 4, addressSize: 4, memory: mem(base: rbx), register: reg(rax, 4)),
        DecodeCase(name: "mov (%r12,%r12,2),%eax (REX.XB)", bytes: [0x43, 0x8B, 0x04, 0x64], operation: .mov,
                   form: .registerMemory, operandSize: 4, memory: mem(base: r12, index: r12, scale: 2),
                   register: reg(rax, 4)),
        DecodeCase(name: "mov (%rsp),%eax", bytes: [0x8B, 0x04, 0x24], operation: .mov, form: .registerMemory,
                   operandSize: 4, memory: mem(.ss, base: rsp), register: reg(rax, 4)),
        DecodeCase(name: "mov %eax,0x12345678 (disp32 via SIB)", bytes: [0x89, 0x04, 0x25, 0x78, 0x56, 0x34, 0x12],
                   operation: .mov, form: .memoryRegister, operandSize: 4, memory: mem(disp: 0x1234_5678),
                   register: reg(rax, 4)),
        DecodeCase(name: "mov 0x10(%eip),%eax (67 RIP-relative)", bytes: [0x67, 0x8B, 0x05, 0x10, 0x00, 0x00, 0x00],
                   operation: .mov, form: .registerMemory, operandSize: 4, addressSize: 4,
                   memory: mem(disp: 0x10, rip: true), register: reg(rax, 4)),
        DecodeCase(name: "mov -0x80000000(%rax),%eax (disp32 negative)",
                   bytes: [0x8B, 0x80, 0x00, 0x00, 0x00, 0x80], operation: .mov, form: .registerMemory,
                   operandSize: 4, memory: mem(base: rax, disp: -0x8000_0000), register: reg(rax, 4)),
        // 32-bit protected mode (as --32).
        DecodeCase(name: "32: mov %eax,(%ebx)", bytes: [0x89, 0x03], mode: .bits32, operation: .mov,
                   form: .memoryRegister, operandSize: 4, addressSize: 4, memory: mem(base: rbx),
                   register: reg(rax, 4)),
        DecodeCase(name: "32: mov 0x1234,%ecx (absolute disp32)", bytes: [0x8B, 0x0D, 0x34, 0x12, 0x00, 0x00],
                   mode: .bits32, operation: .mov, form: .registerMemory, operandSize: 4, addressSize: 4,
                   memory: mem(disp: 0x1234), register: reg(rcx, 4)),
        DecodeCase(name: "32: mov 0x1000,%eax (moffs32)", bytes: [0xA1, 0x00, 0x10, 0x00, 0x00], mode: .bits32,
                   operation: .mov, form: .registerMemory, operandSize: 4, addressSize: 4, memory: mem(disp: 0x1000),
                   register: reg(rax, 4)),
        DecodeCase(name: "32: mov %ax,(%bx,%si) (67 66)", bytes: [0x67, 0x66, 0x89, 0x00], mode: .bits32,
                   operation: .mov, form: .memoryRegister, operandSize: 2, addressSize: 2,
                   memory: mem(base: rbx, index: rsi), register: reg(rax, 2)),
        DecodeCase(name: "32: mov 0x10(%bp),%al", bytes: [0x67, 0x8A, 0x46, 0x10], mode: .bits32, operation: .mov,
                   form: .registerMemory, operandSize: 1, addressSize: 2, memory: mem(.ss, base: rbp, disp: 0x10),
                   register: reg(rax, 1)),
        DecodeCase(name: "32: addr16 mov 0x1234,%eax (moffs16)", bytes: [0x67, 0xA1, 0x34, 0x12], mode: .bits32,
                   operation: .mov, form: .registerMemory, operandSize: 4, addressSize: 2, memory: mem(disp: 0x1234),
                   register: reg(rax, 4)),
        DecodeCase(name: "32: movsw", bytes: [0x66, 0xA5], mode: .bits32, operation: .movs, form: .string,
                   operandSize: 2, addressSize: 4),
        DecodeCase(name: "32: mov %eax,%fs:4(%esi)", bytes: [0x64, 0x89, 0x46, 0x04], mode: .bits32, operation: .mov,
                   form: .memoryRegister, operandSize: 4, addressSize: 4, memory: mem(.fs, base: rsi, disp: 4),
                   register: reg(rax, 4)),
        DecodeCase(name: "16: mov %ax,(%bx)", bytes: [0x89, 0x07], mode: .bits16, operation: .mov,
                   form: .memoryRegister, operandSize: 2, addressSize: 2, memory: mem(base: rbx), register: reg(rax, 2)),
    ]

    @Test(arguments: cases)
    func decodes(_ c: DecodeCase) throws {
        let i = try X86InstructionDecoder.decode(c.bytes, mode: c.mode)
        #expect(i.operation == c.operation)
        #expect(i.form == c.form)
        #expect(i.operandSize == c.operandSize)
        #expect(i.accessSize == (c.accessSize ?? c.operandSize))
        #expect(i.addressSize == c.addressSize)
        #expect(i.memory == c.memory)
        #expect(i.register == c.register)
        #expect(i.immediate == c.immediate)
        #expect(i.length == c.bytes.count)
        #expect(i.mode == c.mode)
    }

    @Test func trailingBytesAreNotPartOfTheInstruction() throws {
        let i = try X86InstructionDecoder.decode([0x89, 0x03, 0x90, 0x90, 0xCC])
        #expect(i.length == 2)
    }

    @Test func prefixesAndREXAreRecorded() throws {
        let i = try X86InstructionDecoder.decode([0xF3, 0x48, 0xA5])
        #expect(i.prefixes.repetition == .rep)
        #expect(i.rex.isPresent && i.rex.w && !i.rex.r && !i.rex.x && !i.rex.b)
        #expect(i.opcode == 0xA5)

        let lock = try X86InstructionDecoder.decode([0xF0, 0x83, 0x08, 0x01])
        #expect(lock.prefixes.lock && lock.operation == .or && lock.immediate == 1)

        let rx = try X86InstructionDecoder.decode([0x43, 0x8B, 0x04, 0x64])
        #expect(rx.rex.x && rx.rex.b && !rx.rex.w)

        let seg = try X86InstructionDecoder.decode([0x64, 0x48, 0x8B, 0x04, 0x25, 0x28, 0, 0, 0])
        #expect(seg.prefixes.segment == .fs)

        let sized = try X86InstructionDecoder.decode([0x66, 0x67, 0x89, 0x03])
        #expect(sized.prefixes.operandSizeOverride && sized.prefixes.addressSizeOverride)
        #expect(sized.operandSize == 2 && sized.addressSize == 4)

        let repne = try X86InstructionDecoder.decode([0xF3, 0xF2, 0xAA])
        #expect(repne.prefixes.repetition == .repne)
        #expect(try X86InstructionDecoder.decode([0x0F, 0xB6, 0x08]).opcode == 0x0FB6)
    }

    @Test func rexBeforeALegacyPrefixIsIgnored() throws {
        // 48 66 89 03: the REX is not adjacent to the opcode, so this is a 16-bit store.
        let i = try X86InstructionDecoder.decode([0x48, 0x66, 0x89, 0x03])
        #expect(!i.rex.isPresent)
        #expect(i.operandSize == 2)
        // 66 48 89 03: REX.W wins over 66.
        #expect(try X86InstructionDecoder.decode([0x66, 0x48, 0x89, 0x03]).operandSize == 8)
    }

    @Test func rexExtendsByteRegisterAndREXRReachesR8toR15() throws {
        // 44 88 03: mov %r8b,(%rbx)
        let i = try X86InstructionDecoder.decode([0x44, 0x88, 0x03])
        #expect(i.register == X86Register(number: 8, size: 1))
        // 40 88 23: mov %spl,(%rbx) -- not AH, because a REX is present.
        #expect(try X86InstructionDecoder.decode([0x40, 0x88, 0x23]).register == X86Register(number: 4, size: 1))
    }

    @Test func fifteenByteInstructionDecodesAndSixteenIsTooLong() throws {
        // cs cs cs movq $0x12345678,0x100(%rax,%rcx,4): 3 prefixes + REX + C7 ModRM SIB disp32 imm32.
        let body: [UInt8] = [0x48, 0xC7, 0x84, 0x88, 0x00, 0x01, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12]
        let fifteen = [0x2E, 0x2E, 0x2E] + body
        let i = try X86InstructionDecoder.decode(fifteen)
        #expect(i.length == 15)
        #expect(i.immediate == 0x1234_5678)
        #expect(i.memory == X86MemoryOperand(segment: .cs, base: 0, index: 1, scale: 4, displacement: 0x100))
        #expect(throws: X86DecodeError.truncated(available: 14)) {
            _ = try X86InstructionDecoder.decode(fifteen.dropLast())
        }
        #expect(throws: X86DecodeError.tooLong) {
            _ = try X86InstructionDecoder.decode([0x2E] + fifteen)
        }
    }

    @Test(arguments: [
        ([UInt8](), X86DecodeError.truncated(available: 0)),
        ([0x89], .truncated(available: 1)),
        ([0x66, 0x48], .truncated(available: 2)),
        ([0x8B, 0x04], .truncated(available: 2)),             // SIB missing
        ([0x8B, 0x80, 0x00, 0x00], .truncated(available: 4)), // disp32 cut
        ([0xC7, 0x00, 0x01, 0x02], .truncated(available: 4)), // imm32 cut
        ([0xA1, 0x00, 0x10], .truncated(available: 3)),       // moffs64 cut
        ([0x0F], .truncated(available: 1)),
        ([0x90], .unsupportedOpcode(0x90)),
        ([0x04, 0x01], .unsupportedOpcode(0x04)),             // add $1,%al (no memory operand)
        ([0x0F, 0x05], .unsupportedOpcode(0x0F05)),
        ([0x89, 0xC3], .registerOperand(opcode: 0x89)),       // mov %eax,%ebx
        ([0x0F, 0xB6, 0xC0], .registerOperand(opcode: 0x0FB6)),
        ([0xF7, 0x18], .unsupportedExtension(opcode: 0xF7, extension: 3)),   // negl (%rax)
        ([0xC7, 0x08, 0, 0, 0, 0], .unsupportedExtension(opcode: 0xC7, extension: 1)),
        ([0xF0, 0x89, 0x03], .lockNotAllowed(opcode: 0x89)),
        ([0xF0, 0x39, 0x03], .lockNotAllowed(opcode: 0x39)),
    ] as [([UInt8], X86DecodeError)])
    func refuses(_ bytes: [UInt8], _ error: X86DecodeError) {
        #expect(throws: error) { _ = try X86InstructionDecoder.decode(bytes) }
    }

    @Test func moreThanFifteenBytesIsRefused() {
        // Fourteen prefixes then an opcode needing ModRM: byte 16 would be required.
        let bytes = [UInt8](repeating: 0x66, count: 14) + [0x89, 0x03]
        #expect(throws: X86DecodeError.tooLong) { _ = try X86InstructionDecoder.decode(bytes) }
        let prefixesOnly = [UInt8](repeating: 0x2E, count: 20)
        #expect(throws: X86DecodeError.tooLong) { _ = try X86InstructionDecoder.decode(prefixesOnly) }
    }

    @Test func rexBytesAreOpcodesOutside64BitMode() {
        // 0x48 is DEC EAX in 32-bit mode.
        #expect(throws: X86DecodeError.unsupportedOpcode(0x48)) {
            _ = try X86InstructionDecoder.decode([0x48, 0x89, 0x03], mode: .bits32)
        }
        #expect(throws: X86DecodeError.unsupportedOpcode(0x63)) {
            _ = try X86InstructionDecoder.decode([0x63, 0x10], mode: .bits32)
        }
    }

    @Test func errorsDescribeThemselves() {
        #expect(X86DecodeError.unsupportedOpcode(0x0F05).description == "unsupported opcode 0xf05")
        #expect(X86DecodeError.tooLong.description.contains("15"))
    }

    @Test func instructionBytesHoldAtMostFifteen() {
        var bytes = X86InstructionBytes(0..<20)
        #expect(bytes.count == 15)
        #expect(Array(bytes) == Array(0..<15))
        bytes.append(99)
        #expect(bytes.count == 15)
        #expect(bytes[15] == 0 && bytes[-1] == 0)
    }

    @Test func randomBytesNeverTrap() {
        // Deterministic pseudo-random garbage: every outcome must be a value or a thrown error.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<20_000 {
            var bytes = X86InstructionBytes()
            for _ in 0..<15 {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                bytes.append(UInt8(truncatingIfNeeded: state >> 56))
            }
            for mode in [X86ExecutionMode.bits64, .bits32, .bits16] {
                if let i = try? X86InstructionDecoder.decode(bytes, mode: mode) {
                    #expect(i.length >= 1 && i.length <= 15)
                }
            }
        }
    }
}
