import Logging

/// One message on its way to a line: what the handler knows about it.
public struct LogEntry: Sendable {
    /// Wall-clock time since the Unix epoch.
    public var seconds: Int
    public var nanoseconds: Int
    public var level: Logger.Level
    public var label: String
    public var message: String
    public var metadata: Logger.Metadata
    /// `File.swift:LINE` of the call.
    public var origin: String

    public init(seconds: Int, nanoseconds: Int, level: Logger.Level, label: String, message: String,
                metadata: Logger.Metadata = [:], origin: String = "") {
        self.seconds = seconds; self.nanoseconds = nanoseconds; self.level = level
        self.label = label; self.message = message; self.metadata = metadata; self.origin = origin
    }
}

/// The one line format: a message's fields, space-separated, in the order a layout lists them,
/// ending with `key=value` metadata (sorted; values with spaces, quotes or `=` quoted). The
/// layouts differ only in which fields they show, because the lines they make are promised to
/// others: solo5-hvt's stderr, Firecracker's log file, swiftletd's greppable lines.
public struct LogLayout: Sendable {
    /// One part of a line.
    public enum Field: Sendable {
        /// `2026-11-21T10:00:00.123Z` (UTC, milliseconds).
        case timestamp
        /// `[label]`.
        case bracketedLabel
        /// `label:`.
        case labelColon
        /// `warning` (swift-log's name), when the destination shows levels.
        case level
        /// `WARN` (Firecracker's name), when the destination shows levels.
        case firecrackerLevel
        /// `File.swift:12`, when the destination shows origins.
        case origin
        /// Fixed text (`swiftlet:`).
        case text(String)
        case message
    }

    public let fields: [Field]
    public init(_ fields: [Field]) { self.fields = fields }

    /// solo5-hvt's stderr lines, which `swiftlet run` and `swiftlet hvt` keep: `swiftlet: MESSAGE`.
    public static let tender = LogLayout([.text("swiftlet:"), .message])
    /// Firecracker's log (`swiftlet api`, `PUT /logger`): `TIME [LABEL] LEVEL ORIGIN MESSAGE`.
    public static let firecracker = LogLayout([.timestamp, .bracketedLabel, .firecrackerLevel, .origin, .message])
    /// swiftletd's lines: `TIME level LABEL: MESSAGE key=value`.
    public static let daemon = LogLayout([.timestamp, .level, .labelColon, .message])

    /// The line for `entry`, with its newline.
    public func line(_ entry: LogEntry, showLevel: Bool = true, showOrigin: Bool = false) -> String {
        var parts: [String] = []
        parts.reserveCapacity(fields.count + entry.metadata.count)
        for field in fields {
            switch field {
            case .timestamp: parts.append(Self.timestamp(seconds: entry.seconds, nanoseconds: entry.nanoseconds))
            case .bracketedLabel: parts.append("[" + entry.label + "]")
            case .labelColon: parts.append(entry.label + ":")
            case .level: if showLevel { parts.append(entry.level.rawValue) }
            case .firecrackerLevel: if showLevel { parts.append(Self.firecrackerName(entry.level)) }
            case .origin: if showOrigin { parts.append(entry.origin) }
            case .text(let text): parts.append(text)
            case .message: parts.append(entry.message)
            }
        }
        for key in entry.metadata.keys.sorted() {
            parts.append(key + "=" + Self.quote("\(entry.metadata[key]!)"))
        }
        return parts.joined(separator: " ") + "\n"
    }

    /// Firecracker's level words (it has no notice or critical: they read as INFO and ERROR).
    static func firecrackerName(_ level: Logger.Level) -> String {
        switch level {
        case .trace: "TRACE"
        case .debug: "DEBUG"
        case .info, .notice: "INFO"
        case .warning: "WARN"
        case .error, .critical: "ERROR"
        }
    }

    /// A metadata value as is, or quoted and escaped when it has spaces, quotes, `=` or newlines.
    static func quote(_ value: String) -> String {
        guard value.isEmpty || value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) else { return value }
        return "\"" + escape(value) + "\""
    }

    /// Backslash, double quote and line feed escaped with a backslash: the escaping of a quoted
    /// log value (and of a Prometheus label value, format 0.0.4).
    public static func escape(_ value: String) -> String {
        var escaped = ""
        for c in value {
            switch c {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(c)
            }
        }
        return escaped
    }

    /// RFC 3339 UTC with milliseconds, computed from the epoch (no time zone database, no libc).
    public static func timestamp(seconds: Int, nanoseconds: Int) -> String {
        var days = seconds / 86_400
        var second = seconds % 86_400
        if second < 0 { second += 86_400; days -= 1 }
        // Days since 1970-01-01 to a proleptic Gregorian date (eras of 400 years from 0000-03-01).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthFromMarch = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ v: Int, _ n: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, n - s.count)) + s }
        return pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2) + "T" + pad(second / 3600, 2) + ":"
            + pad(second % 3600 / 60, 2) + ":" + pad(second % 60, 2) + "." + pad(nanoseconds / 1_000_000, 3) + "Z"
    }
}
