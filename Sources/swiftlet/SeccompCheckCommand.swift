import CHost
import VMSpec
import ArgumentParser
import Host
import VMM
#if canImport(Glibc)
import Glibc
#endif

/// `swiftlet seccomp-check` (hidden diagnostic): installs the VMM's seccomp filter, optionally
/// after dropping privileges, then makes one named system call, or runs a whole VM, so tests can
/// see what the filter lets through and what it kills (SIGSYS, exit status 159).
struct SeccompCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seccomp-check",
        abstract: "Diagnostic: make one system call (or run a VM) under the VMM's seccomp filter.",
        discussion: """
            Allowed probes print "survived uid=U gid=G" and exit 0: \(Probe.allowed.map(\.rawValue).joined(separator: ", ")). \
            Forbidden probes must die of SIGSYS; if one returns, it prints "survived …" and exits 1: \
            \(Probe.forbidden.map(\.rawValue).joined(separator: ", ")). \
            With --run-config FILE (a Firecracker JSON config), the VM is built (files and devices \
            opened), the sandbox installed, and the VM run; the exit status is the VM's.
            """,
        shouldDisplay: false
    )

    /// The system calls to try, named as on the command line.
    enum Probe: String, CaseIterable, ExpressibleByArgument {
        case getpid, socketUnix = "socket-unix", thread
        case execve, socketInet = "socket-inet", fork, open, ptrace, mprotectExec = "mprotect-exec", kill

        static let allowed: [Probe] = [.getpid, .socketUnix, .thread]
        static var forbidden: [Probe] { allCases.filter { !allowed.contains($0) } }
    }

    @Option(help: "Drop to this user id first (with --gid).") var uid: UInt32?
    @Option(help: "Drop to this group id first (with --uid).") var gid: UInt32?
    @Option(name: .customLong("run-config"), help: "Build the VM of this Firecracker config file, then run it under the filter.") var runConfig: String?
    @Argument(help: "The system call to make under the filter.") var probe: Probe?

    func validate() throws {
        guard (uid == nil) == (gid == nil) else { throw ValidationError("--uid and --gid go together") }
        guard (probe == nil) != (runConfig == nil) else { throw ValidationError("give either a probe or --run-config") }
    }

    func run() throws {
        // The VM is built before the sandbox closes, as `swiftlet api` does at InstanceStart.
        var vm: MicroVM?
        if let runConfig {
            do { vm = try MicroVM(try FirecrackerConfig.load(path: runConfig)) } catch {
                fail(error.message)
            }
        }
        do {
            if let uid, let gid { try Sandbox.dropPrivileges(uid: uid, gid: gid) }
            try Sandbox.installSeccompFilter()
        } catch {
            fail(error.description)
        }
        if let vm { Glibc.exit(vm.run()) }
        guard let probe else { fail("no probe") }

        let result = Self.attempt(probe)
        print("\(probe.rawValue) returned \(result); survived uid=\(getuid()) gid=\(getgid())")
        Glibc.exit(Probe.allowed.contains(probe) ? 0 : 1)
    }

    /// Makes the call; returns its result (or -1 with errno for the failing ones).
    static func attempt(_ probe: Probe) -> Int {
        switch probe {
        case .getpid:
            return Int(getpid())
        case .socketUnix, .socketInet:
            let fd = socket(probe == .socketUnix ? AF_UNIX : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            if fd >= 0 { close(fd) }
            return Int(fd)
        case .thread:
            // pthread_create: clone3 gets ENOSYS and glibc falls back to clone(CLONE_THREAD).
            var thread = pthread_t()
            guard pthread_create(&thread, nil, { _ in nil }, nil) == 0 else { return -1 }
            return Int(pthread_join(thread, nil))
        case .execve:
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
            return Int(execv("/bin/true", argv))
        case .fork:
            // glibc's fork is clone without CLONE_THREAD.
            let pid = fork()
            if pid == 0 { _exit(0) }
            return Int(pid)
        case .open:
            let fd = Glibc.open("/etc/hostname", O_RDONLY)
            if fd >= 0 { close(fd) }
            return Int(fd)
        case .ptrace:
            // ptrace is variadic in glibc, which Swift cannot call directly: CHost wraps it.
            return chost_ptrace_traceme() < 0 ? -1 : 0
        case .mprotectExec:
            let page = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let page, page != MAP_FAILED else { return -1 }
            return Int(mprotect(page, 4096, PROT_READ | PROT_EXEC))
        case .kill:
            return Int(Glibc.kill(getpid(), 0))
        }
    }

    private func fail(_ message: String) -> Never {
        printError("swiftlet: " + message)
        Glibc.exit(1)
    }
}
