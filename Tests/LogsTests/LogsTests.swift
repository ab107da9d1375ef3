import Logging
import Logs
import Synchronization
import Testing

/// The one log: level names, the line layouts, and a destination's threshold applying to every
/// logger that writes through it.
@Suite struct LogsTests {
    @Test(arguments: [
        ("trace", LogThreshold(.trace)), ("debug", LogThreshold(.debug)), ("info", LogThreshold(.info)),
        ("notice", LogThreshold(.notice)), ("warning", LogThreshold(.warning)), ("error", LogThreshold(.error)),
        ("critical", LogThreshold(.critical)), ("off", .off),
        // Solo5's names.
        ("quiet", .off), ("warn", LogThreshold(.warning)),
        // Firecracker's names.
        ("Off", .off), ("Error", LogThreshold(.error)), ("Warning", LogThreshold(.warning)), ("Warn", LogThreshold(.warning)),
        ("Info", LogThreshold(.info)), ("Debug", LogThreshold(.debug)), ("Trace", LogThreshold(.trace)),
    ])
    func levelNames(name: String, threshold: LogThreshold) {
        #expect(LogThreshold(name: name) == threshold)
    }

    @Test func unknownLevelName() {
        #expect(LogThreshold(name: "loud") == nil)
        #expect(LogThreshold(name: "") == nil)
    }

    @Test func thresholdAdmits() {
        #expect(LogThreshold(.warning).admits(.error))
        #expect(LogThreshold(.warning).admits(.warning))
        #expect(!LogThreshold(.warning).admits(.notice))
        #expect(!LogThreshold.off.admits(.critical))
    }

    static let entry = LogEntry(seconds: 1_700_000_000, nanoseconds: 500_000_000, level: .warning, label: "vmm",
                                message: "adjusting memory", metadata: ["b": "two words", "a": "1"], origin: "HvtTender.swift:12")

    @Test func layouts() {
        #expect(LogLayout.tender.line(Self.entry) == "swiftlet: adjusting memory a=1 b=\"two words\"\n")
        #expect(LogLayout.firecracker.line(Self.entry)
                == "2023-11-14T22:13:20.500Z [vmm] WARN adjusting memory a=1 b=\"two words\"\n")
        #expect(LogLayout.firecracker.line(Self.entry, showLevel: false, showOrigin: true)
                == "2023-11-14T22:13:20.500Z [vmm] HvtTender.swift:12 adjusting memory a=1 b=\"two words\"\n")
        #expect(LogLayout.daemon.line(Self.entry)
                == "2023-11-14T22:13:20.500Z warning vmm: adjusting memory a=1 b=\"two words\"\n")
    }

    @Test(arguments: [
        (0, "1970-01-01T00:00:00.000Z"), (951_782_400, "2000-02-29T00:00:00.000Z"),
        (4_107_542_399, "2100-02-28T23:59:59.000Z"), (-1, "1969-12-31T23:59:59.000Z"),
    ])
    func timestamps(seconds: Int, text: String) {
        let entry = LogEntry(seconds: seconds, nanoseconds: 0, level: .info, label: "x", message: "m")
        #expect(LogLayout([.timestamp]).line(entry) == text + "\n")
    }

    @Test func oneThresholdForEveryLogger() {
        let lines = Mutex<[String]>([])
        let destination = LogDestination(layout: .tender, threshold: LogThreshold(.warning)) { line in
            lines.withLock { $0.append(line) }
        }
        let api = Logger(label: "api") { SwiftletLogHandler(label: $0, destination: destination) }
        let vmm = Logger(label: "vmm") { SwiftletLogHandler(label: $0, destination: destination) }
        api.info("hidden")
        vmm.warning("shown")
        destination.setThreshold(LogThreshold(name: "Info")!)
        api.info("now shown")
        vmm.debug("still hidden")
        destination.setThreshold(.off)
        vmm.critical("off means off")
        #expect(lines.withLock { $0 } == ["swiftlet: shown\n", "swiftlet: now shown\n"])
    }

    @Test func configureRefusesAMissingDirectory() {
        let destination = LogDestination(layout: .firecracker)
        #expect(throws: (any Error).self) { try destination.configure(path: "/nonexistent-dir/x.log") }
    }
}
