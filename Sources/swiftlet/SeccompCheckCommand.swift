import ArgumentParser

/// `swiftlet seccomp-check` (hidden diagnostic; placeholder until the sandbox lands).
struct SeccompCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "seccomp-check", abstract: "Diagnostic.", shouldDisplay: false)
}
