import ArgumentParser

/// `swiftlet api` (placeholder until the API lands).
struct ApiCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "api", abstract: "Firecracker-compatible API.")
}
