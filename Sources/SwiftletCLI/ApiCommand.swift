import VMSpec
import API
import ArgumentParser
import HTTPUnix
import Host
import Logging
import Logs
import Synchronization
import VMM
import FirecrackerJSON
#if canImport(Glibc)
import Glibc
#endif

/// `swiftlet api`: one VM process driven over Firecracker's REST API on a Unix socket.
struct ApiCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api",
        abstract: "Serve a Firecracker-compatible REST API for one VM on a Unix socket.",
        discussion: """
            Configure the VM with PUT /boot-source, /machine-config, /drives/ID, \
            /network-interfaces/ID, /vsock, then PUT /actions {"action_type": "InstanceStart"}; \
            or give --config-file to boot at once. The kernel may be a Linux bzImage or PVH ELF, \
            or a Solo5 hvt unikernel. At InstanceStart, once its files and devices are open, the \
            process enters its --jail (docs/jail.md), drops to --uid/--gid and installs a seccomp \
            filter (unless --no-seccomp). \
            The process exits with the VM: the guest's status, 0 on poweroff/reboot, 128+N after \
            signal N (SIGTERM stops the VM cleanly), 1 on an error. See api/swiftlet-vm-api.yaml.
            """
    )

    @Option(name: .customLong("api-sock"), help: "The API's Unix socket (created mode 0600; a stale one is replaced).") var apiSock: String
    @Option(name: .customLong("config-file"), help: "A Firecracker JSON config file: boot at once, keep serving the API.") var configFile: String?
    @Option(help: "The instance id GET / reports.") var id: String = "anonymous-instance"
    @Option(name: .customLong("console-sock"), help: "Serve the guest console on this Unix socket instead of stdio.") var consoleSock: String?
    @Option(name: .customLong("console-log"), help: "Append all console output to this file (with --console-sock).") var consoleLog: String?
    @Option(name: .customLong("exit-file"), help: "Write the exit status here when the VM ends (empty until then).") var exitFile: String?
    @Option(help: "Drop to this user id at InstanceStart (with --gid).") var uid: UInt32?
    @Option(help: "Drop to this group id at InstanceStart (with --uid).") var gid: UInt32?
    @Flag(name: .customLong("no-seccomp"), help: "Do not install the seccomp filter (debugging only).") var noSeccomp = false
    @Option(help: "Jail the VM process in DIR (docs/jail.md): own mount, IPC namespaces and root, cgroup limits, and without --uid/--gid the user 'swiftlet' (else nobody).") var jail: String?
    @Option(name: .customLong("extension"), help: "A device in another process, any language (docs/abi.md, Extensions): PROGRAM[,ARG...] or listen=PATH, then [,irq=N][,timeout_ms=MS]; started (or waited for) at InstanceStart (repeatable).", transform: RunCommand.extensionSpec) var extensions: [ExtensionSpec] = []
    @OptionGroup var logLevel: LogLevelOption

    func validate() throws {
        guard (uid == nil) == (gid == nil) else { throw ValidationError("--uid and --gid go together") }
        if consoleLog != nil && consoleSock == nil { throw ValidationError("--console-log needs --console-sock") }
        guard !id.isEmpty, id.utf8.count <= 64 else { throw ValidationError("--id must be 1 to 64 characters") }
        if let jail {
            guard jail.hasPrefix("/") else { throw ValidationError("--jail must be an absolute path") }
            // The id names the VM's cgroup (swiftlet/ID).
            guard !id.contains("/"), id != ".", id != ".." else { throw ValidationError("--id '\(id)' cannot name a cgroup (with --jail)") }
        }
    }

    func run() throws {
        // Namespaces belong to threads: detach them while this is the only one (docs/jail.md).
        if jail != nil {
            do { try Jail.detachNamespaces() } catch { fail("--jail: \(error)") }
        }
        // Block the stop signals before any thread exists, so every thread inherits the mask and
        // only this thread (the waiter below) or the VM's own thread takes them.
        let signals = SignalWaiter([SIGINT, SIGTERM, SIGHUP, SIGUSR1])
        Signals.ignore(SIGPIPE)
        // One malloc arena before any thread exists: glibc shrinks a thread arena's heap on free
        // and, the first time, reads /proc/sys/vm/overcommit_memory, an open the seccomp filter
        // kills (a large request to a running VM did). The main arena shrinks with brk instead.
        Memory.useOneMallocArena()
        // One log for the API's messages and the VMM's, at --log-level until PUT /logger changes it.
        let log = LogDestination.apiProcess(threshold: logLevel.threshold)
        LoggingSystem.bootstrap { SwiftletLogHandler(label: $0, destination: log) }

        var options = VMController.Options()
        options.id = id
        options.consoleSocket = consoleSock
        options.consoleLog = consoleLog
        if let uid, let gid { options.dropTo = (uid, gid) }
        if let jail {
            options.jail = Jail(root: jail, id: id)
            if options.dropTo == nil {
                let user = Jail.defaultUser()
                if let note = user.note { printError("swiftlet: note: \(note)") }
                options.dropTo = (user.uid, user.gid)
            }
        }
        options.seccomp = !noSeccomp
        options.extensions = extensions
        options.log = log

        // The exit file is created now, while we may still create files where it lives.
        var exitFD: FileDescriptor?
        if let exitFile {
            do { exitFD = try FileDescriptor.open(exitFile, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644) } catch {
                fail("--exit-file \(error)")
            }
        }

        let main = ThreadHandle.current
        let exitStatus = Atomic<Int32>(-1)
        // The API thread narrows its own filter once InstanceStart has started the VM's threads.
        let started = StartedServer()
        let controller = VMController(options: options, sandbox: { options throws(APIError) in
            try ApiCommand.applySandbox(options)
            if options.seccomp { started.server?.confineLoopThread(to: .api) }
        }) { status in
            exitStatus.store(status, ordering: .sequentiallyConsistent)
            main.send(SIGUSR1)
        }
        let server = UnixHTTPServer(socketPath: apiSock, handler: controller.handle)
        started.server = server
        do { try server.start() } catch { fail(error.message) }

        if let configFile {
            do {
                controller.apply(try FirecrackerConfig.load(path: configFile))
                try controller.start()
            } catch let error as VMMError {
                server.stop()
                fail(error.message)
            } catch let error as APIError {
                server.stop()
                fail(error.message)
            } catch { server.stop(); fail("\(error)") }
        }

        var stopping: Int32 = 0
        while true {
            // After the first stop signal, wait at most 10 s for the VM to end.
            guard let received = stopping == 0 ? signals.wait() : signals.wait(timeoutSeconds: 10) else { break }
            if received == SIGUSR1 { break }
            if controller.state == .notStarted { stopping = received; break }
            stopping = received
            controller.stop(signal: received)
        }
        var status = exitStatus.load(ordering: .sequentiallyConsistent)
        if status < 0 { status = 128 + stopping }
        if let exitFD {
            var text = "\(status)\n"
            text.withUTF8 { utf8 in _ = try? exitFD.writeAll(UnsafeRawBufferPointer(utf8)) }
        }
        // The request that ended the VM (SendCtrlAltDel, then a reboot) still gets its answer.
        server.waitUntilAnswered(seconds: 2)
        server.removeSocketFile()
        Glibc.exit(status)
    }

    /// Drops privileges and installs the seccomp filter, as the options ask.
    static func applySandbox(_ options: VMController.Options) throws(APIError) {
        if let (uid, gid) = options.dropTo {
            do { try Sandbox.dropPrivileges(uid: uid, gid: gid) } catch { throw APIError("cannot drop privileges: \(error)") }
        }
        if options.seccomp {
            do { try Sandbox.installSeccompFilter() } catch { throw APIError("cannot install the seccomp filter: \(error)") }
        }
    }

    private func fail(_ message: String) -> Never {
        printError("swiftlet: " + message)
        Glibc.exit(1)
    }
}

/// The API server, for the sandbox step that needs it (the server is made after the controller
/// whose requests it serves); set once, before any request can arrive.
private final class StartedServer: @unchecked Sendable {
    var server: UnixHTTPServer?
}
