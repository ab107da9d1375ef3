import ArgumentParser
import VMM
#if canImport(Glibc)
import Glibc
#endif

/// The `swiftlet` command: one subcommand per product (hvt today; run, api and ctl to come).
struct Swiftlet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftlet",
        abstract: "A lightweight VMM over KVM: Solo5 unikernels and microVMs.",
        subcommands: [HvtCommand.self]
    )
}

// `swiftlet hvt` keeps solo5-hvt's exact command line (options like `--net:NAME=IFACE` that no
// argument parser models), so it is dispatched before ArgumentParser sees it.
let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "hvt" {
    HvtCommand.runAndExit(Array(arguments.dropFirst()))
}
Swiftlet.main()
