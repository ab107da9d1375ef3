import ArgumentParser

/// `swiftlet ctl`: talks to swiftletd (placeholder until the daemon lands).
struct CtlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ctl", abstract: "Control VMs run by swiftletd.")
}
