import Foundation
import Logging

/// A swift-log handler writing one line per event to stderr:
/// `2025-01-02T03:04:05.678Z info swiftletd: vm started name=web pid=1234`. Metadata keys are
/// sorted and values with spaces quoted, so the lines are easy to grep and to parse.
public struct LineLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public let label: String
    /// Where lines go; a test passes a collector.
    let sink: @Sendable (String) -> Void

    public init(label: String, level: Logger.Level = .info, sink: (@Sendable (String) -> Void)? = nil) {
        self.label = label
        self.logLevel = level
        self.sink = sink ?? { line in FileHandle.standardError.write(Data(line.utf8)) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        sink(Self.format(date: Date(), level: event.level, label: label, message: "\(event.message)", metadata: all))
    }

    /// The line for one event (with the trailing newline).
    public static func format(date: Date, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var line = "\(timestamp(date)) \(level) \(label): \(message)"
        for key in metadata.keys.sorted() {
            line += " \(key)=\(quote("\(metadata[key]!)"))"
        }
        return line + "\n"
    }

    static func quote(_ value: String) -> String {
        guard value.isEmpty || value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) else { return value }
        let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
        return "\"\(escaped)\""
    }

    /// RFC 3339 UTC with milliseconds.
    static func timestamp(_ date: Date) -> String {
        let t = date.timeIntervalSince1970
        var seconds = time_t(t.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let ms = Int((t - t.rounded(.down)) * 1000)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), ms)
    }

    /// `--log-level` text to a level: trace, debug, info, notice, warning (warn), error, critical.
    public static func level(_ text: String) -> Logger.Level? {
        if text == "warn" { return .warning }
        return Logger.Level(rawValue: text)
    }
}
