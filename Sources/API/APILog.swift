import Host
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where the API process's structured log goes: stderr until `PUT /logger` names a file or FIFO.
/// One sink per process (swift-log's bootstrap is once per process); handlers read it per line.
public final class APILogSink: Sendable {
    struct Settings {
        var fd: Int32 = 2
        var level: APILogLevel = .warning
        var showLevel = true
        var showOrigin = false
    }
    private let settings = Mutex(Settings())
    public static let shared = APILogSink()

    /// Applies `PUT /logger`: opens the file (append; a FIFO must have a reader) before the
    /// sandbox closes the door on opening files.
    public func configure(_ request: APIRequests.Logger) throws(APIError) {
        var fd: Int32?
        if let path = request.logPath {
            let opened = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0o600)
            guard opened >= 0 else { throw APIError("log_path \(path): \(HostError.text(errno: errno))") }
            fd = opened
        }
        settings.withLock { s in
            if let fd {
                if s.fd > 2 { close(s.fd) }
                s.fd = fd
            }
            if let level = request.level { s.level = level }
            if let v = request.showLevel { s.showLevel = v }
            if let v = request.showLogOrigin { s.showOrigin = v }
        }
    }

    var level: APILogLevel { settings.withLock { $0.level } }

    /// The level before any `PUT /logger` (`swiftlet api --log-level`).
    public func setLevel(_ level: APILogLevel) { settings.withLock { $0.level = level } }

    func write(level: APILogLevel, label: String, message: String, metadata: String, origin: String) {
        settings.withLock { s in
            guard level <= s.level, level != .off else { return }
            var line = Self.timestamp() + " [" + label + "]"
            if s.showLevel { line += " " + Self.name(level) }
            if s.showOrigin { line += " " + origin }
            line += " " + message + metadata + "\n"
            _ = line.withCString { Glibc.write(s.fd, $0, strlen($0)) }
        }
    }

    static func name(_ level: APILogLevel) -> String {
        switch level {
        case .off: "OFF"
        case .error: "ERROR"
        case .warning: "WARN"
        case .info: "INFO"
        case .debug: "DEBUG"
        case .trace: "TRACE"
        }
    }

    /// `2026-11-21T10:00:00.123Z`.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = time_t(ts.tv_sec)
        var tm = tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ n: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, n - s.count)) + s }
        return "\(tm.tm_year + 1900)-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(ts.tv_nsec / 1_000_000), 3))Z"
    }
}

/// A swift-log handler writing one line per message to ``APILogSink``, with metadata as key=value.
public struct APILogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace
    let label: String
    let sink: APILogSink

    public init(label: String, sink: APILogSink = .shared) {
        self.label = label
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let level: APILogLevel = switch event.level {
        case .trace: .trace
        case .debug: .debug
        case .info, .notice: .info
        case .warning: .warning
        case .error, .critical: .error
        }
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let text = all.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
        sink.write(level: level, label: label, message: "\(event.message)", metadata: text,
                   origin: "\(event.file.split(separator: "/").last ?? ""):\(event.line)")
    }
}

/// A request the API refuses: 400 with this message as `fault_message`.
public struct APIError: Error, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
}
