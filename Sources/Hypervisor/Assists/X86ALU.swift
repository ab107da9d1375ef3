// Integer arithmetic with x86 RFLAGS semantics, and width-aware register access. Shared by the
// MMIO assist; kept apart so the flag rules can be tested on their own.

/// RFLAGS bits the assists read or write.
public enum X86Flags {
    public static let carry: UInt64 = 1 << 0
    public static let parity: UInt64 = 1 << 2
    public static let adjust: UInt64 = 1 << 4
    public static let zero: UInt64 = 1 << 6
    public static let sign: UInt64 = 1 << 7
    public static let direction: UInt64 = 1 << 10
    public static let overflow: UInt64 = 1 << 11
    /// The six status flags an ALU operation defines.
    public static let arithmetic: UInt64 = carry | parity | adjust | zero | sign | overflow
}

/// Two-operand integer operations at 1, 2, 4 or 8 bytes, producing the result and new RFLAGS.
enum X86ALU {
    /// All-ones in the low `size` bytes.
    @inline(__always)
    static func mask(_ size: Int) -> UInt64 {
        size >= 8 ? UInt64.max : (UInt64(1) << (UInt64(max(size, 0)) * 8)) &- 1
    }

    /// Sign-extends the low `size` bytes of `value` to 64 bits.
    @inline(__always)
    static func signExtend(_ value: UInt64, from size: Int) -> UInt64 {
        guard size > 0 && size < 8 else { return value }
        let unused = UInt64(64 - size * 8)
        return UInt64(bitPattern: Int64(bitPattern: value << unused) >> unused)
    }

    /// Computes `a op b` at `size` bytes. Only `operation`s that are ALU operations (ADD, OR, ADC,
    /// SBB, AND, SUB, XOR, CMP, TEST) change flags; others return `a` and the flags unchanged.
    /// AF after a logical operation is undefined in the SDM; we clear it.
    static func compute(_ operation: X86Operation, _ a: UInt64, _ b: UInt64, size: Int,
                        flags: UInt64) -> (result: UInt64, flags: UInt64) {
        let m = mask(size)
        let a = a & m, b = b & m
        let signBit = (m >> 1) &+ 1
        let carryIn: UInt64 = flags & X86Flags.carry
        var status: UInt64 = 0
        let result: UInt64

        switch operation {
        case .add, .adc:
            let cin = operation == .adc ? carryIn : 0
            let (partial, o1) = a.addingReportingOverflow(b)
            let (full, o2) = partial.addingReportingOverflow(cin)
            result = full & m
            // Below 8 bytes the true sum fits in 64 bits, so a carry shows up above the mask.
            let carry = size >= 8 ? (o1 || o2) : full > m
            if carry { status |= X86Flags.carry }
            if (a ^ result) & (b ^ result) & signBit != 0 { status |= X86Flags.overflow }
            if (a ^ b ^ result) & 0x10 != 0 { status |= X86Flags.adjust }
        case .sub, .sbb, .cmp:
            let bin = operation == .sbb ? carryIn : 0
            result = (a &- b &- bin) & m
            // Borrow when a < b + bin, written without computing b + bin (it could wrap).
            if bin == 0 ? a < b : a <= b { status |= X86Flags.carry }
            if (a ^ b) & (a ^ result) & signBit != 0 { status |= X86Flags.overflow }
            if (a ^ b ^ result) & 0x10 != 0 { status |= X86Flags.adjust }
        case .and, .test:
            result = a & b
        case .or:
            result = a | b
        case .xor:
            result = a ^ b
        default:
            return (a, flags)
        }

        if result == 0 { status |= X86Flags.zero }
        if result & signBit != 0 { status |= X86Flags.sign }
        if (result & 0xFF).nonzeroBitCount & 1 == 0 { status |= X86Flags.parity }
        return (result, (flags & ~X86Flags.arithmetic) | status)
    }
}

extension Registers {
    /// The value of a register operand at its width (AH..BH read bits 8-15).
    func value(of register: X86Register) -> UInt64 {
        let full = self[gpr: register.number]
        if register.isHighByte { return (full >> 8) & 0xFF }
        return full & X86ALU.mask(register.size)
    }

    /// Writes a register operand with the x86 rules: 8- and 16-bit writes keep the other bits,
    /// 32-bit writes zero bits 32-63, 64-bit writes replace everything.
    mutating func set(_ register: X86Register, to value: UInt64) {
        if register.isHighByte {
            let full = self[gpr: register.number]
            self[gpr: register.number] = (full & ~0xFF00) | ((value & 0xFF) << 8)
        } else {
            setGPR(register.number, size: register.size, to: value)
        }
    }

    /// Writes the low `size` bytes of GPR `number` with the same rules as `set(_:to:)`.
    mutating func setGPR(_ number: Int, size: Int, to value: UInt64) {
        switch size {
        case 1, 2:
            let m = X86ALU.mask(size)
            self[gpr: number] = (self[gpr: number] & ~m) | (value & m)
        case 4:
            self[gpr: number] = value & 0xFFFF_FFFF
        default:
            self[gpr: number] = value
        }
    }
}
