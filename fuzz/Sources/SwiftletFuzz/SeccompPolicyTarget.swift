import ClassicBPF
import Host

extension FuzzTargets {
    /// Host's seccomp program builder (`SeccompPolicy.program()`) on fuzzed rule sets, each
    /// program checked with ClassicBPF, which spells the kernel's ABI out by hand: the kernel
    /// would load it (`validate`: length, opcodes, loads, jumps, a final return), and for fuzzed
    /// `struct seccomp_data` inputs its verdict is the policy's own meaning: foreign
    /// architectures and x32 calls killed, else the first rule naming the call decides (its
    /// first check whose comparisons all hold, else its `otherwise`, else the default).
    ///
    /// Input: a flags byte (bit 0: start from the VMM's policy), the default action, a rule
    /// count, then per rule: syscall index (2 bytes), `otherwise` (or none), up to 4 checks of
    /// up to 4 comparisons (argument, mask kind, 8-byte value) and an action each, and whether
    /// it is appended or `set`. Then up to 16 calls: number (a rule's or any), architecture, six arguments (each
    /// random or made to match one of the rule's comparisons). Sizes stay within what the
    /// builder documents (a rule's block at most 255 instructions, the program at most 4096).
    static let seccompPolicy = FuzzTarget(
        name: "seccomp-policy",
        summary: "seccomp policy builder: every program validated and run by ClassicBPF against the rule set's meaning"
    ) { bytes in
        var input = FuzzInput(bytes)
        let fromVMM = input.byte() & 1 == 1
        var policy = fromVMM ? SeccompPolicy.vmm : SeccompPolicy(rules: [])
        policy.defaultAction = SeccompFuzz.action(&input)
        // Each added rule compiles to at most 1 + 4 * (4 * 6 + 1) + 1 = 102 instructions.
        let room = (ClassicBPF.maxInstructions - policy.program().count) / 102
        var expectedRules = policy.rules
        for _ in 0..<(Int(input.byte()) % (min(room, 32) + 1)) where !input.isAtEnd {
            let rule = SeccompFuzz.rule(&input)
            if input.bool() {
                policy.set(rule)
                if let i = expectedRules.firstIndex(where: { $0.syscall == rule.syscall }) { expectedRules[i] = rule } else { expectedRules.append(rule) }
            } else {
                policy.rules.append(rule)
                expectedRules.append(rule)
            }
        }
        guard policy.rules == expectedRules else { fatalError("set(_:) did not replace the rule for the same call, or append") }

        let program = policy.program()
        do throws(ClassicBPF.Fault) { try ClassicBPF.validate(program) } catch {
            fatalError("the kernel would refuse the program: \(error)")
        }
        for _ in 0..<16 where !input.isAtEnd {
            let call = SeccompFuzz.call(&input, policy: policy)
            let result: UInt32
            do throws(ClassicBPF.Fault) { result = try ClassicBPF.run(program, on: call).result } catch {
                fatalError("running the program on \(call): \(error)")
            }
            let verdict = ClassicBPF.Verdict(result)
            let expected = SeccompFuzz.expected(policy, call)
            guard verdict == expected else {
                fatalError("nr \(call.nr) arch \(call.arch) args \(call.args): the program says \(verdict), the policy \(expected)")
            }
        }
    }
}

/// Reading rule sets and calls from fuzz input, and what a policy means for a call.
private enum SeccompFuzz {
    static let syscalls = SeccompPolicy.Syscall.all

    static func action(_ input: inout FuzzInput) -> SeccompPolicy.Action {
        switch input.byte() % 5 {
        case 0: .allow
        // errno values the kernel passes on (MAX_ERRNO is 4095).
        case 1: .errno(Int32(input.integer(UInt16.self) % 4096))
        case 2: .log
        case 3: .trap
        default: .killProcess
        }
    }

    static func rule(_ input: inout FuzzInput) -> SeccompPolicy.Rule {
        let syscall = syscalls[Int(input.integer(UInt16.self)) % syscalls.count]
        let otherwise: SeccompPolicy.Action? = input.bool() ? action(&input) : nil
        var checks: [SeccompPolicy.ArgumentCheck] = []
        for _ in 0..<(input.byte() % 5) {
            var comparisons: [SeccompPolicy.Comparison] = []
            for _ in 0..<(input.byte() % 5) {
                let argument = Int(input.byte() % 6)
                let mask: UInt64 = switch input.byte() % 5 {
                case 0: 0xFFFF_FFFF
                case 1: .max
                case 2: 0xFFFF_FFFF_0000_0000
                case 3: 0
                default: input.integer(UInt64.self)
                }
                comparisons.append(.init(argument: argument, mask: mask, equals: input.integer(UInt64.self) & mask))
            }
            checks.append(.init(comparisons, action(&input)))
        }
        return SeccompPolicy.Rule(syscall, checks: checks, otherwise: otherwise)
    }

    /// A call aimed at the policy: usually a number one of its rules names, with arguments that
    /// often satisfy that rule's comparisons, so every block's paths are reached.
    static func call(_ input: inout FuzzInput, policy: SeccompPolicy) -> ClassicBPF.SeccompData {
        let selector = input.byte()
        let rule = policy.rules.isEmpty ? nil : policy.rules[Int(input.integer(UInt16.self)) % policy.rules.count]
        let nr: Int32 = switch selector % 4 {
        case 0: Int32(bitPattern: input.integer(UInt32.self))
        case 1: Int32(bitPattern: input.integer(UInt32.self) | ClassicBPF.x32SyscallBit)
        default: rule?.syscall.number ?? 0
        }
        var arch = ClassicBPF.Architecture.x86_64
        if selector & 0x30 == 0x30 {
            let any = input.integer(UInt32.self)
            arch = input.pick([ClassicBPF.Architecture.i386, ClassicBPF.Architecture.aarch64, any])
        }
        let comparisons = rule?.checks.flatMap(\.comparisons) ?? []
        var args: [UInt64] = []
        for _ in 0..<6 {
            let how = input.byte()
            let noise = input.integer(UInt64.self)
            if how % 3 != 0, !comparisons.isEmpty {
                let c = comparisons[Int(how) % comparisons.count]
                // That comparison holds; the other bits are noise.
                if c.argument == args.count { args.append(c.value | noise & ~c.mask); continue }
            }
            args.append(how % 3 == 0 ? noise : 0)
        }
        return ClassicBPF.SeccompData(nr: nr, arch: arch, instructionPointer: input.integer(UInt64.self), args: args)
    }

    /// What `policy` says about `call`, read from its documentation, not from its program.
    static func expected(_ policy: SeccompPolicy, _ call: ClassicBPF.SeccompData) -> ClassicBPF.Verdict {
        guard call.arch == ClassicBPF.Architecture.x86_64, UInt32(bitPattern: call.nr) < ClassicBPF.x32SyscallBit else {
            return .killProcess
        }
        guard let rule = policy.rules.first(where: { $0.syscall.number == call.nr }) else { return verdict(policy.defaultAction) }
        for check in rule.checks where check.comparisons.allSatisfy({ call.args[$0.argument] & $0.mask == $0.value }) {
            return verdict(check.action)
        }
        return verdict(rule.otherwise ?? policy.defaultAction)
    }

    static func verdict(_ action: SeccompPolicy.Action) -> ClassicBPF.Verdict {
        switch action {
        case .allow: .allow
        case .errno(let code): .errno(UInt16(code))
        case .log: .log
        case .trap: .trap(0)
        case .killProcess: .killProcess
        }
    }
}
