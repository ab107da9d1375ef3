import Daemon
import DaemonProtocol
import Foundation
import HTTPUnix
import Logging
import Synchronization
import Testing

enum StandIn {
    /// The python3 that runs the stand-in VM process.
    static let python: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return (["/usr/bin"] + path.split(separator: ":").map(String.init)).map { $0 + "/python3" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }()
}

/// The supervisor and the daemon API against a stand-in for `swiftlet api` (a Python script with
/// the same command line, sockets and exit file), so the lifecycle (start, pause, stop, crash,
/// daemon restart) is tested without KVM. The real VMM is covered by the integration tests.
@Suite(.serialized, .enabled(if: StandIn.python != nil, "needs python3 (in PATH) for the stand-in VM process"))
final class SupervisorTests {
    let dir: String
    let stateDir: String
    let fake: String
    let kernel: String
    var supervisors: [Supervisor] = []

    init() throws {
        dir = "/tmp/sld-test-\(getpid())-\(UUID().uuidString.prefix(6))"
        stateDir = dir + "/state"
        fake = dir + "/swiftlet"
        kernel = dir + "/kernel"
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        try ("#!" + (StandIn.python ?? "/usr/bin/python3") + "\n" + Self.fakeScript).write(toFile: fake, atomically: true, encoding: .utf8)
        chmod(fake, 0o755)
        _ = FileManager.default.createFile(atPath: kernel, contents: Data())
    }

    deinit {
        // Whatever a failed test left running: kill it by the pid its state file names.
        for s in supervisors {
            for vm in s.list() where vm.pid != nil { kill(vm.pid!, SIGKILL) }
            s.shutdown()
        }
        while waitpid(-1, nil, WNOHANG) > 0 {}
        try? FileManager.default.removeItem(atPath: dir)
    }

    func supervisor(_ vms: [String: VMDefinition] = [:]) throws -> Supervisor {
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let s = try Supervisor(options: .init(stateDirectory: stateDir, swiftletPath: fake), config: DaemonConfig(vms: vms), logger: logger)
        supervisors.append(s)
        return s
    }

    func definition(_ cmdline: String? = nil) -> VMDefinition { VMDefinition(kernel: kernel, cmdline: cmdline, memoryMiB: 2) }

    func waitFor(_ timeout: Double = 5, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    @Test func startPauseStop() throws {
        let s = try supervisor(["a": definition()])
        #expect(try s.status(name: "a").state == .stopped)
        let started = try s.start(name: "a")
        #expect(started.state == .running && started.pid != nil && started.memoryMiB == 2)
        let paths = VMPaths(directory: stateDir, name: "a")
        #expect(exists(paths.apiSocket) && exists(paths.pidFile) && exists(paths.stateFile))
        #expect(throws: DaemonError(409, "VM 'a' is already running")) { try s.start(name: "a") }

        #expect(try s.setPaused(name: "a", true).state == .paused)
        #expect(throws: DaemonError(409, "VM 'a' is paused, not running")) { try s.setPaused(name: "a", true) }
        #expect(try s.setPaused(name: "a", false).state == .running)

        let metrics = Prometheus.render(s.metrics())
        #expect(metrics.contains(#"swiftlet_vm_exits_total{vm="a",reason="port_io"} 7"#))
        #expect(metrics.contains(#"swiftlet_virtio_bytes_total{vm="a",device="disk0",direction="out"} 1024"#))
        #expect(String(decoding: try s.logs(name: "a", tail: nil), as: UTF8.self).contains("fake vm a booted"))
        #expect(try s.logs(name: "a", tail: 7).count == 7)

        let stopped = try s.stop(name: "a", wait: true)
        #expect(stopped.state == .stopped && stopped.exitStatus == 143 && stopped.pid == nil && stopped.lastError == nil)
        #expect(!exists(paths.apiSocket) && !exists(paths.consoleSocket) && !exists(paths.pidFile))
        #expect(throws: DaemonError(409, "VM 'a' is not running (stopped)")) { try s.stop(name: "a") }
        // And it starts again.
        #expect(try s.start(name: "a").state == .running)
        #expect(try s.stop(name: "a", force: true, wait: true).stateText == "stopped (signal 9)")
    }

    @Test func noVMsAtAll() throws {
        let s = try supervisor()
        #expect(s.list().isEmpty)
        #expect(s.metrics().isEmpty)
        #expect(Prometheus.render([]).contains("# TYPE swiftlet_vm_up gauge"))
    }

    @Test func crashIsReportedAndCleanedUp() throws {
        let s = try supervisor(["c": definition()])
        let pid = try #require(try s.start(name: "c").pid)
        kill(pid, SIGKILL)
        #expect(waitFor { (try? s.status(name: "c"))?.state == .crashed })
        let vm = try s.status(name: "c")
        #expect(vm.signal == 9 && vm.crashes == 1 && vm.stateText == "crashed (signal 9)")
        let paths = VMPaths(directory: stateDir, name: "c")
        #expect(!exists(paths.apiSocket) && !exists(paths.consoleSocket) && !exists(paths.pidFile))
        // The guest crashing on its own (SIGSEGV of the process) counts too.
        #expect(try s.start(name: "c").state == .running)
        try s.stop(name: "c", wait: true)
        _ = try s.start(name: "c", definition: nil)
        try s.stop(name: "c", force: true, wait: true)
        #expect(try s.status(name: "c").crashes == 1)
    }

    @Test func exitStatusAndSegfault() throws {
        let s = try supervisor(["x": definition("exit=3"), "seg": definition("crash")])
        _ = try s.start(name: "x")
        #expect(waitFor { (try? s.status(name: "x"))?.state == .stopped })
        #expect(try s.status(name: "x").exitStatus == 3)
        _ = try s.start(name: "seg")
        #expect(waitFor { (try? s.status(name: "seg"))?.state == .crashed })
        #expect(try s.status(name: "seg").signal == SIGSEGV)
    }

    /// InstanceStart answered means the VM ran: a guest that ended before the answer arrived
    /// makes a successful start whose status says it stopped, not a failed start.
    @Test func aVMThatEndsBeforeTheStartIsAnsweredStillStarted() throws {
        let s = try supervisor(["quick": definition("end-before-answer=4")])
        let r = try s.start(name: "quick")
        #expect(r.state == .stopped && r.exitStatus == 4, "\(r)")
    }

    /// A stop that finishes while a start is still waiting for InstanceStart's answer: the start
    /// is answered 409 (the client's own conflict), not 500, however fast the stop was. (The fake
    /// drops InstanceStart unanswered only after the supervisor recorded the end, so the start
    /// always learns of it after the stop completed.)
    @Test func aStopThatEndsAStartIsAConflict() throws {
        let s = try supervisor(["h": definition("hold-start")])
        let failure = Mutex<DaemonError?>(nil)
        let starter = Thread { do throws(DaemonError) { _ = try s.start(name: "h") } catch { failure.withLock { $0 = error } } }
        starter.start()
        #expect(waitFor(10) { String(decoding: (try? s.logs(name: "h", tail: nil)) ?? [], as: UTF8.self).contains("holding start") })
        let stopped = try s.stop(name: "h", wait: true)
        #expect(stopped.state == .stopped, "\(stopped)")
        #expect(waitFor(10) { failure.withLock { $0 } != nil })
        let error = failure.withLock { $0 }
        #expect(error?.status == 409 && error?.message == "VM 'h' was stopped while starting", "\(String(describing: error))")
    }

    @Test func failedStartLeavesNothingRunning() throws {
        let s = try supervisor(["f": definition("fail-start")])
        do {
            try s.start(name: "f")
            Issue.record("started")
        } catch {
            #expect(error.status == 400)
            #expect(error.message == "VM 'f': PUT /actions: cannot start: asked to fail")
        }
        let vm = try s.status(name: "f")
        #expect(vm.state == .stopped && vm.pid == nil && vm.lastError == "PUT /actions: cannot start: asked to fail")
        #expect(!exists(VMPaths(directory: stateDir, name: "f").apiSocket))
    }

    @Test func missingBinaryIsAnError() throws {
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let s = try Supervisor(options: .init(stateDirectory: stateDir, swiftletPath: dir + "/nope"), config: DaemonConfig(vms: ["a": definition()]), logger: logger)
        supervisors.append(s)
        #expect(throws: DaemonError.self) { try s.start(name: "a") }
        #expect(try s.status(name: "a").state == .stopped)
        #expect(try s.status(name: "a").lastError?.contains("nope") == true)
    }

    @Test func adHocVMs() throws {
        let s = try supervisor(["conf": definition()])
        #expect(throws: DaemonError(404, "no VM named 'other'")) { try s.start(name: "other") }
        #expect(throws: DaemonError(409, "VM 'conf' is defined in the config file; start it without a definition")) {
            try s.start(name: "conf", definition: definition())
        }
        let vm = try s.start(name: "adhoc", definition: definition())
        #expect(vm.adHoc && vm.state == .running)
        #expect(throws: DaemonError.self) { try s.remove(name: "adhoc") }
        try s.stop(name: "adhoc", wait: true)
        try s.remove(name: "adhoc")
        #expect(s.list().map(\.name) == ["conf"])
    }

    @Test func restartedSupervisorAdoptsRunningVMs() throws {
        let vms = ["r1": definition(), "r2": definition(), "r3": definition()]
        let first = try supervisor(vms)
        let p1 = try #require(try first.start(name: "r1").pid)
        let p2 = try #require(try first.start(name: "r2").pid)
        let p3 = try #require(try first.start(name: "r3").pid)
        _ = try first.setPaused(name: "r3", true)
        first.shutdown()
        // While no supervisor watches, r2 dies.
        kill(p2, SIGKILL)
        // Dead means a zombie (our child, not reaped while no supervisor watches) or gone.
        #expect(waitFor {
            let stat = (try? String(contentsOfFile: "/proc/\(p2)/stat", encoding: .utf8)) ?? ""
            return stat.isEmpty || stat.split(separator: ")").last?.split(separator: " ").first == "Z"
        })

        let second = try supervisor(vms)
        let r1 = try second.status(name: "r1")
        #expect(r1.state == .running && r1.pid == p1)
        let r2 = try second.status(name: "r2")
        #expect(r2.state == .crashed && r2.crashes == 1 && r2.pid == nil)
        #expect(!exists(VMPaths(directory: stateDir, name: "r2").apiSocket))
        #expect(try second.status(name: "r3").state == .paused)
        #expect(try second.status(name: "r3").pid == p3)
        // The adopted VM stops cleanly; its exit file tells the status.
        let stopped = try second.stop(name: "r1", wait: true)
        #expect(stopped.state == .stopped && stopped.exitStatus == 143)
        // An adopted VM killed from outside is a crash.
        kill(p3, SIGKILL)
        #expect(waitFor { (try? second.status(name: "r3"))?.state == .crashed })
    }

    @Test func reloadChangesDefinitions() throws {
        let s = try supervisor(["keep": definition(), "drop": definition(), "running": definition()])
        _ = try s.start(name: "running")
        var next = definition()
        next.memoryMiB = 4
        _ = s.reload(config: DaemonConfig(vms: ["keep": next]))
        #expect(s.list().map(\.name) == ["keep", "running"])
        #expect(try s.status(name: "keep").memoryMiB == 4)
        #expect(try s.status(name: "running").adHoc)
        try s.stop(name: "running", wait: true)
    }

    @Test func autostartAtStartupAndOnReload() throws {
        var auto = definition()
        auto.autostart = true
        let s = try supervisor(["a1": auto, "a2": auto, "manual": definition()])
        #expect(s.autostart() == ["a1", "a2"])
        #expect(waitFor { s.list().filter { $0.state == .running }.map(\.name) == ["a1", "a2"] })
        #expect(s.autostart().isEmpty, "running VMs are not started twice")
        // A reload starts only the autostart VMs it adds.
        #expect(s.reload(config: DaemonConfig(vms: ["a1": auto, "a2": auto, "manual": auto, "a3": auto])) == ["a3"])
        #expect(waitFor { (try? s.status(name: "a3"))?.state == .running })
        #expect(try s.status(name: "manual").state == .stopped)
        for name in ["a1", "a2", "a3"] { try s.stop(name: name, wait: true) }
    }

    @Test func badRequestsGetErrorsAndChangeNothing() throws {
        let s = try supervisor(["a": definition()])
        let api = DaemonAPI(supervisor: s, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        func call(_ method: String, _ path: String, _ body: String = "") -> HTTPResponse {
            let parts = path.split(separator: "?", maxSplits: 1).map(String.init)
            return api.handle(HTTPRequest(method: method, path: parts[0], query: parts.count > 1 ? parts[1] : nil, body: Array(body.utf8)))
        }
        let cases: [(String, String, String, Int, String)] = [
            ("GET", "/nope", "", 404, "no such resource: /nope"),
            ("GET", "/vms/zzz", "", 404, "no VM named 'zzz'"),
            ("POST", "/vms", "", 405, "POST is not allowed on /vms (use GET)"),
            ("GET", "/vms/a/start", "", 405, "GET is not allowed on /vms/a/start (use PUT)"),
            ("PUT", "/vms/a/stop", "", 409, "VM 'a' is not running (stopped)"),
            ("PUT", "/vms/a/stop?force=maybe", "", 400, "force must be 1 or 0, not 'maybe'"),
            ("GET", "/vms/a/logs?tail=-1", "", 400, "tail must be a number of bytes, not '-1'"),
            ("PUT", "/vms/b/start", "{", 400, "bad VM definition: "),
            ("PUT", "/vms/b/start", #"{"kernel": "\#(kernel)", "colour": "red"}"#, 400, "bad VM definition: colour: unknown key 'colour'"),
            ("PUT", "/vms/b/start", #"{"kernel": 5}"#, 400, "bad VM definition: kernel: expected a string"),
            ("PUT", "/vms/b/start", #"{"kernel": "\#(kernel)", "cpus": 1000}"#, 400, "bad VM definition: cpus: 1000 is out of range (1 to 255)"),
            ("PUT", "/vms/b/start", #"{"kernel": "/nonexistent"}"#, 400, "bad VM definition: kernel: /nonexistent: no such file"),
            ("PUT", "/vms/bad%20name/start", "", 400, "'bad%20name' is not a VM name"),
            ("PUT", "/vms/a/pause", "", 409, "VM 'a' is stopped, not running"),
            ("GET", "/vms/a/console", "", 409, "VM 'a' is stopped, not running"),
            ("DELETE", "/vms/a", "", 409, "VM 'a' is defined in the config file"),
            ("POST", "/reload", "", 409, "the daemon was started without a config file"),
            ("GET", "/vms", "x", 400, "GET /vms takes no body"),
            ("PUT", "/vms/a", "", 405, "PUT is not allowed on /vms/a (use GET or DELETE)"),
        ]
        for (method, path, body, status, message) in cases {
            let r = call(method, path, body)
            #expect(r.status == status, "\(method) \(path): \(r.bodyText)")
            #expect(r.bodyText.contains(#""fault_message":""#) && r.bodyText.contains(message.replacingOccurrences(of: "/", with: "\\/")) || r.bodyText.contains(message),
                    "\(method) \(path): \(r.bodyText)")
        }
        // A 405 names what the path serves in Allow, as HTTP requires (RFC 9110, 15.5.6).
        for (method, path, allowed) in [("POST", "/vms", "GET"), ("GET", "/vms/a/stop", "PUT"), ("PUT", "/vms/a", "GET, DELETE")] {
            let r = call(method, path)
            #expect(r.status == 405 && r.headers.first { $0.name == "Allow" }?.value == allowed, "\(method) \(path): \(r.headers)")
        }
        // A few hundred malformed bodies and paths: always a 4xx, never a crash, nothing started.
        var generator = SystemRandomNumberGenerator()
        let pieces = ["{", "}", "\"kernel\"", ":", "[", "]", "null", "1e999", "\"\\u0000\"", ",", "\"memory\"", "-1", "true", "\"cpus\"", "\u{FF}"]
        for i in 0..<300 {
            let body = (0..<Int.random(in: 0...12, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }.joined()
            let name = i % 3 == 0 ? "a" : "x\(i)"
            let r = call("PUT", "/vms/\(name)/start", body.isEmpty ? "{}" : body)
            #expect((400..<500).contains(r.status), "\(body): \(r.bodyText)")
        }
        for path in ["/", "//", "/vms/", "/vms/a/b/c/d", "/metrics/x", "/vms/a/%00", "/vms/\(String(repeating: "x", count: 300))/start"] {
            let r = call("PUT", path, "")
            #expect(r.status >= 400 && r.status < 500 || r.status == 200, "\(path): \(r.status)")
        }
        #expect(s.list().map(\.name) == ["a"])
        #expect(s.list().allSatisfy { $0.state == .stopped })
        #expect(call("GET", "/metrics").status == 200)
    }

    static let fakeScript = #"""
# A stand-in for `swiftlet api` (no KVM): the same command line, API socket, console socket,
# console log and exit file, with a VM that only pretends to run.
import http.server, json, os, signal, socket, socketserver, sys, threading, time

args = sys.argv[1:]
if not args or args[0] != "api":
    sys.exit("fake swiftlet: only 'api' is supported")
opts = {}
i = 1
while i < len(args):
    if args[i] == "--no-seccomp":
        i += 1
        continue
    opts[args[i]] = args[i + 1]
    i += 2
api, console, log, exitfile = opts["--api-sock"], opts.get("--console-sock"), opts.get("--console-log"), opts.get("--exit-file")
state = {"state": "Not started", "boot": None, "machine": None, "started": 0.0}
lock = threading.Lock()

def finish(status):
    if exitfile:
        with open(exitfile, "w") as f:
            f.write("%d\n" % status)
    os._exit(status)

signal.signal(signal.SIGTERM, lambda *_: finish(143))

def log_write(text):
    if log:
        with open(log, "a") as f:
            f.write(text)

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def reply(self, status, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)
    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")
    def do_GET(self):
        if self.path == "/":
            return self.reply(200, {"id": opts.get("--id", ""), "state": state["state"], "vmm_version": "0", "app_name": "Swiftlet"})
        if self.path == "/swiftlet/metrics":
            up = time.time() - state["started"] if state["started"] else 0
            return self.reply(200, {"id": opts.get("--id", ""), "state": state["state"], "uptime_seconds": up, "vcpus": 1,
                                    "memory_mib": 2, "exits": {"port_io": 7, "halt": 1},
                                    "devices": [{"id": "disk0", "kind": "block", "requests": 3, "bytes_in": 512, "bytes_out": 1024}]})
        self.reply(400, {"fault_message": "no such path"})
    def do_PUT(self):
        b = self.body()
        with lock:
            if self.path == "/boot-source":
                if not os.path.exists(b.get("kernel_image_path", "")):
                    return self.reply(400, {"fault_message": "kernel not found"})
                state["boot"] = b
            elif self.path == "/actions":
                if b.get("action_type") != "InstanceStart":
                    return self.reply(204)
                args = (state["boot"] or {}).get("boot_args") or ""
                if "hold-start" in args.split():
                    # InstanceStart is never answered: a child keeps the connection open until the
                    # supervisor has recorded the end (it removes the API socket then), then drops
                    # it, so the start hears of the end only after a stop completed.
                    log_write("holding start\n")
                    if os.fork() == 0:
                        signal.signal(signal.SIGTERM, signal.SIG_IGN)
                        deadline = time.time() + 10
                        while os.path.exists(api) and time.time() < deadline:
                            time.sleep(0.01)
                        os._exit(0)
                    time.sleep(60)
                    return
                if "fail-start" in args:
                    return self.reply(400, {"fault_message": "cannot start: asked to fail"})
                for word in args.split():
                    if word.startswith("end-before-answer="):
                        # The VM ends first; a child answers InstanceStart on the inherited
                        # connection once the supervisor has recorded the end (it removes the
                        # API socket then, under its lock).
                        if os.fork() == 0:
                            deadline = time.time() + 10
                            while os.path.exists(api) and time.time() < deadline:
                                time.sleep(0.01)
                            self.reply(204)
                            self.wfile.flush()
                            os._exit(0)
                        finish(int(word.split("=")[1]))
                state["state"] = "Running"
                state["started"] = time.time()
                log_write("fake vm %s booted: %s\n" % (opts.get("--id", ""), args))
                for word in args.split():
                    if word.startswith("exit="):
                        threading.Timer(0.3, finish, [int(word[5:])]).start()
                    if word == "crash":
                        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGSEGV)).start()
            self.reply(204)
    def do_PATCH(self):
        b = self.body()
        if state["state"] == "Not started":
            return self.reply(400, {"fault_message": "not started"})
        state["state"] = "Paused" if b.get("state") == "Paused" else "Running"
        self.reply(204)

class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    def handle_error(self, request, client_address):
        pass

def serve_console():
    s = socket.socket(socket.AF_UNIX)
    s.bind(console)
    s.listen(1)
    while True:
        c, _ = s.accept()
        buf = b""
        while True:
            d = c.recv(4096)
            if not d:
                break
            buf += d
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line == b"quit":
                    c.sendall(b"bye\n")
                    log_write("bye\n")
                    finish(0)
                out = b"got: " + line + b"\n"
                log_write(out.decode())
                c.sendall(out)
        c.close()

if console:
    threading.Thread(target=serve_console, daemon=True).start()
time.sleep(float(os.environ.get("FAKE_SWIFTLET_DELAY", "0")))
Server(api, Handler).serve_forever()
"""#
}
