import Logging

/// How much a log lets through: swift-log's levels from `trace` (everything) up to `critical`, or
/// nothing at all (`off`). The one level vocabulary of every log in Swiftlet; Solo5's and
/// Firecracker's level names are accepted as aliases of it.
public struct LogThreshold: Sendable, Hashable, CustomStringConvertible {
    /// The least severe level let through; nil lets nothing through.
    public let minimum: Logger.Level?

    public init(_ minimum: Logger.Level?) { self.minimum = minimum }

    /// Nothing gets through (Firecracker's `Off`, Solo5's `quiet`).
    public static let off = LogThreshold(nil)

    /// Whether a message at `level` is written.
    public func admits(_ level: Logger.Level) -> Bool {
        guard let minimum else { return false }
        return level >= minimum
    }

    /// A threshold by name, in any case: swift-log's `trace`, `debug`, `info`, `notice`,
    /// `warning`, `error`, `critical` and `off`; Solo5's `quiet` and `warn` (`--solo5:NAME`,
    /// `--log-level`); Firecracker's `Off`, `Error`, `Warning`, `Info`, `Debug`, `Trace`
    /// (`PUT /logger`).
    public init?(name: String) {
        let lower = name.lowercased()
        switch lower {
        case "off", "quiet": self = .off
        case "warn": self.init(.warning)
        default:
            guard let level = Logger.Level(rawValue: lower) else { return nil }
            self.init(level)
        }
    }

    /// swift-log's name of the level, or `off`.
    public var description: String { minimum?.rawValue ?? "off" }

    /// A small number for an atomic: the level's rank, or 7 for off.
    var code: UInt8 {
        guard let minimum else { return Self.offCode }
        return UInt8(Logger.Level.allCases.firstIndex(of: minimum)!)
    }

    init(code: UInt8) {
        self.init(code < Self.offCode ? Logger.Level.allCases[Int(code)] : nil)
    }

    static let offCode = UInt8(Logger.Level.allCases.count)
}
