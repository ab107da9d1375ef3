import VMSpec
import Hypervisor
import Logging
import Logs

/// Where a VMM's messages go when its host process has a log of its own (`swiftlet api`: the
/// destination `PUT /logger` configures; `swiftlet run`/`hvt`: stderr at `--log-level`).
public typealias VMMLogSink = LogDestination

extension LogThreshold {
    /// Solo5's levels (`--solo5:NAME`) in the one vocabulary: `quiet` lets nothing through.
    public init(solo5 level: HvtConfig.LogLevel) {
        switch level {
        case .quiet: self = .off
        case .error: self.init(Logger.Level.error)
        case .warn: self.init(Logger.Level.warning)
        case .info: self.init(Logger.Level.info)
        case .debug: self.init(Logger.Level.debug)
        }
    }
}

/// The VMM's own messages, through swift-log: into the host process's log (a `VMMLogSink`,
/// label `vmm`), or without one on stderr at `level`, one line each, prefixed `swiftlet:`.
struct VMMLog: Sendable {
    private let logger: Logger

    init(level: HvtConfig.LogLevel, sink: VMMLogSink? = nil) {
        // With a sink the process's destination decides what is written (PUT /logger's level).
        let destination = sink ?? LogDestination(layout: .tender, threshold: LogThreshold(solo5: level))
        logger = Logger(label: "vmm") { SwiftletLogHandler(label: $0, destination: destination) }
    }

    // swift-log asks the handler's level before it builds the message, so a filtered-out
    // message costs no formatting.
    func error(_ message: @autoclosure () -> String) { logger.error("\(message())") }
    func warn(_ message: @autoclosure () -> String) { logger.warning("\(message())") }
    func info(_ message: @autoclosure () -> String) { logger.info("\(message())") }
    func debug(_ message: @autoclosure () -> String) { logger.debug("\(message())") }
}
