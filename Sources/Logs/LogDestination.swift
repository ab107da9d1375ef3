import Host
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where a process's log lines go and how much of them: standard error until `PUT /logger` names
/// a file, at a threshold the process's flags (and `PUT /logger`) set. Every handler of a process
/// writes through its one destination, so one change applies to every message. Thread-safe.
public final class LogDestination: Sendable {
    public let layout: LogLayout
    /// Read on every message (before it is even formatted), so kept apart from the lock.
    private let thresholdCode: Atomic<UInt8>
    private let output: Mutex<Output>
    /// Replaces the file (a test's collector).
    private let capture: (@Sendable (String) -> Void)?

    struct Output {
        var file: FileDescriptor = .standardError
        var showLevel = true
        var showOrigin = false
    }

    public init(layout: LogLayout, threshold: LogThreshold = LogThreshold(.info),
                capture: (@Sendable (String) -> Void)? = nil) {
        self.layout = layout
        thresholdCode = Atomic(threshold.code)
        output = Mutex(Output())
        self.capture = capture
    }

    /// The level messages must reach to be written.
    public var threshold: LogThreshold { LogThreshold(code: thresholdCode.load(ordering: .relaxed)) }

    public func setThreshold(_ threshold: LogThreshold) { thresholdCode.store(threshold.code, ordering: .relaxed) }

    /// Whether a message at `level` would be written.
    public func admits(_ level: Logger.Level) -> Bool { threshold.admits(level) }

    /// Firecracker's `PUT /logger`: lines go to `path` from now on (appended; created 0600; a FIFO
    /// must already have a reader, as opening never waits), at `threshold`, showing levels and
    /// origins as asked. Nil leaves a setting as it is. The file is opened now, before the
    /// sandbox closes the door on opening files.
    public func configure(path: String?, threshold: LogThreshold? = nil, showLevel: Bool? = nil,
                          showOrigin: Bool? = nil) throws(HostError) {
        let file = try path.map { p throws(HostError) in
            try FileDescriptor.open(p, flags: O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK, mode: 0o600)
        }
        output.withLock { o in
            if let file { o.file = file }
            if let showLevel { o.showLevel = showLevel }
            if let showOrigin { o.showOrigin = showOrigin }
        }
        if let threshold { setThreshold(threshold) }
    }

    /// Writes `entry` as one line when the threshold admits it. A line that does not fit a full
    /// FIFO now is dropped: the VM never waits for its log's reader.
    public func write(_ entry: LogEntry) {
        guard admits(entry.level) else { return }
        output.withLock { o in
            let line = layout.line(entry, showLevel: o.showLevel, showOrigin: o.showOrigin)
            if let capture { return capture(line) }
            var bytes = line
            bytes.withUTF8 { utf8 in _ = try? o.file.writeOnce(UnsafeRawBufferPointer(utf8)) }
        }
    }

    /// Writes `message` at `level` under `label`, stamped now.
    public func write(_ level: Logger.Level, label: String, _ message: String, metadata: Logger.Metadata = [:],
                      origin: String = "") {
        guard admits(level) else { return }
        let now = Clock.realtime()
        write(LogEntry(seconds: now.seconds, nanoseconds: now.nanoseconds, level: level, label: label,
                       message: message, metadata: metadata, origin: origin))
    }
}
