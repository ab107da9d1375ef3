import ArgumentParser
import Host
import VMM

/// `swiftlet hvt`: a drop-in for Solo5's `solo5-hvt` tender. The lean `swiftlet` front runs it
/// without coming here; this entry gives it its place in `swiftlet --help`, the man page and the
/// completions, and runs the same HvtMain when the CLI is invoked directly.
struct HvtCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hvt",
        abstract: "Run a Solo5 hvt unikernel (same options as solo5-hvt).",
        discussion: HvtCommandLine.usage
    )

    @Argument(parsing: .captureForPassthrough, help: "solo5-hvt options, KERNEL and its ARGS")
    var arguments: [String] = []

    func run() throws { HvtMain.runAndExit(arguments) }
}

/// Writes one line to stderr.
func printError(_ line: String) { FileDescriptor.standardError.write(line: line) }
