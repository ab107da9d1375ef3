import Testing
import Host
import ClassicBPF
import CHost
#if canImport(Glibc)
import Glibc
#endif

/// A system call as a seccomp program sees it, named for these tests.
typealias Call = ClassicBPF.SeccompData

extension ClassicBPF.SeccompData {
    init(_ name: String, _ args: UInt64..., arch: UInt32 = ClassicBPF.Architecture.x86_64) {
        self.init(nr: SeccompPolicy.Syscall.named(name).number, arch: arch, args: args)
    }

    init(number: Int32) { self.init(nr: number) }
}

/// The seccomp program builder, run through ClassicBPF's interpreter, which is written from the
/// kernel's ABI (opcodes, struct seccomp_data, SECCOMP_RET_*) apart from Host's constants, so the
/// numbers are checked against an independent copy rather than against themselves. Nothing is
/// installed: no KVM, no root.
@Suite struct SandboxTests {
    static let x86_64 = ClassicBPF.Architecture.x86_64
    static let i386 = ClassicBPF.Architecture.i386
    static let allow = ClassicBPF.Return.allow
    static let kill = ClassicBPF.Return.killProcess
    static let log = ClassicBPF.Return.log
    static let trap = ClassicBPF.Return.trap
    static func errno(_ e: UInt16) -> UInt32 { ClassicBPF.Return.errno(e) }

    /// Runs `program` on `call` as the kernel would; returns the SECCOMP_RET_* value and the
    /// number of instructions executed (a fault is recorded as an issue and returns 0).
    static func run(_ program: [BPFInstruction], _ call: Call) -> (result: UInt32, steps: Int) {
        do throws(ClassicBPF.Fault) { return try ClassicBPF.run(program, on: call) } catch {
            Issue.record("\(error)")
            return (0, 0)
        }
    }

    static let vmm = SeccompPolicy.vmm.program()

    static func verdict(_ call: Call, _ program: [BPFInstruction] = vmm) -> UInt32 { run(program, call).result }

    // MARK: An extension process's filter

    @Test func theExtensionFilterLetsARuntimeRunAndKillsWhatADeviceNeverNeeds() throws {
        let program = SeccompPolicy.extensionProcess.program()
        try ClassicBPF.validate(program)
        // A language runtime's calls pass, executable mappings included.
        for call in [Call("read", 3), Call("execve"), Call("mmap", 0, 4096, UInt64(PROT_READ | PROT_EXEC)), Call("socket", UInt64(AF_UNIX)),
                     Call("clone", UInt64(chost_CLONE_THREAD())), Call("openat"), Call("kill", 1, 9)] {
            #expect(Self.verdict(call, program) == Self.allow, "\(call)")
        }
        for call in [Call("socket", UInt64(AF_INET)), Call("socket", UInt64(AF_INET6)), Call("socketpair", UInt64(AF_INET)),
                     Call("clone", UInt64(chost_CLONE_NEWUSER())), Call("clone", UInt64(chost_CLONE_NEWNET() | chost_CLONE_THREAD())),
                     Call("unshare", 0), Call("mount"), Call("ptrace"), Call("bpf"), Call("io_uring_setup"), Call("init_module"),
                     Call("process_vm_writev"), Call("perf_event_open")] {
            #expect(Self.verdict(call, program) == Self.kill, "\(call)")
        }
        // The architecture check comes first, as in every filter of ours.
        #expect(Self.verdict(Call("read", arch: Self.i386), program) == Self.kill)
    }

    // MARK: The program is one the kernel accepts

    @Test func programIsWellFormed() throws {
        for program in [Self.vmm, SeccompPolicy(rules: []).program()] {
            try ClassicBPF.validate(program)
        }
    }

    /// The checker refuses what the kernel would, so a builder bug cannot pass it.
    @Test func validatorRefusesBrokenPrograms() {
        let ret = BPFInstruction.ret(Self.allow)
        let cases: [([BPFInstruction], ClassicBPF.Fault)] = [
            ([], .empty),
            (Array(repeating: ret, count: 4097), .tooLong(count: 4097)),
            ([.load(2), ret], .loadOutsideData(pc: 0, offset: 2)),
            ([.load(64), ret], .loadOutsideData(pc: 0, offset: 64)),
            ([.jumpIfEqual(0, true: 1, false: 0), ret], .jumpPastEnd(pc: 0)),
            ([.load(0)], .lastIsNotReturn),
            ([BPFInstruction(code: 0x07, jt: 0, jf: 0, k: 0), ret], .unknownOpcode(pc: 0, code: 0x07)),
        ]
        for (program, fault) in cases {
            #expect(throws: fault) { try ClassicBPF.validate(program) }
        }
        #expect(throws: ClassicBPF.Fault.ranOffTheEnd) { try ClassicBPF.run([.load(0)], on: Call(number: 0)) }
    }

    @Test func kernelConstants() {
        #expect(SeccompPolicy.Action.allow.returnValue == Self.allow)
        #expect(SeccompPolicy.Action.killProcess.returnValue == Self.kill)
        #expect(SeccompPolicy.Action.log.returnValue == Self.log)
        #expect(SeccompPolicy.Action.trap.returnValue == Self.trap)
        #expect(SeccompPolicy.Action.errno(38).returnValue == Self.errno(38))
        #expect(BPFInstruction.Opcode.load == ClassicBPF.Opcode.loadWord)
        #expect(BPFInstruction.Opcode.and == ClassicBPF.Opcode.andConstant)
        #expect(BPFInstruction.Opcode.jumpIfEqual == ClassicBPF.Opcode.jumpIfEqual)
        #expect(BPFInstruction.Opcode.jumpIfGreaterOrEqual == ClassicBPF.Opcode.jumpIfGreaterOrEqual)
        #expect(BPFInstruction.Opcode.ret == ClassicBPF.Opcode.returnConstant)
    }

    @Test func syscallTable() {
        let pinned: [(String, Int32)] = [("read", 0), ("write", 1), ("open", 2), ("mmap", 9), ("mprotect", 10),
                                         ("ioctl", 16), ("socket", 41), ("clone", 56), ("fork", 57), ("execve", 59),
                                         ("kill", 62), ("ptrace", 101), ("setpriority", 141), ("prctl", 157),
                                         ("tgkill", 234), ("openat", 257), ("prlimit64", 302), ("clone3", 435),
                                         ("openat2", 437), ("futex_waitv", 449)]
        for (name, number) in pinned {
            #expect(SeccompPolicy.Syscall(name)?.number == number, "\(name)")
            #expect(SeccompPolicy.Syscall(number: number)?.name == name, "\(number)")
        }
        #expect(SeccompPolicy.Syscall("no_such_call") == nil)
        #expect(SeccompPolicy.Syscall(number: 9999) == nil)
        #expect(SeccompPolicy.Syscall.all.count > 350)
        #expect(Set(SeccompPolicy.Syscall.all.map(\.number)).count == SeccompPolicy.Syscall.all.count)
    }

    // MARK: Architecture and ABI

    @Test func otherArchitecturesAreKilled() {
        // i386's number 3 is read... and 5 is open: whatever the number, a foreign ABI dies.
        for nr in [0, 3, 5, 11] as [Int32] {
            var call = Call(number: nr)
            call.arch = Self.i386
            #expect(Self.verdict(call) == Self.kill, "i386 call \(nr)")
        }
        var read = Call("read")
        read.arch = ClassicBPF.Architecture.aarch64
        #expect(Self.verdict(read) == Self.kill)
    }

    @Test func x32CallsAreKilled() {
        for name in ["read", "write", "futex", "getpid"] {
            let nr = SeccompPolicy.Syscall.named(name).number
            #expect(Self.verdict(Call(number: nr)) == Self.allow, "\(name)")
            #expect(Self.verdict(Call(number: nr | 0x4000_0000)) == Self.kill, "x32 \(name)")
        }
        #expect(Self.verdict(Call(number: -1)) == Self.kill)
    }

    @Test func logModeStillKillsForeignABIs() {
        var policy = SeccompPolicy.vmm
        policy.defaultAction = .log
        let program = policy.program()
        #expect(Self.verdict(Call("openat"), program) == Self.log)
        #expect(Self.verdict(Call("read"), program) == Self.allow)
        #expect(Self.verdict(Call("socket", 2), program) == Self.log, "a failed check falls to the default")
        #expect(Self.verdict(Call("mmap", 0, 4096, 5), program) == Self.kill, "explicit kills stay kills")
        #expect(Self.verdict(Call(number: 0x4000_0000), program) == Self.kill)
        var foreign = Call("read")
        foreign.arch = Self.i386
        #expect(Self.verdict(foreign, program) == Self.kill)
    }

    // MARK: The VMM allowlist

    static let allowedCalls: [(String, Call)] = [
        ("read", Call("read")), ("write", Call("write")), ("futex", Call("futex")), ("epoll_wait", Call("epoll_wait")),
        ("pread64", Call("pread64")), ("pwritev", Call("pwritev")), ("fdatasync", Call("fdatasync")),
        ("fallocate", Call("fallocate")), ("getpid", Call("getpid")), ("tgkill", Call("tgkill")),
        ("rt_sigtimedwait", Call("rt_sigtimedwait")), ("accept4", Call("accept4")), ("connect", Call("connect")),
        ("close", Call("close")), ("exit_group", Call("exit_group")), ("getrandom", Call("getrandom")),
        ("unlink", Call("unlink")), ("restart_syscall", Call("restart_syscall")),
        ("KVM_RUN", Call("ioctl", 12, 0xAE80)), ("KVM_IRQ_LINE_STATUS", Call("ioctl", 4, 0xC008_AE67)),
        ("TCGETS", Call("ioctl", 0, 0x5401)), ("TCSETS", Call("ioctl", 0, 0x5402)), ("FIONBIO", Call("ioctl", 3, 0x5421)),
        ("TUNSETIFF", Call("ioctl", 9, 0x4004_54CA)), ("TUNSETOFFLOAD", Call("ioctl", 9, 0x4004_54D0)),
        ("ioctl high garbage", Call("ioctl", 12, 0xFFFF_FFFF_0000_AE80)),
        ("clone thread", Call("clone", 0x003D_0F00)), ("socket unix", Call("socket", 1, 0x80801)),
        ("socket unix, high garbage", Call("socket", 0xDEAD_BEEF_0000_0001)), ("socketpair unix", Call("socketpair", 1)),
        ("mmap rw", Call("mmap", 0, 8192, 3, 0x22)), ("mmap none", Call("mmap", 0, 8192, 0, 0x22)),
        ("mprotect rw", Call("mprotect", 0x1000, 4096, 3)), ("prctl PR_SET_NAME", Call("prctl", 15)),
        ("prctl PR_GET_NAME", Call("prctl", 16)), ("prlimit64 read", Call("prlimit64", 0, 3, 0, 0x7FFF_0000)),
        ("setpriority self", Call("setpriority", 0, 0, 5)),
    ]

    static let killedCalls: [(String, Call)] = [
        ("open", Call("open")), ("openat", Call("openat")), ("openat2", Call("openat2")), ("creat", Call("creat")),
        ("execve", Call("execve")), ("execveat", Call("execveat")), ("fork", Call("fork")), ("vfork", Call("vfork")),
        ("ptrace", Call("ptrace")), ("kill", Call("kill")), ("tkill", Call("tkill")), ("bind", Call("bind")),
        ("listen", Call("listen")), ("setuid", Call("setuid")), ("setresuid", Call("setresuid")), ("mount", Call("mount")),
        ("bpf", Call("bpf")), ("io_uring_setup", Call("io_uring_setup")), ("memfd_create", Call("memfd_create")),
        ("process_vm_writev", Call("process_vm_writev")), ("seccomp", Call("seccomp")), ("unshare", Call("unshare")),
        ("clone process", Call("clone", 0x0120_0011)), ("clone vfork", Call("clone", 0x4111)),
        ("socket inet", Call("socket", 2, 1)), ("socket inet6", Call("socket", 10, 1)), ("socket netlink", Call("socket", 16, 3)),
        ("socketpair inet", Call("socketpair", 2)),
        ("TIOCSTI", Call("ioctl", 0, 0x5412)), ("TIOCLINUX", Call("ioctl", 0, 0x541C)), ("TIOCCONS", Call("ioctl", 0, 0x541D)),
        ("TIOCSETD", Call("ioctl", 0, 0x5423)), ("SIOCGIFINDEX", Call("ioctl", 3, 0x8933)),
        ("BLKGETSIZE64", Call("ioctl", 3, 0x8008_1272)), ("FS_IOC_GETFLAGS", Call("ioctl", 3, 0x8008_6601)),
        ("mmap rx", Call("mmap", 0, 4096, 5, 0x22)), ("mmap rwx", Call("mmap", 0, 4096, 7, 0x22)),
        ("mmap x only", Call("mmap", 0, 4096, 4, 0x22)), ("mprotect rx", Call("mprotect", 0x1000, 4096, 5)),
        ("prctl PR_SET_DUMPABLE", Call("prctl", 4, 1)), ("prctl PR_SET_SECCOMP", Call("prctl", 22, 2)),
        ("prctl PR_SET_NAME in the high half", Call("prctl", 0x0000_000F_0000_0000)),
        ("prlimit64 write", Call("prlimit64", 0, 3, 0x7FFF_0000, 0)),
        ("prlimit64 write, high half only", Call("prlimit64", 0, 3, 0x1_0000_0000, 0)),
        ("setpriority other process", Call("setpriority", 0, 1234, 19)), ("setpriority user", Call("setpriority", 2, 0, 19)),
        ("setpriority group", Call("setpriority", 1, 0, 19)),
    ]

    @Test(arguments: allowedCalls) func allowed(_ name: String, _ call: Call) {
        #expect(Self.verdict(call) == Self.allow, "\(name)")
    }

    @Test(arguments: killedCalls) func killed(_ name: String, _ call: Call) {
        #expect(Self.verdict(call) == Self.kill, "\(name)")
    }

    @Test func clone3FailsWithENOSYSSoGlibcFallsBackToClone() {
        #expect(Self.verdict(Call("clone3")) == Self.errno(38))
    }

    @Test func unknownNumbersAreKilled() {
        for nr in [400, 463, 1000, 0x3FFF_FFFF] as [Int32] {
            #expect(Self.verdict(Call(number: nr)) == Self.kill, "\(nr)")
        }
    }

    @Test func everyRuleNamesADifferentCall() {
        let names = SeccompPolicy.vmm.rules.map(\.syscall.name)
        #expect(Set(names).count == names.count)
    }

    /// The filter runs on every system call: KVM_RUN, the one that matters, is decided in a
    /// handful of instructions because ioctl is the first rule.
    @Test func kvmRunIsCheap() {
        #expect(SeccompPolicy.vmm.rules.first?.syscall.name == "ioctl")
        #expect(Self.run(Self.vmm, Call("ioctl", 12, 0xAE80)).steps <= 12)
    }

    // MARK: Building policies

    @Test func checksCompareBothHalvesAndAllArguments() {
        let policy = SeccompPolicy(rules: [
            SeccompPolicy.Rule(.named("lseek"), checks: [
                .init([.init(argument: 1, mask: .max, equals: 0x1_0000_0002), .init(argument: 2, equals: 1)], .allow),
                .init(argument: 2, mask: 0x4, equals: 0x4, .errno(22)),
            ], otherwise: .trap),
            .allow("read"),
        ])
        let p = policy.program()
        #expect(Self.verdict(Call("lseek", 3, 0x1_0000_0002, 1), p) == Self.allow)
        #expect(Self.verdict(Call("lseek", 3, 0x0_0000_0002, 1), p) == Self.trap, "high half differs")
        #expect(Self.verdict(Call("lseek", 3, 0x1_0000_0002, 0), p) == Self.trap, "second argument differs")
        #expect(Self.verdict(Call("lseek", 3, 7, 5), p) == Self.errno(22))
        #expect(Self.verdict(Call("read"), p) == Self.allow)
        #expect(Self.verdict(Call("write"), p) == Self.kill)
    }

    @Test func firstRuleForACallWinsAndSetReplacesIt() {
        var policy = SeccompPolicy(rules: [.allow("read"), SeccompPolicy.Rule(.named("read"), otherwise: .errno(1))])
        #expect(Self.verdict(Call("read"), policy.program()) == Self.allow)
        policy.set(SeccompPolicy.Rule(.named("read"), otherwise: .errno(5)))
        #expect(Self.verdict(Call("read"), policy.program()) == Self.errno(5))
        policy.set(.allow("openat"))
        #expect(policy.rule(for: "openat") != nil)
        #expect(Self.verdict(Call("openat"), policy.program()) == Self.allow)
    }

    // MARK: Per-thread filters

    static func program(_ role: ThreadRole) -> [BPFInstruction] { role.policy.program() }

    @Test(arguments: ThreadRole.allCases)
    func roleProgramsAreWellFormed(_ role: ThreadRole) throws {
        try ClassicBPF.validate(Self.program(role))
    }

    /// One model: a role only narrows the process filter. Every call of the table, with
    /// arguments that matter to some check (address families, PROT_EXEC, ioctl requests, clone
    /// flags, seccomp's operation and flags), is allowed by a role only if `.vmm` allows it too.
    @Test(arguments: ThreadRole.allCases)
    func rolesNeverAllowWhatTheProcessFilterKills(_ role: ThreadRole) {
        let program = Self.program(role)
        let values: [UInt64] = [0, 1, 2, 4, 8, 0x10000, 0xAE80, 0x5401, 0x5412, 0x541C, 0x541D, 0x80045400]
        for syscall in SeccompPolicy.Syscall.all {
            for a0 in values {
                for a1 in [0, 1, 0xAE80, 0x5401, 0x5412] as [UInt64] {
                    for a2 in [0, 4] as [UInt64] {
                        let call = Call(nr: syscall.number, args: [a0, a1, a2])
                        if Self.verdict(call, program) == Self.allow {
                            #expect(Self.verdict(call) == Self.allow, "\(role) allows \(syscall)(\(a0), \(a1), \(a2)); the process filter does not")
                        }
                    }
                }
            }
        }
    }

    /// What each role keeps and loses, written out (the integration tests make the same calls
    /// from real threads).
    @Test func vcpuThreadsKeepTheExitLoopOnly() {
        let p = Self.program(.vcpu)
        #expect(Self.verdict(Call("ioctl", 5, 0xAE80), p) == Self.allow, "KVM_RUN")
        #expect(Self.verdict(Call("ioctl", 5, 0x4040AE79), p) == Self.allow, "KVM_IOEVENTFD (a BAR moved)")
        #expect(Self.verdict(Call("ioctl", 0, 0x5401), p) == Self.kill, "TCGETS: terminals are the console thread's")
        #expect(Self.verdict(Call("ioctl", 7, 0x400454D0), p) == Self.allow, "TUNSETOFFLOAD: virtio-net activation")
        #expect(Self.verdict(Call("ioctl", 7, 0x400454CA), p) == Self.kill, "TUNSETIFF: the tap was set up before")
        // Activation and reset (the guest's status writes) start and stop vsock's listener watch.
        for name in ["pwrite64", "pread64", "fdatasync", "epoll_pwait", "epoll_ctl", "shutdown", "clock_gettime", "write",
                     "sendto", "futex", "tgkill"] {
            #expect(Self.verdict(Call(name), p) == Self.allow, "\(name)")
        }
        #expect(Self.verdict(Call("clone", 0x3D0F00), p) == Self.kill, "no threads from a vCPU")
        for name in ["socket", "connect", "accept4", "sendmsg", "unlink", "fallocate", "prctl", "setpriority", "seccomp"] {
            #expect(Self.verdict(Call(name, 1), p) == Self.kill, "\(name)")
        }
    }

    @Test func deviceThreadsKeepTheirBackEnds() {
        let p = Self.program(.device)
        #expect(Self.verdict(Call("socket", 1, 1), p) == Self.allow, "AF_UNIX: vsock")
        #expect(Self.verdict(Call("socket", 2, 1), p) == Self.kill, "AF_INET")
        for name in ["connect", "accept4", "fallocate", "pwritev", "epoll_ctl", "eventfd2"] {
            #expect(Self.verdict(Call(name), p) == Self.allow, "\(name)")
        }
        #expect(Self.verdict(Call("ioctl", 0, 0x5412), p) == Self.kill, "TIOCSTI, as in the process filter")
        #expect(Self.verdict(Call("ioctl", 0, 0x5401), p) == Self.allow, "TCGETS: the console")
        #expect(Self.verdict(Call("clone", 0x3D0F00), p) == Self.kill, "no threads from a device loop")
        for name in ["unlink", "prctl", "setpriority", "seccomp", "socketpair"] {
            #expect(Self.verdict(Call(name, 1), p) == Self.kill, "\(name)")
        }
    }

    @Test func apiThreadKeepsItsConnections() {
        let p = Self.program(.api)
        for name in ["accept4", "recvmsg", "sendmsg", "epoll_wait", "epoll_ctl", "writev", "timerfd_settime", "tgkill", "futex"] {
            #expect(Self.verdict(Call(name), p) == Self.allow, "\(name)")
        }
        for name in ["socket", "connect", "clone", "pwrite64", "fdatasync", "fallocate", "unlink", "prctl", "seccomp"] {
            #expect(Self.verdict(Call(name, 1, 0x10000), p) == Self.kill, "\(name)")
        }
    }

    /// Threads add their role's filter through seccomp(2) itself: the process filter lets
    /// SECCOMP_SET_MODE_FILTER with no flags through, nothing else (no TSYNC over other threads,
    /// no user-notification listener, no strict mode).
    @Test func processFilterLetsAThreadAddAFilterOnly() {
        #expect(Self.verdict(Call("seccomp", 1, 0)) == Self.allow)
        #expect(Self.verdict(Call("seccomp", 1, 1)) == Self.kill, "TSYNC")
        #expect(Self.verdict(Call("seccomp", 1, 8)) == Self.kill, "NEW_LISTENER")
        #expect(Self.verdict(Call("seccomp", 0, 0)) == Self.kill, "strict mode")
        #expect(Self.verdict(Call("seccomp", 2, 0)) == Self.kill, "GET_ACTION_AVAIL")
    }
}
