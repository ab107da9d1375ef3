import VMSpec
import CHost
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Confines the per-VM process (`swiftlet api`) once its files and devices are open: first
/// `dropPrivileges`, then `installSeccompFilter`. In that order: the privilege drop needs system
/// calls the filter forbids, and an unprivileged process may still install a filter because the
/// filter sets PR_SET_NO_NEW_PRIVS itself.
public enum Sandbox {
    /// Switches the whole process to `uid`/`gid` with no supplementary groups, for good (real,
    /// effective and saved ids all change, so the old ids cannot be taken back; leaving uid 0
    /// also clears every capability).
    ///
    /// Safe in a multi-threaded process: the kernel changes credentials per thread, but glibc's
    /// setgroups/setresgid/setresuid signal every other thread to make the same call before they
    /// return (POSIX semantics). Call it before vCPU threads run, since that signal would
    /// interrupt KVM_RUN, and before `installSeccompFilter`, which forbids these calls.
    public static func dropPrivileges(uid: UInt32, gid: UInt32) throws(HostError) {
        // Groups, then gid, then uid: after the uid change the others are no longer allowed.
        guard setgroups(0, nil) == 0 else { throw HostError("setgroups", errno: errno) }
        var result = chost_setresgid(gid)
        guard result == 0 else { throw HostError("setresgid \(gid)", errno: -result) }
        result = chost_setresuid(uid)
        guard result == 0 else { throw HostError("setresuid \(uid)", errno: -result) }

        // Paranoia: check the kernel's view, and that root cannot be regained.
        var real: UInt32 = 0, effective: UInt32 = 0, saved: UInt32 = 0
        result = chost_getresuid(&real, &effective, &saved)
        guard result == 0 else { throw HostError("getresuid", errno: -result) }
        guard real == uid, effective == uid, saved == uid else {
            throw HostError("privilege drop: uids are \(real)/\(effective)/\(saved), not \(uid)", errno: EPERM)
        }
        result = chost_getresgid(&real, &effective, &saved)
        guard result == 0 else { throw HostError("getresgid", errno: -result) }
        guard real == gid, effective == gid, saved == gid else {
            throw HostError("privilege drop: gids are \(real)/\(effective)/\(saved), not \(gid)", errno: EPERM)
        }
        if uid != 0 && setuid(0) == 0 {
            throw HostError("privilege drop: setuid(0) still succeeds after dropping to uid \(uid)", errno: EPERM)
        }
    }

    /// Installs `policy` on every thread of the process (SECCOMP_FILTER_FLAG_TSYNC); threads
    /// created later inherit it. There is no way back. Sets PR_SET_NO_NEW_PRIVS first. From
    /// then on `confineCurrentThread` narrows each VM thread further.
    public static func installSeccompFilter(_ policy: SeccompPolicy = .vmm) throws(HostError) {
        prepareForFilter()
        let filter = policy.program().map { sock_filter(code: $0.code, jt: $0.jt, jf: $0.jf, k: $0.k) }
        let result = filter.withUnsafeBufferPointer { chost_seccomp_install($0.baseAddress, UInt16($0.count)) }
        if result < 0 { throw HostError("seccomp", errno: -result) }
        if result > 0 { throw HostError("seccomp: thread \(result) cannot take the filter", errno: EBUSY) }
        processConfined.store(true, ordering: .sequentiallyConsistent)
    }

    /// Whether `installSeccompFilter` has run in this process.
    public static var isProcessConfined: Bool { processConfined.load(ordering: .sequentiallyConsistent) }
    private static let processConfined = Atomic(false)

    /// Adds `role`'s filter to the calling thread alone (Firecracker's per-thread filters), on top
    /// of the process's: the kernel runs both and the stricter verdict wins, so the thread keeps
    /// only the calls its work needs. Threads it creates afterwards inherit the narrower set, so a
    /// thread confines itself once it has started every thread it will start. Does nothing in a
    /// process without the filter (`--no-seccomp`, a debugging tender).
    public static func confineCurrentThread(to role: ThreadRole) throws(HostError) {
        guard isProcessConfined else { return }
        let filter = role.policy.program().map { sock_filter(code: $0.code, jt: $0.jt, jf: $0.jf, k: $0.k) }
        let result = filter.withUnsafeBufferPointer { chost_seccomp_install_thread($0.baseAddress, UInt16($0.count)) }
        if result < 0 { throw HostError("seccomp (\(role.rawValue) thread)", errno: -result) }
    }

    /// `confineCurrentThread`, or the end of the process with one line on stderr: a VM thread
    /// must not go on with more rights than its role has.
    public static func confineCurrentThreadOrExit(to role: ThreadRole, name: String) {
        do { try confineCurrentThread(to: role) } catch {
            FileDescriptor.standardError.write(line: "swiftlet: cannot confine thread \(name): \(error)")
            _exit(1)
        }
    }

    /// Does now what libc would otherwise do lazily with a forbidden call: the first
    /// `localtime_r` reads /etc/localtime (openat).
    static func prepareForFilter() {
        tzset()
    }
}

/// A seccomp-BPF allowlist: for each listed system call an action, possibly chosen by tests on
/// its arguments; every other call gets `defaultAction`. `program()` compiles it into the classic
/// BPF program the kernel runs at each system call entry. The filter is x86-64 only: any other
/// architecture (an int 0x80 i386 call) and any x32 call is killed before the list is consulted.
public struct SeccompPolicy: Sendable, Equatable {
    /// The filter's verdict (SECCOMP_RET_*).
    public enum Action: Sendable, Equatable {
        case allow
        /// Fail the call with this errno without running it.
        case errno(Int32)
        /// Allow it, and record it in the audit log: a debugging aid for finding missing entries.
        case log
        /// Send SIGSYS to the calling thread (a handler may catch it).
        case trap
        /// Kill the whole process with SIGSYS, no handler, no core dump of a half-run VM.
        case killProcess

        /// The 32-bit value the BPF program returns.
        public var returnValue: UInt32 {
            switch self {
            case .allow: chost_SECCOMP_RET_ALLOW()
            case .errno(let code): chost_SECCOMP_RET_ERRNO() | (UInt32(truncatingIfNeeded: code) & chost_SECCOMP_RET_DATA())
            case .log: chost_SECCOMP_RET_LOG()
            case .trap: chost_SECCOMP_RET_TRAP()
            case .killProcess: chost_SECCOMP_RET_KILL_PROCESS()
            }
        }
    }

    /// An x86-64 system call, by name and number (CHost's copy of <asm/unistd_64.h>).
    public struct Syscall: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public let number: Int32

        /// nil for a name the table does not have.
        public init?(_ name: String) {
            guard let number = Self.numbers[name] else { return nil }
            self.name = name
            self.number = number
        }

        /// nil for a number the table does not have.
        public init?(number: Int32) {
            guard let found = Self.all.first(where: { $0.number == number }) else { return nil }
            self = found
        }

        private init(name: String, number: Int32) {
            self.name = name
            self.number = number
        }

        /// Every system call of the table, by number.
        public static let all: [Syscall] = (0..<chost_syscall_count()).compactMap { i in
            guard let name = chost_syscall_name(i), chost_syscall_number(i) >= 0 else { return nil }
            return Syscall(name: String(cString: name), number: chost_syscall_number(i))
        }
        private static let numbers: [String: Int32] = Dictionary(all.map { ($0.name, $0.number) }) { a, _ in a }

        /// The named call; a name outside the table is a programming error and traps.
        public static func named(_ name: String) -> Syscall {
            guard let s = Syscall(name) else { preconditionFailure("no x86-64 system call named \(name)") }
            return s
        }

        public var description: String { name }
    }

    /// `(args[argument] & mask) == value`. The mask covers the 64-bit register. For an `int`
    /// argument keep the default 32-bit mask: the kernel ignores the high half, so the filter must
    /// too, or garbage there would let one value pass as another.
    public struct Comparison: Sendable, Equatable {
        public var argument: Int
        public var mask: UInt64
        public var value: UInt64

        public init(argument: Int, mask: UInt64 = 0xFFFF_FFFF, equals value: UInt64) {
            precondition((0..<6).contains(argument), "system calls have arguments 0 to 5")
            precondition(value & ~mask == 0, "value \(value) has bits outside mask \(mask): the check could never match")
            self.argument = argument
            self.mask = mask
            self.value = value
        }
    }

    /// When every comparison holds, `action` decides.
    public struct ArgumentCheck: Sendable, Equatable {
        public var comparisons: [Comparison]
        public var action: Action

        public init(_ comparisons: [Comparison], _ action: Action) {
            self.comparisons = comparisons
            self.action = action
        }

        /// A check of one argument.
        public init(argument: Int, mask: UInt64 = 0xFFFF_FFFF, equals value: UInt64, _ action: Action) {
            self.init([Comparison(argument: argument, mask: mask, equals: value)], action)
        }
    }

    /// What to do with one system call: the first matching check decides, else `otherwise`
    /// (nil: the policy's `defaultAction`).
    public struct Rule: Sendable, Equatable {
        public var syscall: Syscall
        public var checks: [ArgumentCheck]
        public var otherwise: Action?

        public init(_ syscall: Syscall, checks: [ArgumentCheck] = [], otherwise: Action?) {
            self.syscall = syscall
            self.checks = checks
            self.otherwise = otherwise
        }

        /// Allows the named call whatever its arguments.
        public static func allow(_ name: String) -> Rule { Rule(.named(name), otherwise: .allow) }
    }

    /// In order: the program tests them one after another, so frequent calls go first. When two
    /// rules name the same call, the first one counts.
    public var rules: [Rule]
    /// For system calls no rule names.
    public var defaultAction: Action

    public init(rules: [Rule], defaultAction: Action = .killProcess) {
        self.rules = rules
        self.defaultAction = defaultAction
    }

    /// The rule for the named call, if any.
    public func rule(for name: String) -> Rule? { rules.first { $0.syscall.name == name } }

    /// Replaces the rule for `rule.syscall`, or appends it.
    public mutating func set(_ rule: Rule) {
        if let i = rules.firstIndex(where: { $0.syscall == rule.syscall }) { rules[i] = rule } else { rules.append(rule) }
    }

    /// The classic BPF program: check the architecture, refuse x32, then one `jeq nr` per rule
    /// followed by that rule's block, which always ends in a `ret`; the last instruction returns
    /// `defaultAction`.
    public func program() -> [BPFInstruction] {
        let kill = Action.killProcess.returnValue
        var program: [BPFInstruction] = [
            .load(chost_seccomp_data_arch_offset()),
            .jumpIfEqual(chost_AUDIT_ARCH_X86_64(), true: 1, false: 0),
            .ret(kill),
            .load(chost_seccomp_data_nr_offset()),
            .jumpIfGreaterOrEqual(chost_X32_SYSCALL_BIT(), true: 0, false: 1),
            .ret(kill),
        ]
        for rule in rules {
            let block = compile(rule)
            // A jump offset is 8 bits; blocks are a few instructions, this only guards misuse.
            precondition(block.count <= 255, "the rule for \(rule.syscall) has too many checks")
            program.append(.jumpIfEqual(UInt32(bitPattern: rule.syscall.number), true: 0, false: UInt8(block.count)))
            program += block
        }
        program.append(.ret(defaultAction.returnValue))
        precondition(program.count <= Int(chost_BPF_MAXINSNS()), "seccomp program longer than the kernel accepts")
        return program
    }

    /// One rule's block: each check loads the argument halves its comparisons mask, compares
    /// each, and returns its action when all match, else jumps to the next check; the block ends
    /// returning `otherwise`.
    private func compile(_ rule: Rule) -> [BPFInstruction] {
        var block: [BPFInstruction] = []
        for check in rule.checks {
            var halves: [(offset: UInt32, mask: UInt32, value: UInt32)] = []
            for c in check.comparisons {
                let offset = chost_seccomp_data_args_offset() + 8 * UInt32(c.argument)
                let low = UInt32(truncatingIfNeeded: c.mask), high = UInt32(truncatingIfNeeded: c.mask >> 32)
                if low != 0 { halves.append((offset, low, UInt32(truncatingIfNeeded: c.value))) }
                if high != 0 { halves.append((offset + 4, high, UInt32(truncatingIfNeeded: c.value >> 32))) }
            }
            let length = halves.reduce(1) { $0 + ($1.mask == .max ? 2 : 3) }
            var test: [BPFInstruction] = []
            for half in halves {
                test.append(.load(half.offset))
                if half.mask != .max { test.append(.and(half.mask)) }
                // On a mismatch, jump past the rest of this check, its `ret` included.
                test.append(.jumpIfEqual(half.value, true: 0, false: UInt8(length - test.count - 1)))
            }
            test.append(.ret(check.action.returnValue))
            block += test
        }
        block.append(.ret((rule.otherwise ?? defaultAction).returnValue))
        return block
    }
}

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
public struct BPFInstruction: Hashable, Sendable, CustomStringConvertible {
    public var code: UInt16
    public var jt: UInt8
    public var jf: UInt8
    public var k: UInt32

    public init(code: UInt16, jt: UInt8, jf: UInt8, k: UInt32) {
        self.code = code
        self.jt = jt
        self.jf = jf
        self.k = k
    }

    /// The opcodes seccomp programs here use.
    public enum Opcode {
        /// A = 32-bit word at offset K of struct seccomp_data.
        public static var load: UInt16 { chost_BPF_LD_W_ABS() }
        /// A &= K.
        public static var and: UInt16 { chost_BPF_ALU_AND_K() }
        /// Skip jt instructions if A == K, else jf.
        public static var jumpIfEqual: UInt16 { chost_BPF_JMP_JEQ_K() }
        /// Skip jt instructions if A >= K (unsigned), else jf.
        public static var jumpIfGreaterOrEqual: UInt16 { chost_BPF_JMP_JGE_K() }
        /// Return K.
        public static var ret: UInt16 { chost_BPF_RET_K() }
    }

    public static func load(_ offset: UInt32) -> BPFInstruction { .init(code: Opcode.load, jt: 0, jf: 0, k: offset) }
    public static func and(_ mask: UInt32) -> BPFInstruction { .init(code: Opcode.and, jt: 0, jf: 0, k: mask) }
    public static func jumpIfEqual(_ value: UInt32, true jt: UInt8, false jf: UInt8) -> BPFInstruction {
        .init(code: Opcode.jumpIfEqual, jt: jt, jf: jf, k: value)
    }
    public static func jumpIfGreaterOrEqual(_ value: UInt32, true jt: UInt8, false jf: UInt8) -> BPFInstruction {
        .init(code: Opcode.jumpIfGreaterOrEqual, jt: jt, jf: jf, k: value)
    }
    public static func ret(_ value: UInt32) -> BPFInstruction { .init(code: Opcode.ret, jt: 0, jf: 0, k: value) }

    public var description: String {
        switch code {
        case Opcode.load: return "ld [\(k)]"
        case Opcode.and: return "and #\(k.hexString)"
        case Opcode.jumpIfEqual: return "jeq #\(k.hexString), +\(jt), +\(jf)"
        case Opcode.jumpIfGreaterOrEqual: return "jge #\(k.hexString), +\(jt), +\(jf)"
        case Opcode.ret: return "ret #\(k.hexString)"
        default: return "op \((UInt32(code)).hexString) jt=\(jt) jf=\(jf) k=\(k.hexString)"
        }
    }
}

// MARK: - The VMM policy

extension SeccompPolicy {
    /// What a running VMM process needs (vCPU threads, the device event loops, the SwiftNIO API
    /// server, the Swift runtime and glibc), found by reading the code and by tracing
    /// `swiftlet run`, `swiftlet hvt` and `swiftlet api` with every device. Everything
    /// else kills the process: opening files, starting programs, creating processes, network
    /// sockets, ptrace, executable memory, signals to other processes.
    ///
    /// When in doubt an entry stays: a missing one kills a user's VM at run time, which is worse
    /// than one more harmless call on descriptors the process already holds.
    ///
    /// Not safe under it: work on Dispatch's global concurrent queues (`DispatchQueue.global()`,
    /// which SwiftNIO's `syncShutdownGracefully` uses). Once such a queue has run, libdispatch's
    /// thread-pool monitor wakes every second and, whenever one has work waiting, opens
    /// /proc/<tid>/stat of its workers: an open the filter kills (and one whose failure
    /// libdispatch treats as fatal). Serial queues, SwiftNIO event loops and our threads are fine.
    /// The filter of an extension process (docs/abi.md, "Extensions"). An extension may be
    /// written in anything, so the VM process's allow-list cannot apply (it kills every executable
    /// mapping: no dynamic loader, no interpreter could start); this one lets a language runtime
    /// run and kills the process on what a device has no business doing: network sockets (only
    /// AF_UNIX), namespaces and mounts, tracing or reading other processes, kernel modules, BPF,
    /// perf, keyrings, io_uring (which would bypass the filter), raw I/O ports, and changing the
    /// clock, the host name or the swap. With no_new_privs (set before it) nothing it executes
    /// gains privileges.
    public static let extensionProcess: SeccompPolicy = {
        var rules: [Rule] = []
        func kill(_ names: String...) { rules += names.compactMap { Syscall($0) }.map { Rule($0, otherwise: .killProcess) } }
        let unixOnly = ArgumentCheck(argument: 0, equals: UInt64(AF_UNIX), .allow)
        rules.append(Rule(.named("socket"), checks: [unixOnly], otherwise: .killProcess))
        rules.append(Rule(.named("socketpair"), checks: [unixOnly], otherwise: .killProcess))
        // New namespaces through clone (unshare and setns are killed below).
        let namespaces = UInt64(chost_CLONE_NEWNS() | chost_CLONE_NEWUSER() | chost_CLONE_NEWPID() | chost_CLONE_NEWNET()
                                | chost_CLONE_NEWIPC() | chost_CLONE_NEWUTS() | chost_CLONE_NEWCGROUP())
        rules.append(Rule(.named("clone"), checks: namespaces.nonzeroBitPatterns.map { ArgumentCheck(argument: 0, mask: $0, equals: $0, .killProcess) },
                          otherwise: .allow))
        kill("clone3", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
             "fsmount", "fsconfig", "fspick", "mount_setattr", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
             "pidfd_getfd", "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot", "bpf",
             "perf_event_open", "keyctl", "add_key", "request_key", "io_uring_setup", "io_uring_enter", "io_uring_register",
             "iopl", "ioperm", "swapon", "swapoff", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
             "sethostname", "setdomainname", "acct", "quotactl", "syslog", "userfaultfd", "open_by_handle_at",
             "name_to_handle_at", "fanotify_init", "lookup_dcookie", "vhangup", "mknod", "mknodat")
        return SeccompPolicy(rules: rules, defaultAction: .allow)
    }()

    public static let vmm: SeccompPolicy = {
        var rules: [Rule] = []
        func allow(_ names: String...) { rules += names.map(Rule.allow) }
        func allowIf(_ name: String, _ checks: ArgumentCheck..., otherwise: Action? = nil) {
            rules.append(Rule(.named(name), checks: checks, otherwise: otherwise))
        }

        // ioctl comes first: KVM_RUN is the hottest call by far, and the program is a linear scan.
        // KVM's own requests (type 0xAE) on the /dev/kvm, VM and vCPU fds; type 'T' (0x54):
        // termios for the console (TCGETS, TCSETS*, TIOCGWINSZ), FIONBIO/FIONREAD/FIOCLEX, and the
        // tap's TUN* requests. Four 'T' requests are kept out: TIOCSTI and TIOCLINUX inject input
        // into a terminal, TIOCCONS redirects the console, TIOCSETD loads line disciplines.
        allowIf("ioctl",
                ArgumentCheck(argument: 1, mask: 0xFF00, equals: 0xAE00, .allow),
                ArgumentCheck(argument: 1, equals: UInt64(chost_TIOCSTI()), .killProcess),
                ArgumentCheck(argument: 1, equals: UInt64(chost_TIOCLINUX()), .killProcess),
                ArgumentCheck(argument: 1, equals: UInt64(chost_TIOCCONS()), .killProcess),
                ArgumentCheck(argument: 1, equals: UInt64(chost_TIOCSETD()), .killProcess),
                ArgumentCheck(argument: 1, mask: 0xFF00, equals: 0x5400, .allow))

        // Locks and the device loop: futex (Mutex, condition variables, Dispatch, thread joins);
        // epoll and timerfd (the virtio hub, vsock, SwiftNIO); eventfds that KVM signals
        // (ioeventfd/irqfd) and that wake loops.
        allow("futex", "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "timerfd_settime",
              "timerfd_gettime")

        // Data on descriptors opened before the filter: disk images (pread/pwrite/preadv/pwritev,
        // fdatasync and fsync for FLUSH, fallocate for DISCARD and WRITE_ZEROES), taps (readv/
        // writev), console and stdio, eventfds, sockets.
        allow("read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
              "preadv2", "pwritev2", "lseek", "fdatasync", "fsync", "fallocate")

        // Unix sockets at run time: vsock accepts host connections on its listener and connects
        // guest-initiated streams to `<uds>_<port>` (socket, connect, send/recv); the console
        // socket and the API server (SwiftNIO) accept clients and use sendmsg/recvmsg, socket
        // options and addresses. Only AF_UNIX sockets can be made: no network access. bind and
        // listen are absent: every listener exists before the filter.
        allow("recvfrom", "sendto", "recvmsg", "sendmsg", "recvmmsg", "sendmmsg", "accept", "accept4",
              "connect", "shutdown", "getsockopt", "setsockopt", "getsockname", "getpeername")
        allowIf("socket", ArgumentCheck(argument: 0, equals: UInt64(AF_UNIX), .allow))
        allowIf("socketpair", ArgumentCheck(argument: 0, equals: UInt64(AF_UNIX), .allow))

        // Signals: vCPU kicks and "the VM ended" are pthread_kill (tgkill) to our own threads;
        // the main thread takes stop signals with sigwait (rt_sigtimedwait); restart_syscall
        // resumes a sleep a signal handler interrupted. kill(2), which reaches other processes,
        // is not here; pidfd_send_signal is, as it reaches only a process whose pidfd we hold: an
        // extension process that failed is killed through the pidfd taken when it was started.
        allow("rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait", "tgkill", "rt_sigaction",
              "rt_sigpending", "rt_sigsuspend", "sigaltstack", "restart_syscall", "pidfd_send_signal")

        // Memory: malloc (brk, mmap, munmap, mremap for realloc, madvise to return pages), thread
        // stacks (mmap, mprotect of the guard). Never executable: mapping or re-protecting with
        // PROT_EXEC kills, so no injected code can be made runnable.
        allow("brk", "munmap", "mremap", "madvise")
        allowIf("mmap", ArgumentCheck(argument: 2, mask: UInt64(PROT_EXEC), equals: UInt64(PROT_EXEC), .killProcess),
                otherwise: .allow)
        allowIf("mprotect", ArgumentCheck(argument: 2, mask: UInt64(PROT_EXEC), equals: UInt64(PROT_EXEC), .killProcess),
                otherwise: .allow)

        // Threads, which come and go at run time (vCPUs start after the filter; Dispatch and
        // SwiftNIO add workers lazily): glibc tries clone3 first, whose flags live in memory
        // where BPF cannot see them, so it fails with ENOSYS and glibc falls back to clone,
        // allowed only with CLONE_THREAD (threads yes, processes no: fork and posix_spawn die).
        // A new thread registers its robust-futex list and rseq area, gets an alternate signal
        // stack, and is named (prctl PR_SET_NAME, PR_GET_NAME, and PR_SET_VMA, which newer glibc
        // uses to label mappings; no other prctl option).
        allowIf("clone", ArgumentCheck(argument: 0, mask: UInt64(chost_CLONE_THREAD()), equals: UInt64(chost_CLONE_THREAD()), .allow))
        rules.append(Rule(.named("clone3"), otherwise: .errno(ENOSYS)))
        allow("set_robust_list", "rseq", "set_tid_address", "exit", "exit_group", "sched_yield",
              "sched_getaffinity", "gettid", "getpid")
        // A new Dispatch worker sets its own nice value from its QoS: setpriority(PRIO_PROCESS, 0, n)
        // (who 0 is the calling thread). Other processes, groups or users stay out of reach.
        allowIf("setpriority", ArgumentCheck([Comparison(argument: 0, equals: UInt64(PRIO_PROCESS.rawValue)),
                                              Comparison(argument: 1, equals: 0)], .allow))
        allowIf("prctl",
                ArgumentCheck(argument: 0, equals: UInt64(chost_PR_SET_NAME()), .allow),
                ArgumentCheck(argument: 0, equals: UInt64(chost_PR_GET_NAME()), .allow),
                ArgumentCheck(argument: 0, equals: UInt64(chost_PR_SET_VMA()), .allow))
        // Reading resource limits (pthread stack sizes) but never setting them: new_limit is NULL.
        allowIf("prlimit64", ArgumentCheck(argument: 2, mask: .max, equals: 0, .allow))
        allow("getrlimit")

        // Time: usually the vDSO, but a clock source without one makes these real calls.
        allow("clock_gettime", "clock_getres", "gettimeofday", "time", "clock_nanosleep", "nanosleep")

        // Descriptors: closing, duplicating, flags (O_NONBLOCK, FD_CLOEXEC), flock, new
        // anonymous ones (pipes, eventfds, timerfds, epoll sets that Dispatch, SwiftNIO and
        // devices create lazily), polling, and fstat (glibc's fstat is newfstatat with
        // AT_EMPTY_PATH; path forms only read metadata).
        allow("close", "dup", "dup2", "dup3", "fcntl", "flock", "pipe", "pipe2", "eventfd", "eventfd2",
              "timerfd_create", "epoll_create", "epoll_create1", "poll", "ppoll", "select", "pselect6",
              "fstat", "newfstatat", "statx", "stat", "lstat")

        // Randomness (Swift's hashing seed and SystemRandomNumberGenerator, virtio-rng).
        allow("getrandom")

        // Read-only facts about the process and host that libraries ask for lazily.
        allow("getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "getppid",
              "uname", "sysinfo", "getrusage", "times", "getcpu", "readlink", "getcwd")

        // Removing our own socket files when the VM ends (vsock's `uds` path, the API socket).
        allow("unlink", "unlinkat")

        // A thread adding its role's filter on top of this one (`Sandbox.confineCurrentThread`):
        // a filter can only take calls away. Flags 0: no TSYNC, no user-notification listener.
        allowIf("seccomp", ArgumentCheck([Comparison(argument: 0, equals: UInt64(chost_SECCOMP_SET_MODE_FILTER())),
                                          Comparison(argument: 1, equals: 0)], .allow))

        return SeccompPolicy(rules: rules)
    }()

    /// The rules of this policy for the named calls only, in this policy's order and with its
    /// argument checks (one model: a role's filter never allows what the process filter
    /// forbids); `replacing` swaps in a narrower rule for a call.
    /// Arrays and numbers rather than sets of names: a VM process builds its role filters as its
    /// threads start, and a `Set<String>` there instantiated generic metadata and hashing code
    /// nothing else in the process runs — about 1.5 MiB of the binary faulted in (fault-around
    /// maps 64 KiB per fault), a third of an idle unikernel's whole footprint (bench/rss).
    public func keeping(_ names: [String], replacing narrower: [Rule] = []) -> SeccompPolicy {
        let numbers = names.map { Syscall.named($0).number }
        precondition(numbers.allSatisfy { n in rules.contains { $0.syscall.number == n } },
                     "a role keeps only calls the process policy has")
        var kept = rules.filter { numbers.contains($0.syscall.number) }
        for rule in narrower {
            precondition(numbers.contains(rule.syscall.number), "\(rule.syscall) replaced but not kept")
            kept[kept.firstIndex { $0.syscall == rule.syscall }!] = rule
        }
        return SeccompPolicy(rules: kept, defaultAction: defaultAction)
    }
}

// MARK: - Per-thread filters

/// The kinds of thread a VM process runs, each confined by `Sandbox.confineCurrentThread` to
/// what its work needs, on top of the process's `.vmm` filter (Firecracker keeps vCPU, VMM and
/// API filters the same way). The thread that builds and waits for the VM, and the process's
/// main thread, keep the process filter alone: they start the others and tidy up at the end.
public enum ThreadRole: String, CaseIterable, Sendable {
    /// A vCPU's exit loop: KVM_RUN and exit handling, which includes the hvt hypercalls (console,
    /// block and net I/O, polling, the clock) and MMIO/port writes to devices (the serial port
    /// sends to the console socket's client). No new threads, no new or accepted sockets, no
    /// terminal requests, no files removed.
    case vcpu
    /// A device's event loop (virtio queues and their back ends, the hvt net ring, the console):
    /// epoll, eventfds, disk and tap I/O, vsock's Unix sockets, interrupts through KVM. No new
    /// threads, no files removed.
    case device
    /// The API server's thread once the VM runs: requests on accepted connections, pause,
    /// resume and stop (futexes, kicks), interrupts (Ctrl+Alt+Del). No new threads or sockets.
    case api

    /// The calls every role needs: locks, memory (never executable), signals to its own
    /// threads (kicks, "the VM ended"; a vCPU sets its kick handler as it attaches), the clock,
    /// a thread's own end, and failing loudly (abort: getpid, gettid, tgkill; a message).
    private static let common: [String] = [
        "futex", "read", "write", "readv", "writev", "close", "brk", "mmap", "munmap", "mremap", "madvise",
        "mprotect", "rt_sigprocmask", "rt_sigreturn", "rt_sigaction", "tgkill", "exit", "exit_group", "getpid", "gettid",
        "sched_yield", "restart_syscall", "clock_gettime", "clock_getres", "gettimeofday", "time",
        "clock_nanosleep", "nanosleep", "getrandom",
        // glibc's stdio asks what its descriptor is on first use (a message on stderr).
        "fstat", "newfstatat",
    ]

    /// The calls this role may make: the process policy's rules for them (`SeccompPolicy.keeping`).
    public var policy: SeccompPolicy {
        switch self {
        case .vcpu: Self.vcpuPolicy
        case .device: Self.devicePolicy
        case .api: Self.apiPolicy
        }
    }

    private static let vcpuPolicy = SeccompPolicy.vmm.keeping(common + [
        "ioctl",
        // Device activation and reset run here, on the guest's status write (DRIVER_OK, 0):
        // virtio-net tells the tap which offloads the guest takes; vsock starts and stops
        // watching its listener and closes its streams.
        "epoll_ctl", "shutdown",
        // hvt BLOCK_READ/WRITE (with fdatasync before a write completes), NET_READ/WRITE on the
        // tap, POLL (epoll with a timeout), virtio doorbells without ioeventfd.
        "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2", "lseek", "fdatasync", "fsync",
        "epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll", "timerfd_settime", "timerfd_gettime",
        // The serial port's output to the console socket's client (a non-blocking send on a
        // connection the console thread accepted). An access to an extension's range: the
        // message out, a poll for room, and the kill through its pidfd if it stalls.
        "sendto", "pidfd_send_signal",
    ], replacing: [
        // KVM's requests (KVM_RUN, registers, interrupts, ioeventfds when a BAR moves) and the
        // tap's TUNSETOFFLOAD at virtio-net activation; terminal requests and the rest of the
        // tap's belong to the device threads.
        SeccompPolicy.Rule(.named("ioctl"), checks: [
            .init(argument: 1, mask: 0xFF00, equals: 0xAE00, .allow),
            .init(argument: 1, equals: UInt64(chost_TUNSETOFFLOAD()), .allow),
        ], otherwise: nil),
    ])

    private static let devicePolicy = SeccompPolicy.vmm.keeping(common + [
        "ioctl",
        "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2", "lseek", "fdatasync", "fsync", "fallocate",
        "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "poll", "ppoll", "timerfd_settime", "timerfd_gettime",
        "eventfd2", "fcntl", "dup", "dup3",
        // vsock: host connections accepted on its listener, guest-initiated ones connected to
        // `<uds>_<port>` (AF_UNIX only, as in the process policy); the console socket's clients.
        "socket", "connect", "accept", "accept4", "recvfrom", "sendto", "recvmsg", "sendmsg", "shutdown",
        "getsockopt", "setsockopt", "getsockname", "getpeername",
        // An extension's thread kills a failed extension through its pidfd.
        "pidfd_send_signal",
    ])

    private static let apiPolicy = SeccompPolicy.vmm.keeping(common + [
        "ioctl",
        "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "timerfd_settime", "timerfd_gettime",
        "eventfd2", "fcntl", "poll", "ppoll",
        "accept", "accept4", "recvfrom", "sendto", "recvmsg", "sendmsg", "shutdown", "getsockopt", "setsockopt",
        "getsockname", "getpeername",
    ])
}

extension UInt64 {
    /// Each set bit alone, lowest first.
    var nonzeroBitPatterns: [UInt64] {
        (0..<64).compactMap { bit in self & (1 << bit) != 0 ? UInt64(1) << bit : nil }
    }
}
