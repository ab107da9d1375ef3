import VMSpec
import GuestMemory

// Opt-in MMIO instruction emulation, in the spirit of NVMM's nvmm_assist_mem: given the
// instruction that faulted on an MMIO address, perform its effect on the device (through the
// caller's read/write closures), on guest RAM and on the registers. Nothing calls this unless the
// exit loop asks.
//
// Address choice: for instructions with one explicit memory operand the device access goes to
// the guest-physical address the exit reported; the assist only cross-checks it against the
// decoded effective address (exactly under identity paging, by page offset under real paging) so
// that stale or racing instruction bytes are refused rather than misapplied. String instructions
// walk RSI/RDI themselves, translating every element and routing it to RAM when it lies wholly in
// guest memory, else to the device.

/// Segment bases used to form linear addresses. In 64-bit mode only FS and GS are applied.
public struct X86SegmentBases: Equatable, Sendable {
    public var es: UInt64 = 0, cs: UInt64 = 0, ss: UInt64 = 0, ds: UInt64 = 0, fs: UInt64 = 0, gs: UInt64 = 0

    public init(es: UInt64 = 0, cs: UInt64 = 0, ss: UInt64 = 0, ds: UInt64 = 0, fs: UInt64 = 0, gs: UInt64 = 0) {
        self.es = es; self.cs = cs; self.ss = ss; self.ds = ds; self.fs = fs; self.gs = gs
    }

    /// The bases of the guest's segment registers.
    public init(_ registers: SpecialRegisters) {
        self.init(es: registers.es.base, cs: registers.cs.base, ss: registers.ss.base, ds: registers.ds.base,
                  fs: registers.fs.base, gs: registers.gs.base)
    }

    public subscript(segment: X86SegmentRegister) -> UInt64 {
        switch segment {
        case .es: es
        case .cs: cs
        case .ss: ss
        case .ds: ds
        case .fs: fs
        case .gs: gs
        }
    }
}

/// Why the MMIO assist could not emulate an instruction. Nothing was done to the device unless the
/// case says so.
public enum MMIOAssistError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes at RIP are not a supported instruction.
    case decode(X86DecodeError)
    /// Fetching the instruction or translating a string operand failed (inject #PF or stop the guest).
    case translation(GuestPageWalkError)
    /// A guest-RAM access failed.
    case memory(GuestMemoryError)
    /// The decoded effective address does not match the address the exit reported.
    case addressMismatch(faultAddress: UInt64, computed: UInt64)
    /// A string element straddles two pages that are not physically contiguous.
    case splitAccess(linearAddress: UInt64, size: Int)
    /// The guest page tables forbid this string-operand access (write to read-only or supervisor
    /// page from user mode). Earlier REP iterations have completed.
    case protectionViolation(linearAddress: UInt64, write: Bool)
    /// The instruction decoded but is not one this assist emulates (e.g. no memory operand).
    case unsupported(X86Operation)

    public var description: String {
        switch self {
        case .decode(let e): "MMIO assist: \(e)"
        case .translation(let e): "MMIO assist: \(e)"
        case .memory(let e): "MMIO assist: \(e)"
        case let .addressMismatch(fault, computed):
            "MMIO assist: exit address \(fault.hexString) but instruction addresses \(computed.hexString)"
        case let .splitAccess(address, size):
            "MMIO assist: \(size)-byte access at \(address.hexString) spans discontiguous pages"
        case let .protectionViolation(address, write):
            "MMIO assist: guest page tables forbid \(write ? "writing" : "reading") \(address.hexString)"
        case .unsupported(let op): "MMIO assist: cannot emulate \(op)"
        }
    }
}

/// Emulates one instruction whose memory operand is MMIO.
public enum MMIOAssist {
    /// Guest state the assist needs besides the general registers.
    public struct Context: Equatable, Sendable {
        /// Segment bases for linear addresses (only FS/GS matter in 64-bit mode).
        public var segmentBases: X86SegmentBases
        /// Translates the linear addresses of string operands and of the instruction fetch.
        public var paging: GuestPaging
        /// Most REP iterations done per call, so a guest-chosen RCX cannot hold the vCPU thread.
        /// Values below 1 count as 1.
        public var maxRepeatCount: Int
        /// CPL 3: string-operand pages must be user-accessible.
        public var isUserMode: Bool
        /// CR0.WP (or user mode): string-operand writes need writable pages.
        public var enforcesWriteProtect: Bool
        /// Guest-physical ranges of `memory` mapped read-only (ROM): reads come from memory, but
        /// a write goes to the device callback, as KVM turns such a write into an MMIO exit.
        public var readOnlyRanges: [Range<UInt64>] = []

        public init(segmentBases: X86SegmentBases = X86SegmentBases(), paging: GuestPaging = .identity,
                    maxRepeatCount: Int = 256, isUserMode: Bool = false, enforcesWriteProtect: Bool = true) {
            self.segmentBases = segmentBases; self.paging = paging; self.maxRepeatCount = maxRepeatCount
            self.isUserMode = isUserMode; self.enforcesWriteProtect = enforcesWriteProtect
        }

        /// Context from the guest's special registers (CPL taken from SS.DPL).
        public init(_ registers: SpecialRegisters, maxRepeatCount: Int = 256) {
            self.init(segmentBases: X86SegmentBases(registers), paging: GuestPaging(registers),
                      maxRepeatCount: maxRepeatCount, isUserMode: registers.ss.dpl == 3,
                      enforcesWriteProtect: registers.cr0 & (1 << 16) != 0)
        }
    }

    /// What one call did.
    public struct Outcome: Equatable, Sendable {
        /// Memory operations performed: 1 for ordinary instructions, the element count for strings.
        public var iterations: Int
        /// True when the instruction finished and RIP moved past it; false when a REP stopped at
        /// the per-call bound with RCX still non-zero (RIP unchanged: re-entering the guest
        /// re-executes it, which also lets interrupts in between).
        public var completed: Bool

        public init(iterations: Int, completed: Bool) {
            self.iterations = iterations; self.completed = completed
        }
    }

    /// The execution mode the guest's CS, EFER and CR0 select.
    public static func executionMode(_ registers: SpecialRegisters) -> X86ExecutionMode {
        if registers.efer & (1 << 10) != 0 && registers.cs.l { return .bits64 }
        return registers.cs.db ? .bits32 : .bits16
    }

    /// Fetches the instruction at RIP through the guest page tables, decodes it and emulates it.
    /// `faultAddress` is the guest-physical address from the MMIO exit.
    public static func emulate(faultAddress: UInt64, registers: inout Registers,
                               specialRegisters: SpecialRegisters, memory: GuestMemory,
                               maxRepeatCount: Int = 256,
                               read: (_ address: UInt64, _ size: Int) -> UInt64,
                               write: (_ address: UInt64, _ size: Int, _ value: UInt64) -> Void)
        throws(MMIOAssistError) -> Outcome {
        let (instruction, context) = try instructionAtRIP(registers: registers, specialRegisters: specialRegisters,
                                                          memory: memory, maxRepeatCount: maxRepeatCount)
        return try emulate(instruction, faultAddress: faultAddress, registers: &registers, memory: memory,
                           context: context, read: read, write: write)
    }

    /// The instruction at RIP, fetched through the guest's page tables and decoded, and the
    /// context the guest's special registers give.
    private static func instructionAtRIP(registers: Registers, specialRegisters: SpecialRegisters, memory: GuestMemory,
                                         maxRepeatCount: Int, readOnlyRanges: [Range<UInt64>] = [])
        throws(MMIOAssistError) -> (X86Instruction, Context) {
        let mode = executionMode(specialRegisters)
        var context = Context(specialRegisters, maxRepeatCount: maxRepeatCount)
        context.readOnlyRanges = readOnlyRanges
        let ripLinear = mode == .bits64 ? registers.rip : (specialRegisters.cs.base &+ registers.rip) & 0xFFFF_FFFF
        let bytes: X86InstructionBytes
        do {
            bytes = try GuestPageWalker(memory: memory, paging: context.paging).fetchInstructionBytes(at: ripLinear)
        } catch {
            throw .translation(error)
        }
        do { return (try X86InstructionDecoder.decode(bytes, mode: mode), context) } catch { throw .decode(error) }
    }

    /// Fetches, decodes and emulates the instruction at RIP when no exit named its address: after
    /// KVM gave up emulating it (an internal-error exit), as libnvmm's nvmm_assist_mem does for
    /// every MMIO exit. The device address is the instruction's own operand, translated through
    /// the guest's page tables; an operand in RAM is done in RAM.
    public static func emulateAtRIP(registers: inout Registers, specialRegisters: SpecialRegisters, memory: GuestMemory,
                                    readOnlyRanges: [Range<UInt64>] = [],
                                    maxRepeatCount: Int = 256,
                                    read: (_ address: UInt64, _ size: Int) -> UInt64,
                                    write: (_ address: UInt64, _ size: Int, _ value: UInt64) -> Void)
        throws(MMIOAssistError) -> Outcome {
        let (instruction, context) = try instructionAtRIP(registers: registers, specialRegisters: specialRegisters,
                                                          memory: memory, maxRepeatCount: maxRepeatCount,
                                                          readOnlyRanges: readOnlyRanges)
        let mode = instruction.mode
        let walker = GuestPageWalker(memory: memory, paging: context.paging)
        guard isValidSize(instruction.addressSize) else { throw .unsupported(instruction.operation) }
        // The operand that is the device: for a string, whichever side of the first element is not RAM.
        var linears: [UInt64] = []
        if instruction.form == .string {
            let mask = X86ALU.mask(instruction.addressSize)
            if instruction.operation != .lods {
                linears.append(linear(registers.rdi & mask, segment: .es, mode: mode, bases: context.segmentBases))
            }
            if instruction.operation != .stos {
                linears.append(linear(registers.rsi & mask, segment: instruction.prefixes.segment ?? .ds, mode: mode,
                                      bases: context.segmentBases))
            }
        } else if let operand = instruction.memory {
            linears.append(linearAddress(of: operand, instruction: instruction, registers: registers, bases: context.segmentBases))
        }
        var physicals: [UInt64] = []
        for address in linears {
            do { physicals.append(try walker.translate(address).physicalAddress) } catch { throw .translation(error) }
        }
        guard let device = physicals.first(where: { !memory.contains(GuestAddress($0), count: 1) }) ?? physicals.first else {
            throw .unsupported(instruction.operation)
        }
        return try emulate(instruction, faultAddress: device, registers: &registers, memory: memory, context: context,
                           read: read, write: write)
    }

    /// Emulates a decoded instruction. The device is reached only through `read` and `write`
    /// (`size` is 1, 2, 4 or 8; values are zero-extended); guest RAM through `memory`.
    /// On success RIP advances by the instruction length unless a REP was cut short (see
    /// `Outcome.completed`). If a string instruction throws part-way, registers reflect the
    /// elements already done and RIP is unchanged.
    public static func emulate(_ instruction: X86Instruction, faultAddress: UInt64, registers: inout Registers,
                               memory: GuestMemory, context: Context,
                               read: (_ address: UInt64, _ size: Int) -> UInt64,
                               write: (_ address: UInt64, _ size: Int, _ value: UInt64) -> Void)
        throws(MMIOAssistError) -> Outcome {
        // Fields are public and mutable: refuse values the decoder never produces instead of
        // trusting them in size arithmetic.
        guard isValidSize(instruction.accessSize), isValidSize(instruction.operandSize),
              instruction.addressSize >= 2 && isValidSize(instruction.addressSize),
              (1...X86InstructionBytes.capacity).contains(instruction.length) else {
            throw .unsupported(instruction.operation)
        }
        if instruction.form == .string {
            var strings = StringEmulation(instruction: instruction, memory: memory, context: context,
                                          faultAddress: faultAddress)
            return try strings.run(registers: &registers, read: read, write: write)
        }
        guard let operand = instruction.memory else { throw .unsupported(instruction.operation) }

        let computed = linearAddress(of: operand, instruction: instruction, registers: registers,
                                     bases: context.segmentBases)
        let matches = context.paging.mode == .identity ? computed == faultAddress
            : computed & 0xFFF == faultAddress & 0xFFF
        guard matches else { throw .addressMismatch(faultAddress: faultAddress, computed: computed) }

        let address = faultAddress
        let size = instruction.accessSize
        let mask = X86ALU.mask(size)
        let registerValue = instruction.register.map { registers.value(of: $0) } ?? 0
        let source = instruction.form == .memoryImmediate ? (instruction.immediate ?? 0) : registerValue

        switch instruction.operation {
        case .mov:
            if instruction.form == .registerMemory {
                guard let register = instruction.register else { throw .unsupported(.mov) }
                registers.set(register, to: read(address, size) & mask)
            } else {
                write(address, size, source & mask)
            }
        case .movzx:
            guard let register = instruction.register else { throw .unsupported(.movzx) }
            registers.set(register, to: read(address, size) & mask)
        case .movsx, .movsxd:
            guard let register = instruction.register else { throw .unsupported(instruction.operation) }
            registers.set(register, to: X86ALU.signExtend(read(address, size) & mask, from: size))
        case .xchg:
            guard let register = instruction.register else { throw .unsupported(.xchg) }
            let old = read(address, size) & mask
            write(address, size, registerValue)
            registers.set(register, to: old)
        case .test, .cmp:
            let value = read(address, size) & mask
            let (a, b) = instruction.form == .registerMemory ? (registerValue, value) : (value, source)
            registers.rflags = X86ALU.compute(instruction.operation, a, b, size: size, flags: registers.rflags).flags
        case .add, .or, .adc, .sbb, .and, .sub, .xor:
            let value = read(address, size) & mask
            if instruction.form == .registerMemory {
                guard let register = instruction.register else { throw .unsupported(instruction.operation) }
                let (result, flags) = X86ALU.compute(instruction.operation, registerValue, value, size: size,
                                                     flags: registers.rflags)
                registers.set(register, to: result)
                registers.rflags = flags
            } else {
                let (result, flags) = X86ALU.compute(instruction.operation, value, source, size: size,
                                                     flags: registers.rflags)
                write(address, size, result)
                registers.rflags = flags
            }
        case .movs, .stos, .lods:
            throw .unsupported(instruction.operation)
        }
        advanceRIP(&registers, by: instruction)
        return Outcome(iterations: 1, completed: true)
    }

    static func isValidSize(_ size: Int) -> Bool {
        size == 1 || size == 2 || size == 4 || size == 8
    }

    /// The linear address of a memory operand: offset wrapped to the address size, plus the
    /// segment base (FS/GS only in 64-bit mode; wrapped to 32 bits outside it).
    static func linearAddress(of operand: X86MemoryOperand, instruction: X86Instruction, registers: Registers,
                              bases: X86SegmentBases) -> UInt64 {
        var offset = UInt64(bitPattern: operand.displacement)
        if operand.isRIPRelative { offset = offset &+ registers.rip &+ UInt64(truncatingIfNeeded: instruction.length) }
        if let base = operand.base { offset = offset &+ registers[gpr: base] }
        if let index = operand.index { offset = offset &+ registers[gpr: index] &* UInt64(truncatingIfNeeded: operand.scale) }
        offset &= X86ALU.mask(instruction.addressSize)
        return linear(offset, segment: operand.segment, mode: instruction.mode, bases: bases)
    }

    static func linear(_ offset: UInt64, segment: X86SegmentRegister, mode: X86ExecutionMode,
                       bases: X86SegmentBases) -> UInt64 {
        if mode == .bits64 {
            return segment == .fs || segment == .gs ? bases[segment] &+ offset : offset
        }
        return (bases[segment] &+ offset) & 0xFFFF_FFFF
    }

    /// RIP past the instruction, wrapped to the width of the instruction pointer.
    static func advanceRIP(_ registers: inout Registers, by instruction: X86Instruction) {
        let next = registers.rip &+ UInt64(truncatingIfNeeded: instruction.length)
        switch instruction.mode {
        case .bits64: registers.rip = next
        case .bits32: registers.rip = next & 0xFFFF_FFFF
        case .bits16: registers.rip = next & 0xFFFF
        }
    }
}

/// MOVS, STOS and LODS, with or without REP: one element per step, each side routed to RAM or
/// to the device.
private struct StringEmulation {
    let instruction: X86Instruction
    let memory: GuestMemory
    let context: MMIOAssist.Context
    let faultAddress: UInt64

    /// A translated string operand.
    struct Location {
        var physical: UInt64
        var isRAM: Bool
    }

    mutating func run(registers: inout Registers,
                      read: (UInt64, Int) -> UInt64,
                      write: (UInt64, Int, UInt64) -> Void) throws(MMIOAssistError) -> MMIOAssist.Outcome {
        let size = instruction.accessSize
        let addressSize = instruction.addressSize
        let addressMask = X86ALU.mask(addressSize)
        let repeating = instruction.prefixes.repetition != nil
        // F2 and F3 both mean plain REP for these three; RCX is read at the address size.
        var remaining = repeating ? registers.rcx & addressMask : 1
        let step = registers.rflags & X86Flags.direction != 0 ? 0 &- UInt64(size) : UInt64(size)
        let bound = UInt64(max(context.maxRepeatCount, 1))
        var done: UInt64 = 0

        while remaining > 0 && done < bound {
            let sourceSegment = instruction.prefixes.segment ?? .ds
            let sourceLinear = MMIOAssist.linear(registers.rsi & addressMask, segment: sourceSegment,
                                                 mode: instruction.mode, bases: context.segmentBases)
            let destinationLinear = MMIOAssist.linear(registers.rdi & addressMask, segment: .es,
                                                      mode: instruction.mode, bases: context.segmentBases)
            let operation = instruction.operation
            // Translate both sides before touching anything, so a fault leaves no half-done element.
            var source: Location?
            var destination: Location?
            if operation != .stos { source = try locate(sourceLinear, write: false) }
            if operation != .lods { destination = try locate(destinationLinear, write: true) }
            if done == 0 {
                let hits = source?.physical == faultAddress || destination?.physical == faultAddress
                guard hits else {
                    throw .addressMismatch(faultAddress: faultAddress,
                                           computed: source?.physical ?? destination?.physical ?? 0)
                }
            }

            let value: UInt64
            if let source {
                value = try load(source, size: size, read: read)
            } else {
                value = registers.rax & X86ALU.mask(size)
            }
            if let destination {
                try store(value, to: destination, size: size, write: write)
            } else {
                registers.setGPR(0, size: size, to: value)
            }

            // Index registers and RCX change at the address size (32-bit writes zero-extend).
            if source != nil { registers.setGPR(6, size: addressSize, to: registers.rsi &+ step) }
            if destination != nil { registers.setGPR(7, size: addressSize, to: registers.rdi &+ step) }
            remaining -= 1
            if repeating { registers.setGPR(1, size: addressSize, to: remaining) }
            done += 1
        }

        let completed = remaining == 0
        if completed { MMIOAssist.advanceRIP(&registers, by: instruction) }
        return MMIOAssist.Outcome(iterations: Int(done), completed: completed)
    }

    /// Translates one element, checking guest permissions and physical contiguity.
    func locate(_ linear: UInt64, write: Bool) throws(MMIOAssistError) -> Location {
        let walker = GuestPageWalker(memory: memory, paging: context.paging)
        let size = UInt64(instruction.accessSize)
        let first: GuestTranslation
        do { first = try walker.translate(linear) } catch { throw .translation(error) }
        try check(first, linear: linear, write: write)
        let lastLinear = linear &+ (size &- 1)
        if context.paging.mode != .identity && (linear ^ lastLinear) & ~0xFFF != 0 {
            let last: GuestTranslation
            do { last = try walker.translate(lastLinear) } catch { throw .translation(error) }
            try check(last, linear: lastLinear, write: write)
            guard last.physicalAddress == first.physicalAddress &+ (size &- 1) else {
                throw .splitAccess(linearAddress: linear, size: Int(size))
            }
        }
        // An element partly outside RAM goes to the device whole; devices decode their own range.
        let isRAM = memory.contains(GuestAddress(first.physicalAddress), count: size)
            && !(write && context.readOnlyRanges.contains { $0.overlaps(first.physicalAddress..<first.physicalAddress &+ size) })
        return Location(physical: first.physicalAddress, isRAM: isRAM)
    }

    func check(_ translation: GuestTranslation, linear: UInt64, write: Bool) throws(MMIOAssistError) {
        if context.isUserMode && !translation.isUser {
            throw .protectionViolation(linearAddress: linear, write: write)
        }
        if write && !translation.isWritable && (context.enforcesWriteProtect || context.isUserMode) {
            throw .protectionViolation(linearAddress: linear, write: true)
        }
    }

    func load(_ location: Location, size: Int, read: (UInt64, Int) -> UInt64) throws(MMIOAssistError) -> UInt64 {
        guard location.isRAM else { return read(location.physical, size) & X86ALU.mask(size) }
        let address = GuestAddress(location.physical)
        do {
            switch size {
            case 1: return UInt64(try memory.load(UInt8.self, at: address))
            case 2: return UInt64(try memory.load(UInt16.self, at: address))
            case 4: return UInt64(try memory.load(UInt32.self, at: address))
            default: return try memory.load(UInt64.self, at: address)
            }
        } catch {
            throw .memory(error)
        }
    }

    func store(_ value: UInt64, to location: Location, size: Int,
               write: (UInt64, Int, UInt64) -> Void) throws(MMIOAssistError) {
        guard location.isRAM else { return write(location.physical, size, value & X86ALU.mask(size)) }
        let address = GuestAddress(location.physical)
        do {
            switch size {
            case 1: try memory.store(UInt8(truncatingIfNeeded: value), at: address)
            case 2: try memory.store(UInt16(truncatingIfNeeded: value), at: address)
            case 4: try memory.store(UInt32(truncatingIfNeeded: value), at: address)
            default: try memory.store(value, at: address)
            }
        } catch {
            throw .memory(error)
        }
    }
}
