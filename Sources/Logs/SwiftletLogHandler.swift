import Logging

/// The one swift-log handler of Swiftlet: every `Logger` of a process (the VMM's, the API's,
/// swiftletd's) writes its messages through it to the process's ``LogDestination``, one line
/// each in the destination's layout.
public struct SwiftletLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public let label: String
    public let destination: LogDestination
    /// This logger's own level (swift-log's `logger.logLevel = …`); the destination's threshold
    /// applies on top of it.
    private var ownLevel: Logger.Level = .trace

    public init(label: String, destination: LogDestination) {
        self.label = label
        self.destination = destination
    }

    /// What swift-log asks before it even builds a message: the stricter of this logger's level
    /// and the destination's threshold, read anew each time (so `PUT /logger` applies at once).
    public var logLevel: Logger.Level {
        get { max(ownLevel, destination.threshold.minimum ?? .critical) }
        set { ownLevel = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        guard event.level >= ownLevel else { return }
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let file = event.file.split(separator: "/").last.map(String.init) ?? event.file
        destination.write(event.level, label: label, "\(event.message)", metadata: all, origin: "\(file):\(event.line)")
    }
}
