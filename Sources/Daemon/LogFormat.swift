import DaemonProtocol
import Foundation
import Logging
import Logs

/// swiftletd's name for the one log handler: its lines are
/// `2025-01-02T03:04:05.678Z info swiftletd: vm started name=web pid=1234` (the `daemon` layout),
/// metadata keys sorted and values with spaces quoted, so they are easy to grep and to parse.
public typealias LineLogHandler = SwiftletLogHandler

extension SwiftletLogHandler {
    /// A handler on stderr at `level`, or into `sink` (a test's collector).
    public init(label: String, level: Logger.Level = .info, sink: (@Sendable (String) -> Void)? = nil) {
        self.init(label: label, destination: LogDestination(layout: .daemon, threshold: LogThreshold(level), capture: sink))
    }

    /// swiftletd's line for one event (with the trailing newline).
    public static func format(date: Date, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        let t = date.timeIntervalSince1970
        let seconds = Int(t.rounded(.down))
        let entry = LogEntry(seconds: seconds, nanoseconds: Int(((t - Double(seconds)) * 1e6).rounded()) * 1000, level: level, label: label,
                             message: message, metadata: metadata)
        return LogLayout.daemon.line(entry)
    }

    /// `--log-level` text to a level, in the one vocabulary: trace, debug, info, notice, warning
    /// (warn), error, critical.
    public static func level(_ text: String) -> Logger.Level? {
        LogThreshold(name: text)?.minimum
    }
}
