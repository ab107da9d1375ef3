import ArgumentParser
import Host
import Logging
import Logs
import VMM
#if canImport(Glibc)
import Glibc
#endif

/// `swiftlet hvt`: a drop-in for Solo5's `solo5-hvt` tender.
struct HvtCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hvt",
        abstract: "Run a Solo5 hvt unikernel (same options as solo5-hvt).",
        discussion: HvtCommandLine.usage
    )

    @Argument(parsing: .captureForPassthrough, help: "solo5-hvt options, KERNEL and its ARGS")
    var arguments: [String] = []

    func run() throws { Self.runAndExit(arguments) }

    /// Parses, builds and runs the tender; exits with the unikernel's status (1 on tender errors).
    /// `asSolo5` (installed as solo5-hvt or solo5-hvt-debug): `--help` behaves exactly as the
    /// peer's, usage on stderr and exit 1, since scripts written for it may rely on that; as
    /// `swiftlet hvt` it is a help like every other swiftlet command's, on stdout with exit 0.
    static func runAndExit(_ arguments: [String], asSolo5: Bool = false) -> Never {
        StopSignals.blockEarly()
        do {
            switch try HvtCommandLine.parse(arguments) {
            case .help:
                if asSolo5 {
                    printError(HvtCommandLine.usage)
                    Glibc.exit(1)
                }
                var text = HvtCommandLine.usage + "\n"
                text.withUTF8 { try? FileDescriptor.standardOutput.writeAll(UnsafeRawBufferPointer($0)) }
                Glibc.exit(0)
            case .version:
                printError(HvtCommandLine.version)
                Glibc.exit(0)
            case .run(let config, let warnings):
                // One log for the command line's warnings and the tender's messages, at --solo5:NAME.
                let log = LogDestination(layout: .tender, threshold: LogThreshold(solo5: config.logLevel))
                let logger = Logger(label: "hvt") { SwiftletLogHandler(label: $0, destination: log) }
                for w in warnings { logger.warning("\(w)") }
                let tender = try HvtTender(config: config, logSink: log)
                Glibc.exit(tender.run())
            }
        } catch {
            printError("swiftlet: \(error.message)")
            Glibc.exit(1)
        }
    }
}

/// Writes one line to stderr without touching the C `stderr` global (not concurrency-safe).
func printError(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { utf8 in try? FileDescriptor.standardError.writeAll(UnsafeRawBufferPointer(utf8)) }
}
