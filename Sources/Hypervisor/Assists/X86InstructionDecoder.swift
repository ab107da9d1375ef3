import VMSpec

// A small x86 decoder for the instructions guests use to touch MMIO. It decodes only the
// memory-operand forms of those instructions: a register-to-register MOV never reaches an MMIO
// assist, so such encodings are refused rather than half-supported.

/// The operating mode of the code segment, which sets default operand and address sizes.
public enum X86ExecutionMode: Equatable, Sendable {
    /// 64-bit mode (long mode, CS.L = 1).
    case bits64
    /// 32-bit protected or compatibility mode (CS.D = 1).
    case bits32
    /// 16-bit protected, compatibility or real mode (CS.D = 0).
    case bits16
}

/// A segment register, numbered as in the x86 encoding.
public enum X86SegmentRegister: Int, Equatable, Sendable {
    case es = 0, cs, ss, ds, fs, gs
}

/// The F3 (REP/REPE) or F2 (REPNE) prefix; the last one given wins, as on hardware.
public enum X86RepeatPrefix: Equatable, Sendable {
    case rep
    case repne
}

/// The legacy prefixes of one instruction.
public struct X86Prefixes: Equatable, Sendable {
    /// 0x66.
    public var operandSizeOverride = false
    /// 0x67.
    public var addressSizeOverride = false
    /// 0xF0.
    public var lock = false
    /// 0xF3 or 0xF2.
    public var repetition: X86RepeatPrefix?
    /// The last segment-override prefix given (2E, 36, 3E, 26, 64, 65), as written.
    public var segment: X86SegmentRegister?

    public init() {}
}

/// A REX prefix (64-bit mode only). Kept even when all four bits are clear, because its mere
/// presence turns byte registers 4-7 into SPL/BPL/SIL/DIL instead of AH/CH/DH/BH.
public struct X86REX: Equatable, Sendable {
    /// The prefix byte (0x40-0x4F), or 0 when the instruction has none.
    public var rawValue: UInt8

    public init(rawValue: UInt8 = 0) { self.rawValue = rawValue }

    public var isPresent: Bool { rawValue & 0xF0 == 0x40 }
    /// 64-bit operand size.
    public var w: Bool { isPresent && rawValue & 8 != 0 }
    /// Extends ModRM.reg.
    public var r: Bool { isPresent && rawValue & 4 != 0 }
    /// Extends SIB.index.
    public var x: Bool { isPresent && rawValue & 2 != 0 }
    /// Extends ModRM.rm or SIB.base.
    public var b: Bool { isPresent && rawValue & 1 != 0 }
}

/// What an instruction does, independent of its encoding.
public enum X86Operation: Equatable, Sendable {
    case mov, movzx, movsx, movsxd
    case add, or, adc, sbb, and, sub, xor, cmp, test, xchg
    case movs, stos, lods
}

/// Which operands an instruction combines and where its result goes.
public enum X86OperandForm: Equatable, Sendable {
    /// `op r/m, reg`: memory is the destination (stores, read-modify-write ALU, TEST, XCHG).
    case memoryRegister
    /// `op reg, r/m`: the register is the destination (loads, MOVZX/MOVSX, ALU into a register).
    case registerMemory
    /// `op r/m, imm`: memory is the destination.
    case memoryImmediate
    /// MOVS/STOS/LODS: operands implied by RSI, RDI and RAX.
    case string
}

/// A general-purpose register operand at a given width.
public struct X86Register: Equatable, Sendable {
    /// Register number, 0 = RAX ... 15 = R15. For AH/CH/DH/BH this is the containing register (0-3).
    public var number: Int
    /// Width in bytes: 1, 2, 4 or 8.
    public var size: Int
    /// True for AH, CH, DH and BH (bits 8-15 of RAX, RCX, RDX, RBX).
    public var isHighByte: Bool

    public init(number: Int, size: Int, isHighByte: Bool = false) {
        self.number = number; self.size = size; self.isHighByte = isHighByte
    }
}

/// A decoded memory operand: `segment:[base + index*scale + displacement]`, or relative to the
/// next instruction's address when `isRIPRelative`.
public struct X86MemoryOperand: Equatable, Sendable {
    /// The override if one was given, else DS (SS when the base is RSP/RBP or BP).
    public var segment: X86SegmentRegister
    public var base: Int?
    public var index: Int?
    /// 1, 2, 4 or 8.
    public var scale: Int
    /// Sign-extended displacement; for MOV moffs the absolute offset (as a bit pattern).
    public var displacement: Int64
    public var isRIPRelative: Bool

    public init(segment: X86SegmentRegister = .ds, base: Int? = nil, index: Int? = nil, scale: Int = 1,
                displacement: Int64 = 0, isRIPRelative: Bool = false) {
        self.segment = segment; self.base = base; self.index = index; self.scale = scale
        self.displacement = displacement; self.isRIPRelative = isRIPRelative
    }
}

/// One decoded instruction: a plain value, no heap storage.
public struct X86Instruction: Equatable, Sendable {
    public var operation: X86Operation
    /// The opcode byte, or 0x0F00 | second byte for two-byte opcodes.
    public var opcode: UInt16
    public var form: X86OperandForm
    /// Effective operand size in bytes (the register operand's width; 1 for byte forms).
    public var operandSize: Int
    /// Bytes read or written at the memory operand (per element for string instructions).
    /// Differs from `operandSize` only for MOVZX, MOVSX and MOVSXD.
    public var accessSize: Int
    /// Effective address size in bytes: 2, 4 or 8.
    public var addressSize: Int
    public var prefixes: X86Prefixes
    public var rex: X86REX
    /// The explicit memory operand; nil for string instructions, whose operands are implied.
    public var memory: X86MemoryOperand?
    /// The register operand (RAX for MOV moffs, STOS and LODS); nil for immediate forms and MOVS.
    public var register: X86Register?
    /// The immediate, sign-extended to 64 bits as the instruction uses it.
    public var immediate: UInt64?
    /// Total length in bytes (1...15).
    public var length: Int
    /// The mode it was decoded in.
    public var mode: X86ExecutionMode
}

/// Why bytes could not be decoded.
public enum X86DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes end before the instruction does; `available` bytes were given.
    case truncated(available: Int)
    /// The instruction would be longer than the architectural limit of 15 bytes.
    case tooLong
    /// An opcode this decoder does not handle (0x0F00 | byte for two-byte opcodes).
    case unsupportedOpcode(UInt16)
    /// A group opcode whose ModRM.reg extension selects an unsupported operation.
    case unsupportedExtension(opcode: UInt16, extension: UInt8)
    /// ModRM names a register where this decoder requires a memory operand.
    case registerOperand(opcode: UInt16)
    /// LOCK on an instruction that raises #UD with it.
    case lockNotAllowed(opcode: UInt16)

    public var description: String {
        switch self {
        case .truncated(let n): "instruction truncated after \(n) bytes"
        case .tooLong: "instruction longer than 15 bytes"
        case .unsupportedOpcode(let op): "unsupported opcode \(op.hexString)"
        case let .unsupportedExtension(op, ext): "unsupported opcode \(op.hexString) /\(ext)"
        case .registerOperand(let op): "opcode \(op.hexString) has a register operand where memory is required"
        case .lockNotAllowed(let op): "LOCK prefix not allowed on opcode \(op.hexString)"
        }
    }

}

/// Up to 15 instruction bytes held inline in two words, so fetching and decoding never allocate.
public struct X86InstructionBytes: RandomAccessCollection, Equatable, Sendable {
    /// The architectural maximum length of one instruction.
    public static let capacity = 15

    private var low: UInt64 = 0
    private var high: UInt64 = 0
    public private(set) var count: Int = 0

    public init() {}

    /// The first (at most 15) bytes of `bytes`.
    public init(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            guard count < Self.capacity else { break }
            append(byte)
        }
    }

    /// Adds a byte; ignored once 15 are held.
    public mutating func append(_ byte: UInt8) {
        guard count < Self.capacity else { return }
        if count < 8 {
            low |= UInt64(byte) << (count * 8)
        } else {
            high |= UInt64(byte) << ((count - 8) * 8)
        }
        count += 1
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    /// The byte at `position`; 0 outside `0..<count` rather than a trap.
    public subscript(position: Int) -> UInt8 {
        guard position >= 0 && position < count else { return 0 }
        return position < 8 ? UInt8(truncatingIfNeeded: low >> (position * 8))
            : UInt8(truncatingIfNeeded: high >> ((position - 8) * 8))
    }
}

/// Decodes MOV, MOVZX/MOVSX/MOVSXD, MOVS/STOS/LODS, ADD/OR/ADC/SBB/AND/SUB/XOR/CMP, TEST and
/// XCHG in their memory-operand forms.
public enum X86InstructionDecoder {
    /// Decodes one instruction from the start of `bytes` (only the first 15 are considered).
    public static func decode(_ bytes: some Sequence<UInt8>,
                              mode: X86ExecutionMode = .bits64) throws(X86DecodeError) -> X86Instruction {
        try decode(X86InstructionBytes(bytes), mode: mode)
    }

    /// Decodes one instruction from fetched bytes.
    public static func decode(_ bytes: X86InstructionBytes,
                              mode: X86ExecutionMode = .bits64) throws(X86DecodeError) -> X86Instruction {
        var cursor = ByteCursor(bytes: bytes)
        var prefixes = X86Prefixes()
        var rex = X86REX()
        var opcodeByte: UInt8 = 0

        prefixLoop: while true {
            let byte = try cursor.next()
            switch byte {
            case 0x66: prefixes.operandSizeOverride = true
            case 0x67: prefixes.addressSizeOverride = true
            case 0xF0: prefixes.lock = true
            case 0xF2: prefixes.repetition = .repne
            case 0xF3: prefixes.repetition = .rep
            case 0x26: prefixes.segment = .es
            case 0x2E: prefixes.segment = .cs
            case 0x36: prefixes.segment = .ss
            case 0x3E: prefixes.segment = .ds
            case 0x64: prefixes.segment = .fs
            case 0x65: prefixes.segment = .gs
            case 0x40...0x4F where mode == .bits64:
                // Only a REX immediately before the opcode counts; a legacy prefix after it
                // voids it (reset below), and of several REX bytes the last wins.
                rex = X86REX(rawValue: byte)
                continue prefixLoop
            default:
                opcodeByte = byte
                break prefixLoop
            }
            rex = X86REX()
        }

        let operandSize: Int = switch mode {
        case .bits64: rex.w ? 8 : (prefixes.operandSizeOverride ? 2 : 4)
        case .bits32: prefixes.operandSizeOverride ? 2 : 4
        case .bits16: prefixes.operandSizeOverride ? 4 : 2
        }
        let addressSize: Int = switch mode {
        case .bits64: prefixes.addressSizeOverride ? 4 : 8
        case .bits32: prefixes.addressSizeOverride ? 2 : 4
        case .bits16: prefixes.addressSizeOverride ? 4 : 2
        }

        var decoder = Fields(cursor: cursor, prefixes: prefixes, rex: rex, mode: mode,
                             operandSize: operandSize, addressSize: addressSize)
        let instruction = try decoder.decodeOpcode(opcodeByte)

        if prefixes.lock {
            let lockable: Bool = switch instruction.operation {
            case .add, .or, .adc, .sbb, .and, .sub, .xor, .xchg:
                instruction.form == .memoryRegister || instruction.form == .memoryImmediate
            default: false
            }
            guard lockable else { throw .lockNotAllowed(opcode: instruction.opcode) }
        }
        return instruction
    }
}

/// Reads bytes in order, refusing to go past the data or the 15-byte limit.
private struct ByteCursor {
    let bytes: X86InstructionBytes
    var position = 0

    mutating func next() throws(X86DecodeError) -> UInt8 {
        guard position < X86InstructionBytes.capacity else { throw .tooLong }
        guard position < bytes.count else { throw .truncated(available: bytes.count) }
        let byte = bytes[position]
        position += 1
        return byte
    }

    /// A little-endian unsigned value of `count` bytes (1...8).
    mutating func littleEndian(_ count: Int) throws(X86DecodeError) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<count {
            value |= UInt64(try next()) << (i * 8)
        }
        return value
    }

    /// A little-endian value of `count` bytes, sign-extended to 64 bits.
    mutating func signed(_ count: Int) throws(X86DecodeError) -> Int64 {
        let raw = try littleEndian(count)
        let unused = 64 - count * 8
        return Int64(bitPattern: raw << unused) >> unused
    }
}

/// Decoding state after the prefixes.
private struct Fields {
    var cursor: ByteCursor
    let prefixes: X86Prefixes
    let rex: X86REX
    let mode: X86ExecutionMode
    let operandSize: Int
    let addressSize: Int

    mutating func decodeOpcode(_ op: UInt8) throws(X86DecodeError) -> X86Instruction {
        let opcode = UInt16(op)
        switch op {
        case 0x0F:
            return try decodeTwoByte(try cursor.next())

        case 0x00...0x3F where op & 7 < 4:
            // The classic ALU block: bits 5-3 pick the operation, bit 1 the direction, bit 0 the size.
            let operation = Self.aluOperation(Int(op >> 3))
            let size = op & 1 == 0 ? 1 : operandSize
            return try modRMInstruction(operation, opcode, form: op & 2 == 0 ? .memoryRegister : .registerMemory,
                                        size: size)

        case 0x63 where mode == .bits64:
            // MOVSXD: sign-extends a doubleword with REX.W; otherwise a plain move.
            let (reg, memory) = try modRM(opcode)
            return make(.movsxd, opcode, form: .registerMemory, operandSize: operandSize,
                        accessSize: min(operandSize, 4), memory: memory,
                        register: register(reg, size: operandSize))

        case 0x80, 0x81, 0x83:
            let size = op == 0x80 ? 1 : operandSize
            let (reg, memory) = try modRM(opcode)
            let immediate = try readImmediate(op == 0x81 ? size : 1)
            return make(Self.aluOperation(reg), opcode, form: .memoryImmediate, operandSize: size,
                        accessSize: size, memory: memory, immediate: immediate)

        case 0x84, 0x85:
            return try modRMInstruction(.test, opcode, form: .memoryRegister, size: op == 0x84 ? 1 : operandSize)

        case 0x86, 0x87:
            return try modRMInstruction(.xchg, opcode, form: .memoryRegister, size: op == 0x86 ? 1 : operandSize)

        case 0x88...0x8B:
            return try modRMInstruction(.mov, opcode, form: op & 2 == 0 ? .memoryRegister : .registerMemory,
                                        size: op & 1 == 0 ? 1 : operandSize)

        case 0xA0...0xA3:
            let size = op & 1 == 0 ? 1 : operandSize
            let offset = try cursor.littleEndian(addressSize)
            let memory = X86MemoryOperand(segment: prefixes.segment ?? .ds, displacement: Int64(bitPattern: offset))
            return make(.mov, opcode, form: op & 2 == 0 ? .registerMemory : .memoryRegister, operandSize: size,
                        accessSize: size, memory: memory, register: X86Register(number: 0, size: size))

        case 0xA4, 0xA5:
            let size = op == 0xA4 ? 1 : operandSize
            return make(.movs, opcode, form: .string, operandSize: size, accessSize: size)

        case 0xAA, 0xAB, 0xAC, 0xAD:
            let size = op & 1 == 0 ? 1 : operandSize
            return make(op < 0xAC ? .stos : .lods, opcode, form: .string, operandSize: size, accessSize: size,
                        register: X86Register(number: 0, size: size))

        case 0xC6, 0xC7:
            let size = op == 0xC6 ? 1 : operandSize
            let (reg, memory) = try modRM(opcode)
            guard reg & 7 == 0 else { throw .unsupportedExtension(opcode: opcode, extension: UInt8(reg & 7)) }
            let immediate = try readImmediate(size)
            return make(.mov, opcode, form: .memoryImmediate, operandSize: size, accessSize: size,
                        memory: memory, immediate: immediate)

        case 0xF6, 0xF7:
            let size = op == 0xF6 ? 1 : operandSize
            let (reg, memory) = try modRM(opcode)
            // /0 is TEST; /1 is an undocumented alias we refuse; the rest are NOT/NEG/MUL/DIV.
            guard reg & 7 == 0 else { throw .unsupportedExtension(opcode: opcode, extension: UInt8(reg & 7)) }
            let immediate = try readImmediate(size)
            return make(.test, opcode, form: .memoryImmediate, operandSize: size, accessSize: size,
                        memory: memory, immediate: immediate)

        default:
            throw .unsupportedOpcode(opcode)
        }
    }

    /// The ALU operation selected by a 3-bit field (opcode bits 5-3, or ModRM.reg of 80/81/83).
    static func aluOperation(_ field: Int) -> X86Operation {
        switch field & 7 {
        case 0: .add
        case 1: .or
        case 2: .adc
        case 3: .sbb
        case 4: .and
        case 5: .sub
        case 6: .xor
        default: .cmp
        }
    }

    mutating func decodeTwoByte(_ op: UInt8) throws(X86DecodeError) -> X86Instruction {
        let opcode = 0x0F00 | UInt16(op)
        switch op {
        case 0xB6, 0xB7, 0xBE, 0xBF:
            let (reg, memory) = try modRM(opcode)
            return make(op < 0xBE ? .movzx : .movsx, opcode, form: .registerMemory, operandSize: operandSize,
                        accessSize: op & 1 == 0 ? 1 : 2, memory: memory,
                        register: register(reg, size: operandSize))
        default:
            throw .unsupportedOpcode(opcode)
        }
    }

    /// The common `op r/m, reg` / `op reg, r/m` shape where both operands have the same size.
    mutating func modRMInstruction(_ operation: X86Operation, _ opcode: UInt16, form: X86OperandForm,
                                   size: Int) throws(X86DecodeError) -> X86Instruction {
        let (reg, memory) = try modRM(opcode)
        return make(operation, opcode, form: form, operandSize: size, accessSize: size, memory: memory,
                    register: register(reg, size: size))
    }

    /// An immediate of `size` bytes (imm32 for 8-byte operands), sign-extended to 64 bits.
    mutating func readImmediate(_ size: Int) throws(X86DecodeError) -> UInt64 {
        UInt64(bitPattern: try cursor.signed(min(size, 4)))
    }

    /// A register operand from ModRM.reg (already extended by REX.R).
    func register(_ number: Int, size: Int) -> X86Register {
        // Without any REX prefix, byte registers 4-7 are AH, CH, DH, BH.
        if size == 1, !rex.isPresent, (4...7).contains(number) {
            return X86Register(number: number - 4, size: 1, isHighByte: true)
        }
        return X86Register(number: number, size: size)
    }

    /// Reads ModRM, SIB and displacement; returns ModRM.reg (extended by REX.R) and the memory operand.
    mutating func modRM(_ opcode: UInt16) throws(X86DecodeError) -> (Int, X86MemoryOperand) {
        let modrm = try cursor.next()
        let mod = modrm >> 6
        let reg = Int((modrm >> 3) & 7) | (rex.r ? 8 : 0)
        let rm = Int(modrm & 7)
        guard mod != 3 else { throw .registerOperand(opcode: opcode) }
        if addressSize == 2 {
            return (reg, try memory16(mod: mod, rm: rm))
        }

        var memory = X86MemoryOperand()
        var defaultSegment = X86SegmentRegister.ds
        if rm == 4 {
            let sib = try cursor.next()
            memory.scale = 1 << Int(sib >> 6)
            let index = Int((sib >> 3) & 7) | (rex.x ? 8 : 0)
            // Index 4 (without REX.X) means none; R12 as index is encoded with REX.X.
            memory.index = index == 4 ? nil : index
            let base = Int(sib & 7)
            if base == 5 && mod == 0 {
                memory.displacement = try cursor.signed(4)
            } else {
                memory.base = base | (rex.b ? 8 : 0)
            }
        } else if rm == 5 && mod == 0 {
            // In 64-bit mode this is RIP-relative; elsewhere an absolute disp32.
            memory.displacement = try cursor.signed(4)
            memory.isRIPRelative = mode == .bits64
        } else {
            memory.base = rm | (rex.b ? 8 : 0)
        }
        if mod == 1 {
            memory.displacement = try cursor.signed(1)
        } else if mod == 2 {
            memory.displacement = try cursor.signed(4)
        }
        if let base = memory.base, base == 4 || base == 5 { defaultSegment = .ss }
        memory.segment = prefixes.segment ?? defaultSegment
        return (reg, memory)
    }

    /// 16-bit addressing (ModRM table 2-1 of the SDM): fixed base/index pairs, no SIB.
    mutating func memory16(mod: UInt8, rm: Int) throws(X86DecodeError) -> X86MemoryOperand {
        // Register numbers: 3 = BX, 5 = BP, 6 = SI, 7 = DI.
        let pairs: (Int?, Int?) = switch rm {
        case 0: (3, 6)
        case 1: (3, 7)
        case 2: (5, 6)
        case 3: (5, 7)
        case 4: (6, nil)
        case 5: (7, nil)
        case 6: (5, nil)
        default: (3, nil)
        }
        var memory = X86MemoryOperand(base: pairs.0, index: pairs.1)
        if mod == 0 && rm == 6 {
            memory.base = nil
            memory.displacement = try cursor.signed(2)
        } else if mod == 1 {
            memory.displacement = try cursor.signed(1)
        } else if mod == 2 {
            memory.displacement = try cursor.signed(2)
        }
        memory.segment = prefixes.segment ?? (memory.base == 5 ? .ss : .ds)
        return memory
    }

    func make(_ operation: X86Operation, _ opcode: UInt16, form: X86OperandForm, operandSize: Int,
              accessSize: Int, memory: X86MemoryOperand? = nil, register: X86Register? = nil,
              immediate: UInt64? = nil) -> X86Instruction {
        X86Instruction(operation: operation, opcode: opcode, form: form, operandSize: operandSize,
                       accessSize: accessSize, addressSize: addressSize, prefixes: prefixes, rex: rex,
                       memory: memory, register: register, immediate: immediate,
                       length: cursor.position, mode: mode)
    }
}
