import Foundation
import Testing

/// swiftletd and `swiftlet ctl` with real VMs (`swiftlet api` processes running our test
/// unikernels and PVH guests on /dev/kvm): 100 idle VMs, crashes, a daemon killed and restarted
/// while its VMs run, pause/resume, logs, the console, metrics and a bad config file. Every test
/// kills the processes it caused, by PID.
@Suite(.serialized, .enabled(if: Harness.hasKVM && Harness.isRoot, "needs a usable /dev/kvm and root (swiftletd supervises VM processes)"))
struct DaemonIntegrationTests {
    static let swiftletd = URL(fileURLWithPath: Harness.swiftlet).deletingLastPathComponent().appendingPathComponent("swiftletd").path

    /// One swiftletd with its own socket, state directory and config file.
    final class Daemon: @unchecked Sendable {
        let dir: String
        var socket: String { dir + "/d.sock" }
        var stateDir: String { dir + "/state" }
        var configPath: String { dir + "/swiftletd.yaml" }
        var logPath: String { dir + "/daemon.log" }
        private(set) var process: Process?
        /// Every VM pid seen, killed at the end whatever happened.
        var vmPIDs = Set<Int32>()

        init(config: String, tag: String) throws {
            dir = "/tmp/sldit-\(getpid())-\(tag)"
            try? FileManager.default.removeItem(atPath: dir)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try config.write(toFile: configPath, atomically: true, encoding: .utf8)
            try start()
        }

        /// Starts swiftletd (again) and waits until it answers.
        func start() throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: DaemonIntegrationTests.swiftletd)
            p.arguments = ["--config", configPath, "--socket", socket, "--state-dir", stateDir, "--swiftlet", Harness.swiftlet]
            _ = FileManager.default.createFile(atPath: logPath + ".tmp", contents: nil)
            if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
            let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            log.seekToEndOfFile()
            p.standardOutput = log
            p.standardError = log
            p.standardInput = FileHandle.nullDevice
            try p.run()
            process = p
            let deadline = Date().addingTimeInterval(15)
            while Date() < deadline {
                if ctl(["status"]).status == 0 { return }
                guard p.isRunning else { break }
                usleep(20_000)
            }
            throw HarnessError("swiftletd did not come up: \(daemonLog)")
        }

        var daemonLog: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

        /// `swiftlet ctl --socket … ARGS`, optionally with `input` on stdin.
        func ctl(_ args: [String], input: String? = nil, timeout: Double = 60) -> Harness.Outcome {
            if let input { return DaemonIntegrationTests.run(Harness.swiftlet, ["ctl", "--socket", socket] + args, input: input, timeout: timeout) }
            return Harness.run(Harness.swiftlet, ["ctl", "--socket", socket] + args, timeout: timeout)
        }

        /// `ctl status --json` as name → fields; remembers every pid for the cleanup.
        func status() -> [String: [String: Any]] {
            let r = ctl(["status", "--json"])
            guard r.status == 0, let object = try? JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any],
                  let vms = object["vms"] as? [[String: Any]] else { return [:] }
            var byName: [String: [String: Any]] = [:]
            for vm in vms {
                guard let name = vm["name"] as? String else { continue }
                byName[name] = vm
                if let pid = vm["pid"] as? Int { vmPIDs.insert(Int32(pid)) }
            }
            return byName
        }

        func state(_ name: String) -> String? { status()[name]?["state"] as? String }
        func pid(_ name: String) -> Int32? { (status()[name]?["pid"] as? Int).map(Int32.init) }

        /// Polls until `name` reaches `state`.
        func wait(_ name: String, for state: String, timeout: Double = 10) -> Bool {
            eventually(timeout: timeout) { self.state(name) == state }
        }

        /// Polls `condition` until it holds or `timeout` seconds pass.
        func eventually(timeout: Double = 10, _ condition: () -> Bool) -> Bool { Harness.eventually(timeout: timeout, condition) }

        func killDaemon(_ signal: Int32) {
            guard let p = process, p.isRunning else { return }
            kill(p.processIdentifier, signal)
            p.waitUntilExit()
            process = nil
        }

        /// Kills every VM this daemon ran (by the pids seen and the pid files left) and the daemon.
        func cleanUp() {
            _ = status()
            if let files = try? FileManager.default.contentsOfDirectory(atPath: stateDir) {
                for f in files where f.hasSuffix(".pid") {
                    if let text = try? String(contentsOfFile: stateDir + "/" + f, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                        vmPIDs.insert(pid)
                    }
                }
            }
            killDaemon(SIGKILL)
            for pid in vmPIDs where DaemonIntegrationTests.isVMProcess(pid, stateDir: stateDir) { kill(pid, SIGKILL) }
            try? FileManager.default.removeItem(atPath: dir)
        }

        deinit { cleanUp() }
    }

    /// A pid that is still one of this test's `swiftlet api` processes (not a recycled pid).
    static func isVMProcess(_ pid: Int32, stateDir: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        return String(decoding: data, as: UTF8.self).contains(stateDir)
    }

    static func alive(_ pid: Int32) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else { return false }
        return !text[text.index(after: close)...].hasPrefix(" Z")
    }

    /// `Harness.run` with text on stdin.
    static func run(_ path: String, _ args: [String], input: String, timeout: Double) -> Harness.Outcome {
        let inFile = Harness.scratch.appendingPathComponent("in-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: inFile.path, contents: Data(input.utf8))
        let outFile = Harness.scratch.appendingPathComponent("out-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: outFile.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: inFile); try? FileManager.default.removeItem(at: outFile) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        guard let out = try? FileHandle(forWritingTo: outFile), let inp = try? FileHandle(forReadingFrom: inFile) else {
            return Harness.Outcome(status: -1, output: "cannot open files")
        }
        p.standardOutput = out
        p.standardError = out
        p.standardInput = inp
        do { try p.run() } catch { return Harness.Outcome(status: -1, output: "\(error)") }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(2000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        return Harness.Outcome(status: p.terminationStatus, output: (try? String(contentsOf: outFile, encoding: .utf8)) ?? "")
    }

    static func idleConfig(_ names: [String]) throws -> String {
        let idle = try Harness.guest("idle")
        return "vms:\n" + names.map { "  \($0):\n    kernel: \(idle)\n    memory: 2M\n" }.joined()
    }

    /// Runs `body` for every element, `width` at a time.
    static func parallel<T: Sendable>(_ items: [T], width: Int = 8, _ body: @escaping @Sendable (T) -> Void) {
        let semaphore = DispatchSemaphore(value: width)
        let group = DispatchGroup()
        for item in items {
            semaphore.wait()
            group.enter()
            DispatchQueue.global().async {
                body(item)
                semaphore.signal()
                group.leave()
            }
        }
        group.wait()
    }

    @Test func hundredVMs() throws {
        let names = (0..<100).map { String(format: "vm%03d", $0) }
        let daemon = try Daemon(config: try Self.idleConfig(names), tag: "hundred")
        defer { daemon.cleanUp() }
        let failures = Failures()
        let started = Date()
        Self.parallel(names) { name in
            let r = daemon.ctl(["start", name])
            if r.status != 0 { failures.add("\(name): \(r.output)") }
        }
        let seconds = Date().timeIntervalSince(started)
        #expect(failures.all.isEmpty, "\(failures.all.prefix(5))")
        let table = daemon.ctl(["status"])
        #expect(table.status == 0)
        let rows = table.output.split(separator: "\n").dropFirst().map { $0.split(separator: " ", omittingEmptySubsequences: true) }
        #expect(rows.count == 100)
        #expect(rows.filter { $0.count >= 6 && $0[1] == "running" }.count == 100, "\(table.output)")
        let status = daemon.status()
        let pids = Set(status.values.compactMap { $0["pid"] as? Int })
        #expect(pids.count == 100, "one process per VM")
        print("daemon: 100 idle VMs running \(String(format: "%.2f", seconds)) s after the first start request")

        let metrics = daemon.ctl(["metrics"])
        #expect(metrics.status == 0)
        #expect(metrics.output.contains("# TYPE swiftlet_vm_up gauge"))
        #expect(metrics.output.contains(#"swiftlet_vm_up{vm="vm042"} 1"#))
        #expect(metrics.output.contains(#"swiftlet_vm_exits_total{vm="vm042",reason="port_io"}"#), "\(metrics.output.prefix(2000))")
        #expect(metrics.output.contains(#"swiftlet_vm_uptime_seconds{vm="vm099"}"#))
        #expect(metrics.output.contains(#"swiftlet_vm_crashes_total{vm="vm000"} 0"#))

        Self.parallel(names) { name in
            let r = daemon.ctl(["stop", name, "--wait"])
            if r.status != 0 { failures.add("stop \(name): \(r.output)") }
        }
        #expect(failures.all.isEmpty, "\(failures.all.prefix(5))")
        let after = daemon.status()
        #expect(after.values.filter { ($0["state"] as? String) == "stopped" && ($0["exit_status"] as? Int) == 143 }.count == 100)
        #expect(pids.allSatisfy { !Self.isVMProcess(Int32($0), stateDir: daemon.stateDir) }, "every VM process is gone")
    }

    @Test func crashIsReportedAndTheVMStartsAgain() throws {
        let daemon = try Daemon(config: try Self.idleConfig(["victim"]), tag: "crash")
        defer { daemon.cleanUp() }
        #expect(daemon.ctl(["start", "victim"]).status == 0)
        let pid = try #require(daemon.pid("victim"))
        kill(pid, SIGKILL)
        #expect(daemon.wait("victim", for: "crashed"), "\(daemon.status())")
        let table = daemon.ctl(["status", "victim"]).output
        #expect(table.contains("crashed (signal 9)"), "\(table)")
        for suffix in ["sock", "console", "pid"] {
            #expect(!FileManager.default.fileExists(atPath: "\(daemon.stateDir)/victim.\(suffix)"), "victim.\(suffix) removed")
        }
        // The daemon writes the line just after it records the state.
        #expect(daemon.eventually { daemon.daemonLog.contains("vm crashed") }, "a structured log line")
        #expect(daemon.daemonLog.contains("vm=victim"))
        let again = daemon.ctl(["start", "victim"])
        #expect(again.status == 0, "\(again.output)")
        #expect(daemon.state("victim") == "running")
        #expect(daemon.pid("victim") != pid)
        #expect(daemon.ctl(["metrics"]).output.contains(#"swiftlet_vm_crashes_total{vm="victim"} 1"#))
        #expect(daemon.ctl(["stop", "victim", "--force", "--wait"]).status == 0)
        #expect(daemon.ctl(["status", "victim"]).output.contains("stopped (signal 9)"))
    }

    @Test func vmsSurviveTheDaemonAndANewDaemonFindsThem() throws {
        let names = ["keep1", "keep2", "keep3"]
        let daemon = try Daemon(config: try Self.idleConfig(names), tag: "restart")
        defer { daemon.cleanUp() }
        for name in names { #expect(daemon.ctl(["start", name]).status == 0) }
        #expect(daemon.ctl(["pause", "keep3"]).status == 0)
        let before = daemon.status()
        let pids = names.compactMap { (before[$0]?["pid"] as? Int).map(Int32.init) }
        #expect(pids.count == 3)

        daemon.killDaemon(SIGKILL)
        usleep(200_000)
        #expect(pids.allSatisfy(Self.alive), "VMs outlive the daemon")
        let down = daemon.ctl(["status"])
        #expect(down.status == 1)
        #expect(down.output.hasPrefix("swiftlet ctl: cannot reach swiftletd at \(daemon.socket): "), "\(down.output)")
        #expect(down.output.split(separator: "\n").count == 1)

        try daemon.start()
        let after = daemon.status()
        for (name, pid) in zip(names, pids) {
            #expect((after[name]?["pid"] as? Int).map(Int32.init) == pid, "\(name) keeps its pid")
        }
        #expect(after["keep1"]?["state"] as? String == "running")
        #expect(after["keep3"]?["state"] as? String == "paused")
        #expect(daemon.daemonLog.contains("vm rediscovered"))
        #expect(daemon.ctl(["resume", "keep3"]).status == 0)
        for name in names {
            let r = daemon.ctl(["stop", name, "--wait"])
            #expect(r.status == 0 && r.output.contains("stopped (exit 143)"), "\(r.output)")
        }
        #expect(pids.allSatisfy { !Self.isVMProcess($0, stateDir: daemon.stateDir) })

        // SIGTERM stops the daemon, not the VMs.
        #expect(daemon.ctl(["start", "keep1"]).status == 0)
        let pid = try #require(daemon.pid("keep1"))
        daemon.killDaemon(SIGTERM)
        usleep(100_000)
        #expect(Self.alive(pid))
        try daemon.start()
        #expect(daemon.pid("keep1") == pid)
        #expect(daemon.ctl(["stop", "keep1", "--wait"]).status == 0)
    }

    @Test func pauseAndResume() throws {
        let daemon = try Daemon(config: try Self.idleConfig(["p"]), tag: "pause")
        defer { daemon.cleanUp() }
        #expect(daemon.ctl(["start", "p"]).status == 0)
        let paused = daemon.ctl(["pause", "p"])
        #expect(paused.status == 0 && paused.output == "p: paused\n", "\(paused.output)")
        #expect(daemon.ctl(["status", "p"]).output.contains(" paused "))
        let again = daemon.ctl(["pause", "p"])
        #expect(again.status == 1 && again.output == "swiftlet ctl: VM 'p' is paused, not running\n", "\(again.output)")
        #expect(daemon.ctl(["resume", "p"]).output == "p: running\n")
        #expect(daemon.ctl(["status", "p"]).output.contains(" running "))
        // A paused VM stops cleanly too.
        #expect(daemon.ctl(["pause", "p"]).status == 0)
        let stopped = daemon.ctl(["stop", "p", "--wait"])
        #expect(stopped.status == 0, "\(stopped.output)")
        #expect(daemon.state("p") == "stopped")
    }

    @Test func logsConsoleAndAdHocVMs() throws {
        let hello = try Harness.guest("hello")
        let echo = try Harness.pvhGuest("echo")
        let config = "vms:\n  hello:\n    kernel: \(hello)\n    memory: 4M\n    cmdline: \"one two\"\n  echo:\n    kernel: \(echo)\n    memory: 32M\n"
        let daemon = try Daemon(config: config, tag: "console")
        defer { daemon.cleanUp() }
        #expect(daemon.ctl(["start", "hello"]).status == 0)
        #expect(daemon.wait("hello", for: "stopped"))
        #expect(daemon.status()["hello"]?["exit_status"] as? Int == 0)
        let logs = daemon.ctl(["logs", "hello"])
        #expect(logs.status == 0 && logs.output.contains("Hello, world") && logs.output.contains("arg[2]=two"), "\(logs.output)")
        #expect(daemon.ctl(["logs", "hello", "--tail", "10"]).output == "data_ok=1\n")

        #expect(daemon.ctl(["start", "echo"]).status == 0)
        let console = daemon.ctl(["console", "echo", "--timeout", "20"], input: "first line\nsecond\nquit\n", timeout: 30)
        #expect(console.status == 0, "\(console.output)")
        #expect(console.output.contains("got: first line") && console.output.contains("got: second"), "\(console.output)")
        #expect(daemon.wait("echo", for: "stopped"))
        #expect(daemon.status()["echo"]?["exit_status"] as? Int == 2, "the echo guest exits with its line count")
        #expect(daemon.ctl(["logs", "echo"]).output.contains("echo: ready"))

        // An ad-hoc VM from the command line.
        let idle = try Harness.guest("idle")
        let adhoc = daemon.ctl(["start", "extra", "--kernel", idle, "--memory", "2M"])
        #expect(adhoc.status == 0, "\(adhoc.output)")
        #expect(daemon.state("extra") == "running")
        #expect(daemon.ctl(["stop", "extra", "--wait"]).status == 0)
        let missing = daemon.ctl(["start", "bad", "--kernel", "/nonexistent/kernel"])
        #expect(missing.status == 1 && missing.output == "swiftlet ctl: --kernel /nonexistent/kernel: no such file\n", "\(missing.output)")
        let refused = daemon.ctl(["start", "small", "--kernel", echo, "--memory", "2M"])
        #expect(refused.status == 1 && refused.output.hasPrefix("swiftlet ctl: VM 'small': PUT /"), "\(refused.output)")
        #expect(refused.output.split(separator: "\n").count == 1)
        #expect(daemon.state("small") == "stopped")
        #expect(daemon.ctl(["console", "hello"]).output == "swiftlet ctl: VM 'hello' is stopped, not running\n")
        #expect(daemon.ctl(["start", "nosuch"]).output == "swiftlet ctl: no VM named 'nosuch'\n")
    }

    static let deepConfig = "vms: " + String(repeating: "{a: ", count: 5_000) + String(repeating: "}", count: 5_000) + "\n"

    /// A running daemon re-reads its config at POST /reload and at SIGHUP: a file nested 5,000
    /// deep is refused with one line each time (it crashed the daemon), and the daemon keeps its
    /// VMs and its old config.
    @Test func reloadRefusesADeeplyNestedConfig() throws {
        let daemon = try Daemon(config: try Self.idleConfig(["keep"]), tag: "deep")
        defer { daemon.cleanUp() }
        try Self.deepConfig.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        guard case .reply(let reply) = APITestClient.request(daemon.socket, "POST", "/reload", body: nil, timeout: 20) else {
            Issue.record("no answer to POST /reload: \(daemon.daemonLog)")
            return
        }
        #expect(reply.status == 400, "\(reply)")
        #expect(reply.faultMessage == "\(daemon.configPath): line 1: nested more than 64 levels deep", "\(reply)")
        let pid = try #require(daemon.process?.processIdentifier)
        kill(pid, SIGHUP)
        #expect(daemon.eventually { daemon.daemonLog.contains("config reload failed") }, "\(daemon.daemonLog)")
        #expect(daemon.process?.isRunning == true, "\(daemon.daemonLog)")
        #expect(daemon.status().keys.sorted() == ["keep"])
        #expect(!daemon.daemonLog.contains("Signal 11") && !daemon.daemonLog.contains("Fatal error"))
    }

    @Test func badConfigFileNamesTheLine() throws {
        let dir = "/tmp/sldit-\(getpid())-badconfig"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let idle = try Harness.guest("idle")
        let cases = [
            ("vms:\n  a:\n    kernel: \(idle)\n    memory: [2M\n", "line "),
            ("vms:\n  a:\n    kernel: \(idle)\n    memroy: 2M\n", "line 4: vms.a.memroy: unknown key 'memroy'"),
            ("vms:\n  a:\n    kernel: \(idle)\n    cpus: 0\n", "line 4: vms.a.cpus: 0 is out of range (1 to 255)"),
            // 10 KB nested 5,000 deep overflowed Yams's stack (a segfault) before anything was checked.
            (Self.deepConfig, "line 1: nested more than 64 levels deep"),
            ("vms:\n  a:\n    kernel: \(idle)\n  a:\n    kernel: \(idle)\n", "line 4: vms: VM 'a' is defined twice (first on line 2)"),
        ]
        for (i, (text, expected)) in cases.enumerated() {
            let path = "\(dir)/bad\(i).yaml"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let r = Harness.run(Self.swiftletd, ["--config", path, "--socket", "\(dir)/d.sock", "--state-dir", "\(dir)/state"], timeout: 20)
            #expect(r.status == 1, "\(r.output)")
            #expect(r.output.hasPrefix("swiftletd: \(path): \(expected)"), "\(r.output)")
            #expect(r.output.split(separator: "\n").count == 1, "one line: \(r.output)")
            #expect(!r.output.contains("Fatal error"))
        }
    }
}

/// Messages collected from parallel workers.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}
