import Host
import Logging
import Logs
#if canImport(Glibc)
import Glibc
#endif

/// The whole of `swiftlet hvt` (and of swiftlet installed as `solo5-hvt` or `solo5-hvt-debug`):
/// parse solo5-hvt's command line, build and run the tender, exit with the unikernel's status
/// (1 on tender errors). It lives here, not in an executable, so that the lean `swiftlet` front
/// and the full CLI run the one same code.
public enum HvtMain {
    /// Runs the tender and exits when `commandLine` (argv, program name first) asks for it: the
    /// program is named solo5-hvt or solo5-hvt-debug (a link to swiftlet: its whole command line
    /// is solo5-hvt's), or the first argument is `hvt`. Returns otherwise. Dispatched before any
    /// argument parser, since solo5-hvt's options (`--net:NAME=IFACE`) fit none.
    public static func runIfHvt(commandLine: [String]) {
        let arguments = Array(commandLine.dropFirst())
        let programName = commandLine.first.map { String($0.split(separator: "/").last ?? "") } ?? ""
        if programName == "solo5-hvt" || programName == "solo5-hvt-debug" {
            runAndExit(arguments, solo5Name: programName)
        }
        if arguments.first == "hvt" {
            runAndExit(Array(arguments.dropFirst()))
        }
    }

    /// `solo5Name` (installed as solo5-hvt or solo5-hvt-debug: that name): `--help` behaves
    /// exactly as the peer's, usage naming it on stderr and exit 1, since scripts written for it
    /// may rely on that; as `swiftlet hvt` it is a help like every other swiftlet command's, on
    /// stdout with exit 0.
    public static func runAndExit(_ arguments: [String], solo5Name: String? = nil) -> Never {
        StopSignals.blockEarly()
        do throws(VMMError) {
            switch try HvtCommandLine.parse(arguments) {
            case .help:
                if let solo5Name {
                    FileDescriptor.standardError.write(line: HvtCommandLine.usage(program: solo5Name))
                    exit(1)
                }
                FileDescriptor.standardOutput.write(line: HvtCommandLine.usage)
                exit(0)
            case .version:
                FileDescriptor.standardError.write(line: HvtCommandLine.version)
                exit(0)
            case .run(let config, let warnings):
                // One log for the command line's warnings and the tender's messages, at --solo5:NAME.
                let log = LogDestination(layout: .tender, threshold: LogThreshold(solo5: config.logLevel))
                let logger = Logger(label: "hvt") { SwiftletLogHandler(label: $0, destination: log) }
                for w in warnings { logger.warning("\(w)") }
                if config.jail != nil { try ForegroundJail.prepare() }
                let tender = try HvtTender(config: config, logSink: log)
                if let jail = config.jail {
                    try ForegroundJail.enter(jail, memoryMiB: config.memoryMiB, vcpus: 1, taps: !config.nets.isEmpty, runtimePaths: [])
                }
                // Every file is open: from here on the process keeps to its filter, as solo5-hvt does.
                if config.installsSeccompFilter {
                    do { try Sandbox.installSeccompFilter() } catch { throw VMMError(.host, "cannot install the seccomp filter: \(error)") }
                } else if config.seccomp {
                    logger.warning("--gdb or --dumpcore: running without the seccomp filter (as solo5-hvt-debug)")
                }
                exit(tender.run())
            }
        } catch {
            FileDescriptor.standardError.write(line: "swiftlet: \(error.message)")
            exit(1)
        }
    }
}
