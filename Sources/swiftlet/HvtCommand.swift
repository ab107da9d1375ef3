import ArgumentParser
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
    static func runAndExit(_ arguments: [String]) -> Never {
        StopSignals.blockEarly()
        do {
            switch try HvtCommandLine.parse(arguments) {
            case .help:
                // solo5-hvt prints its usage on stderr and exits 1.
                printError(HvtCommandLine.usage)
                Glibc.exit(1)
            case .version:
                printError(HvtCommandLine.version)
                Glibc.exit(0)
            case .run(let config, let warnings):
                if config.logLevel >= .warn { for w in warnings { printError("swiftlet: \(w)") } }
                let tender = try HvtTender(config: config)
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
    let text = line + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
}
