import VMSpec
import ArgumentParser
import Host
import Synchronization
import VMM
import FirecrackerJSON
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

    /// The system calls to try, named as on the command line (Host makes them).
    typealias Probe = SeccompProbe

    @Option(help: "Drop to this user id first (with --gid).") var uid: UInt32?
    @Option(help: "Drop to this group id first (with --uid).") var gid: UInt32?
    @Option(name: .customLong("run-config"), help: "Build the VM of this Firecracker config file, then run it under the filter.") var runConfig: String?
    @Option(help: "Make the call from a new thread confined to this role's filter too: \(ThreadRole.allCases.map(\.rawValue).joined(separator: ", ")). It prints \"survived\" and exits 0 if the call returns.") var thread: ThreadRole?
    @Argument(help: "The system call to make under the filter.") var probe: Probe?

    func validate() throws {
        guard (uid == nil) == (gid == nil) else { throw ValidationError("--uid and --gid go together") }
        guard (probe == nil) != (runConfig == nil) else { throw ValidationError("give either a probe or --run-config") }
        if thread != nil && probe == nil { throw ValidationError("--thread goes with a probe") }
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

        if let thread {
            // The same confinement a VM thread of that role takes as it starts.
            // The same confinement a VM thread of that role takes as it starts; the probe is the
            // only call it makes, the report comes from this thread.
            let result = Atomic(0)
            do {
                let prober = try HostThread(name: "probe-\(thread.rawValue)", role: thread) {
                    result.store(probe.attempt(), ordering: .sequentiallyConsistent)
                }
                prober.join()
            } catch { fail(error.description) }
            print("\(probe.rawValue) returned \(result.load(ordering: .sequentiallyConsistent)) on a \(thread.rawValue) thread; survived")
            Glibc.exit(0)
        }
        let result = probe.attempt()
        let ids = SeccompProbe.credentials
        print("\(probe.rawValue) returned \(result); survived uid=\(ids.uid) gid=\(ids.gid)")
        Glibc.exit(Probe.allowed.contains(probe) ? 0 : 1)
    }

    private func fail(_ message: String) -> Never {
        printError("swiftlet: " + message)
        Glibc.exit(1)
    }
}

extension SeccompProbe: ExpressibleByArgument {
    /// The probes the filter lets through; every other one must die of SIGSYS.
    static let allowed: [SeccompProbe] = [.getpid, .socketUnix, .thread, .kvmIoctl, .terminalIoctl, .pwrite, .unlink]
    static var forbidden: [SeccompProbe] { allCases.filter { !allowed.contains($0) } }
}

extension ThreadRole: ExpressibleByArgument {}
