import ArgumentParser
import VMSpec
import Daemon
import DaemonProtocol
import Foundation
import HTTPUnix
import Host
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// `swiftletd`: supervises the VMs of a config file (and ad-hoc ones), one `swiftlet api`
/// process each, and serves its API on a Unix socket. Runs in the foreground.
struct SwiftletD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftletd",
        abstract: "Supervise many VMs, one `swiftlet api` process each; control them with `swiftlet ctl`.",
        discussion: """
            SIGTERM or SIGINT stops the daemon but not the VMs: a daemon started later finds them \
            again in the state directory. SIGHUP re-reads the config file (as POST /reload does).
            """,
        version: SwiftletVersion.summary
    )

    @Option(help: "The config file (YAML). Default: /etc/swiftlet/swiftletd.yaml when it exists.") var config: String?
    @Option(help: "The daemon's API socket.") var socket: String = DaemonClient.defaultSocket
    @Option(name: .customLong("state-dir"), help: "Sockets, logs and state of the VMs (default: the config's state_dir, else /run/swiftlet).")
    var stateDir: String?
    @Option(help: "The swiftlet binary that runs each VM (default: the one beside swiftletd).") var swiftlet: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.") var logLevel: String = "info"
    @Option(name: .customLong("vm-arg"), help: .hidden) var vmArguments: [String] = []
    @Flag(name: .customLong("no-jail"), help: "Run VM processes without their jail (docs/jail.md), as the config's user or root; as the config's `jail: false`.") var noJail = false

    func validate() throws {
        guard LineLogHandler.level(logLevel) != nil else { throw ValidationError("--log-level '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical") }
        if let stateDir, !stateDir.hasPrefix("/") { throw ValidationError("--state-dir must be an absolute path") }
    }

    func run() throws {
        let level = LineLogHandler.level(logLevel) ?? .info
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, level: level) }
        let logger = Logger(label: "swiftletd")

        let configPath = config ?? (FileManager.default.fileExists(atPath: "/etc/swiftlet/swiftletd.yaml") ? "/etc/swiftlet/swiftletd.yaml" : nil)
        var daemonConfig = DaemonConfig()
        if let configPath {
            do { daemonConfig = try DaemonConfig.load(path: configPath) } catch { fail(error.message) }
        }
        let stateDirectory = stateDir ?? daemonConfig.stateDir ?? "/run/swiftlet"
        guard let swiftletPath = swiftlet ?? HostProcess.companionExecutable("swiftlet") else { fail("cannot find the swiftlet binary; give --swiftlet PATH") }
        guard FileSystem.isExecutable(swiftletPath) else { fail("\(swiftletPath): not an executable file (give --swiftlet PATH)") }
        if UnixSocket.isListening(socket) { fail("\(socket): another swiftletd is listening on it") }

        // Only the signal-waiting loop below sees these; every thread created later inherits the
        // mask. VM processes get a clean mask and default dispositions from the spawn attributes.
        let signals = SignalWaiter([SIGTERM, SIGINT, SIGHUP])
        Signals.ignore(SIGPIPE)

        var options = Supervisor.Options(stateDirectory: stateDirectory, swiftletPath: swiftletPath, uid: daemonConfig.uid, gid: daemonConfig.gid)
        options.extraArguments = vmArguments
        options.jail = !noJail && daemonConfig.jail != false
        if options.jail && options.uid == nil {
            // Jailed VM processes never keep root: the config's `user:`, else the swiftlet user, else nobody.
            let user = Jail.defaultUser()
            if let note = user.note { logger.notice("\(note)") }
            options.uid = user.uid
            options.gid = user.gid
        }
        let lock: FileLock
        do { lock = try DaemonLock.acquire(stateDirectory: stateDirectory) } catch { fail(error.message) }
        defer { withExtendedLifetime(lock) {} }
        let supervisor: Supervisor
        do { supervisor = try Supervisor(options: options, config: daemonConfig, logger: logger) } catch { fail(error.message) }
        var reload: (@Sendable () -> Result<DaemonConfig, DaemonError>)?
        if let configPath {
            reload = { Result { () throws(DaemonError) -> DaemonConfig in try DaemonConfig.load(path: configPath) } }
        }
        let api = DaemonAPI(supervisor: supervisor, logger: logger, reloadConfig: reload)
        let server = UnixHTTPServer(socketPath: socket, maximumBodyBytes: 64 << 10, concurrent: true) { api.handle($0) }
        do { try server.start() } catch {
            supervisor.shutdown()
            fail(error.message)
        }
        logger.info("swiftletd started", metadata: ["socket": "\(socket)", "state_dir": "\(stateDirectory)", "swiftlet": "\(swiftletPath)",
                                                    "config": "\(configPath ?? "none")", "vms": "\(supervisor.list().count)",
                                                    "jail": "\(options.jail)"])
        supervisor.autostart()

        while true {
            let received = signals.wait()
            if received == SIGHUP {
                guard let reload else { logger.warning("SIGHUP ignored: no config file"); continue }
                switch reload() {
                case .success(let config):
                    supervisor.reload(config: config)
                case .failure(let error):
                    logger.error("config reload failed", metadata: ["error": "\(error.message)"])
                }
                continue
            }
            logger.info("swiftletd stopping; VMs keep running", metadata: ["signal": "\(received)"])
            break
        }
        server.stop()
        supervisor.shutdown()
    }

    func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("swiftletd: \(message)\n".utf8))
        Glibc.exit(1)
    }
}

do {
    var command = try SwiftletD.parseAsRoot(Array(CommandLine.arguments.dropFirst()))
    try command.run()
} catch {
    // Help goes out as ArgumentParser formats it; a usage error is one line.
    if SwiftletD.exitCode(for: error) == .success { SwiftletD.exit(withError: error) }
    var message = SwiftletD.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid arguments"
    if message.hasPrefix("Error: ") { message.removeFirst(7) }
    FileHandle.standardError.write(Data("swiftletd: \(message)\n".utf8))
    // Bad input is exit 1, as for swiftlet (ArgumentParser's usage errors would be 64).
    let code = SwiftletD.exitCode(for: error)
    Glibc.exit(code == .validationFailure ? 1 : code.rawValue)
}
