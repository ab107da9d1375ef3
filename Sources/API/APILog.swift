import Host
import Logging
import Logs

extension LogDestination {
    /// The log of one `swiftlet api` process: Firecracker's layout on stderr, at `threshold`
    /// (`--log-level`) until `PUT /logger` says otherwise.
    public static func apiProcess(threshold: LogThreshold = LogThreshold(.warning)) -> LogDestination {
        LogDestination(layout: .firecracker, threshold: threshold)
    }

    /// Applies `PUT /logger` to every message of the process: the API's, the VMM's, the devices'.
    func apply(_ request: APIRequests.Logger) throws(APIError) {
        do {
            try configure(path: request.logPath, threshold: request.level, showLevel: request.showLevel,
                          showOrigin: request.showLogOrigin)
        } catch {
            throw APIError("log_path \(error)")
        }
    }
}

/// A request the API refuses: 400 with this message as `fault_message`.
public struct APIError: Error, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
}
