import Host

/// Checks and runs seccomp's classic BPF programs as the Linux kernel does, for HostTests and the
/// fuzzer: `validate` is the kernel's load-time check (length, opcodes, loads inside
/// `struct seccomp_data`, jumps inside the program, a final return), `run` its interpreter.
///
/// Every number here (opcodes, the layout of `struct seccomp_data`, AUDIT_ARCH_*, SECCOMP_RET_*)
/// is written out by hand from the kernel's UAPI headers, never taken from CHost: Host's
/// `SeccompPolicy` builds its programs from CHost's copy, so a test that ran them through the same
/// constants would check the numbers against themselves.
///
/// Only the instructions seccomp programs here use are known (`ld [k]`, `and #k`, `jeq`, `jge`,
/// `ret #k`); anything else is a `Fault`, so a builder that starts emitting a new one fails its
/// tests until this interpreter learns it.
public enum ClassicBPF {
    /// BPF_MAXINSNS: the longest program the kernel loads.
    public static let maxInstructions = 4096

    /// Opcodes (<linux/bpf_common.h>): class | size | mode, or class | op | source.
    public enum Opcode {
        /// BPF_LD | BPF_W | BPF_ABS: A = 32-bit word at offset K of the data.
        public static let loadWord: UInt16 = 0x20
        /// BPF_ALU | BPF_AND | BPF_K: A &= K.
        public static let andConstant: UInt16 = 0x54
        /// BPF_JMP | BPF_JEQ | BPF_K: skip jt if A == K, else jf.
        public static let jumpIfEqual: UInt16 = 0x15
        /// BPF_JMP | BPF_JGE | BPF_K: skip jt if A >= K (unsigned), else jf.
        public static let jumpIfGreaterOrEqual: UInt16 = 0x35
        /// BPF_RET | BPF_K: return K.
        public static let returnConstant: UInt16 = 0x06
    }

    /// AUDIT_ARCH_* values (<linux/audit.h>) a seccomp program compares `arch` with.
    public enum Architecture {
        public static let x86_64: UInt32 = 0xC000_003E
        public static let i386: UInt32 = 0x4000_0003
        public static let aarch64: UInt32 = 0xC000_00B7
    }

    /// __X32_SYSCALL_BIT: x32 system call numbers have it set.
    public static let x32SyscallBit: UInt32 = 0x4000_0000

    /// SECCOMP_RET_* (<linux/seccomp.h>): the action in the high 16 bits, its data in the low 16.
    public enum Return {
        public static let killProcess: UInt32 = 0x8000_0000
        public static let killThread: UInt32 = 0x0000_0000
        public static let trap: UInt32 = 0x0003_0000
        public static let errno: UInt32 = 0x0005_0000
        public static let userNotify: UInt32 = 0x7FC0_0000
        public static let trace: UInt32 = 0x7FF0_0000
        public static let log: UInt32 = 0x7FFC_0000
        public static let allow: UInt32 = 0x7FFF_0000
        /// SECCOMP_RET_ACTION_FULL and SECCOMP_RET_DATA.
        public static let actionMask: UInt32 = 0xFFFF_0000, dataMask: UInt32 = 0x0000_FFFF

        /// SECCOMP_RET_ERRNO with `code` in the data bits.
        public static func errno(_ code: UInt16) -> UInt32 { errno | UInt32(code) }
    }

    /// What the kernel does with a program's return value (`__seccomp_filter`): the action
    /// bits decide, the data bits are the errno or the value a tracer or SIGSYS handler sees.
    public enum Verdict: Sendable, Equatable, CustomStringConvertible {
        case allow, log, killProcess, killThread, userNotify
        case errno(UInt16), trap(UInt16), trace(UInt16)

        public init(_ returnValue: UInt32) {
            let data = UInt16(truncatingIfNeeded: returnValue & Return.dataMask)
            switch returnValue & Return.actionMask {
            case Return.allow: self = .allow
            case Return.log: self = .log
            case Return.killThread: self = .killThread
            case Return.errno: self = .errno(data)
            case Return.trap: self = .trap(data)
            case Return.trace: self = .trace(data)
            case Return.userNotify: self = .userNotify
            // SECCOMP_RET_KILL_PROCESS, and what the kernel does with an action it does not know.
            default: self = .killProcess
            }
        }

        public var description: String {
            switch self {
            case .allow: "allow"
            case .log: "log"
            case .killProcess: "kill process"
            case .killThread: "kill thread"
            case .userNotify: "user notify"
            case .errno(let code): "errno \(code)"
            case .trap(let data): "trap \(data)"
            case .trace(let data): "trace \(data)"
            }
        }
    }

    /// `struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }`,
    /// what a seccomp program loads from, in the little-endian layout of x86-64.
    public struct SeccompData: Sendable, Equatable {
        /// Bytes of the structure; a load must lie inside them.
        public static let size = 64

        public var nr: Int32
        public var arch: UInt32
        public var instructionPointer: UInt64
        /// Six arguments (missing ones are zero).
        public var args: [UInt64]

        public init(nr: Int32, arch: UInt32 = Architecture.x86_64, instructionPointer: UInt64 = 0x7F00_1234_5678,
                    args: [UInt64] = []) {
            self.nr = nr
            self.arch = arch
            self.instructionPointer = instructionPointer
            self.args = Array((args + Array(repeating: 0, count: 6)).prefix(6))
        }

        /// The 32-bit word at byte `offset` (a multiple of 4 below 64).
        func word(at offset: Int) -> UInt32 {
            switch offset {
            case 0: return UInt32(bitPattern: nr)
            case 4: return arch
            default:
                let field = offset < 16 ? instructionPointer : args[(offset - 16) / 8]
                // Little-endian: a u64's low half comes first.
                return UInt32(truncatingIfNeeded: offset % 8 == 0 ? field : field >> 32)
            }
        }
    }

    /// Why the kernel would refuse a program, or where running it went wrong.
    public enum Fault: Error, Equatable, CustomStringConvertible {
        case empty
        case tooLong(count: Int)
        case unknownOpcode(pc: Int, code: UInt16)
        /// A load not 4-byte aligned or outside `struct seccomp_data`.
        case loadOutsideData(pc: Int, offset: UInt32)
        case jumpPastEnd(pc: Int)
        case lastIsNotReturn
        case ranOffTheEnd

        public var description: String {
            switch self {
            case .empty: "the program is empty"
            case .tooLong(let count): "the program has \(count) instructions, more than \(ClassicBPF.maxInstructions)"
            case .unknownOpcode(let pc, let code): "unknown opcode \(code) at \(pc)"
            case .loadOutsideData(let pc, let offset): "load of offset \(offset) at \(pc) is not an aligned word of seccomp_data"
            case .jumpPastEnd(let pc): "the jump at \(pc) lands past the end"
            case .lastIsNotReturn: "the last instruction does not return"
            case .ranOffTheEnd: "the program ran off its end"
            }
        }
    }

    /// Throws the first reason the kernel's checks (`bpf_check_classic`, `seccomp_check_filter`)
    /// would refuse `program`.
    public static func validate(_ program: [BPFInstruction]) throws(Fault) {
        guard !program.isEmpty else { throw .empty }
        guard program.count <= maxInstructions else { throw .tooLong(count: program.count) }
        for (pc, i) in program.enumerated() {
            switch i.code {
            case Opcode.loadWord:
                guard i.k % 4 == 0, i.k < UInt32(SeccompData.size) else { throw .loadOutsideData(pc: pc, offset: i.k) }
            case Opcode.jumpIfEqual, Opcode.jumpIfGreaterOrEqual:
                guard pc + 1 + Int(max(i.jt, i.jf)) < program.count else { throw .jumpPastEnd(pc: pc) }
            case Opcode.andConstant, Opcode.returnConstant:
                break
            default:
                throw .unknownOpcode(pc: pc, code: i.code)
            }
        }
        guard program.last?.code == Opcode.returnConstant else { throw .lastIsNotReturn }
    }

    /// Runs `program` on `data` as the kernel would: the value it returns (SECCOMP_RET_*) and the
    /// instructions executed. Jumps only go forward, so it ends within `program.count` steps.
    /// Throws on what `validate` refuses, when the run reaches it.
    public static func run(_ program: [BPFInstruction], on data: SeccompData) throws(Fault) -> (result: UInt32, steps: Int) {
        var a: UInt32 = 0, pc = 0, steps = 0
        while pc < program.count {
            let i = program[pc]
            steps += 1
            switch i.code {
            case Opcode.loadWord:
                guard i.k % 4 == 0, i.k < UInt32(SeccompData.size) else { throw .loadOutsideData(pc: pc, offset: i.k) }
                a = data.word(at: Int(i.k))
                pc += 1
            case Opcode.andConstant:
                a &= i.k
                pc += 1
            case Opcode.jumpIfEqual:
                pc += 1 + Int(a == i.k ? i.jt : i.jf)
            case Opcode.jumpIfGreaterOrEqual:
                pc += 1 + Int(a >= i.k ? i.jt : i.jf)
            case Opcode.returnConstant:
                return (i.k, steps)
            default:
                throw .unknownOpcode(pc: pc, code: i.code)
            }
        }
        throw .ranOffTheEnd
    }
}
