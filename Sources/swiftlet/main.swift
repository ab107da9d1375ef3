import Host
import VMM
import VMSpec
#if canImport(Glibc)
import Glibc
#endif

// The `swiftlet` command users run, kept lean: it is the process of every hvt unikernel
// (`swiftlet hvt`, and `solo5-hvt`/`solo5-hvt-debug` when installed as links to it), so it links
// no Foundation, no argument parser, no SwiftNIO and no YAML, and starts with no work beyond the
// tender's. Every other command (run, api, ctl, --help, man pages and completions) is the full
// CLI, `swiftlet-cli`, which this process becomes by exec (same pid, same descriptors).

// `swiftlet hvt`, and swiftlet installed (linked) as solo5-hvt or solo5-hvt-debug.
HvtMain.runIfHvt(commandLine: CommandLine.arguments)
let arguments = Array(CommandLine.arguments.dropFirst())
let argumentZero = CommandLine.arguments.first ?? "swiftlet"
// (swiftlet-oci answers --version as runc does, in swiftlet-cli.)
if arguments == ["--version"] && !argumentZero.hasSuffix("swiftlet-oci") {
    FileDescriptor.standardOutput.write(line: SwiftletVersion.summary)
    exit(0)
}
guard let cli = HostProcess.companionExecutable("swiftlet-cli") else {
    FileDescriptor.standardError.write(line: "swiftlet: swiftlet-cli is missing (looked beside this executable and in ../libexec/swiftlet): reinstall Swiftlet")
    exit(1)
}
let failure = HostProcess.replace(with: cli, argumentZero: argumentZero, arguments: arguments)
FileDescriptor.standardError.write(line: "swiftlet: \(failure)")
exit(1)
