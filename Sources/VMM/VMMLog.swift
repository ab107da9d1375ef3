#if canImport(Glibc)
import Glibc
#endif

/// The tender's own messages on stderr, one line each, prefixed `swiftlet:` (Foundation-free).
struct VMMLog: Sendable {
    let level: HvtConfig.LogLevel

    func error(_ message: @autoclosure () -> String) { emit(.error, message()) }
    func warn(_ message: @autoclosure () -> String) { emit(.warn, message()) }
    func info(_ message: @autoclosure () -> String) { emit(.info, message()) }

    private func emit(_ at: HvtConfig.LogLevel, _ message: String) {
        guard at <= level else { return }
        let line = "swiftlet: " + message + "\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }
}
