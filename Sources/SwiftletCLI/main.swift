import ArgumentParser
import VMSpec
import Logs
import VMM
#if canImport(Glibc)
import Glibc
#endif

/// The `swiftlet` command: one subcommand per product.
struct Swiftlet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftlet",
        abstract: "A lightweight VMM over KVM: Linux microVMs and Solo5 unikernels.",
        version: SwiftletVersion.summary,
        subcommands: [RunCommand.self, HvtCommand.self, ApiCommand.self, CtlCommand.self, SeccompCheckCommand.self]
    )
}

/// `--log-level NAME` of the commands that run a VM (swiftlet hvt spells it `--solo5:NAME`):
/// the one level vocabulary, Solo5's names (quiet, warn) included.
struct LogLevelOption: ParsableArguments {
    @Option(name: .customLong("log-level"), help: "The VMM's own messages: quiet, error, warn, info or debug (or trace, notice, warning, critical, off).")
    var name: String = "warn"

    var threshold: LogThreshold { LogThreshold(name: name) ?? LogThreshold(.warning) }

    func validate() throws {
        guard LogThreshold(name: name) != nil else {
            throw ValidationError("--log-level: '\(name)' is not quiet, error, warn, info or debug")
        }
    }
}

// `swiftlet hvt` (and the solo5-hvt names) keep solo5-hvt's exact command line: dispatched
// before ArgumentParser sees it.
HvtMain.runIfHvt(commandLine: CommandLine.arguments)
// `swiftlet oci` and swiftlet-oci: runc's command line, which ArgumentParser cannot take.
OCIMain.runIfOCI(commandLine: CommandLine.arguments)
let arguments = Array(CommandLine.arguments.dropFirst())
do {
    var command = try Swiftlet.parseAsRoot(arguments)
    try command.run()
} catch {
    // Help and version go out as ArgumentParser formats them; a usage error is one line.
    if Swiftlet.exitCode(for: error) == .success { Swiftlet.exit(withError: error) }
    var message = Swiftlet.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid arguments"
    if message.hasPrefix("Error: ") { message.removeFirst(7) }
    // A flag's own transform already names the flag and the value (VMSpec's grammar errors):
    // drop ArgumentParser's "The value 'X' is invalid for '--flag <flag>': " in front of it.
    if message.hasPrefix("The value '"), let range = message.range(of: ">': --") {
        message = String(message[message.index(range.upperBound, offsetBy: -2)...])
    }
    printError("swiftlet: " + message)
    // Bad input is exit 1 whichever door it came in by (README): ArgumentParser's usage errors
    // would be 64 (EX_USAGE), which no other tool of ours and none of our peers uses.
    let code = Swiftlet.exitCode(for: error)
    Glibc.exit(code == .validationFailure ? 1 : code.rawValue)
}
