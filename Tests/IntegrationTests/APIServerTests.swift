import Foundation
import Testing
import Yams
#if canImport(Glibc)
import Glibc
#endif

// `swiftlet api` end to end: the built binary serving its Firecracker-compatible REST API on a Unix
// socket, driven by curl (an ordinary Firecracker client) and by a small raw-socket HTTP client
// (`APITestClient`, below), against real guests, and checked against api/swiftlet-vm-api.yaml.

/// Checks of the OpenAPI document itself (no VM needed).
@Suite struct APIDocumentTests {
    @Test func examplesMatchTheirSchemas() throws {
        let doc = try APIDocument.load()
        #expect(doc.operations.count == 15, "\(doc.operations.map(\.name))")
        for op in doc.operations {
            #expect(op.statuses.contains(400), "\(op.name): 400 is not documented")
            #expect(op.success == (op.method == "GET" ? 200 : 204), "\(op.name): success status \(op.success)")
            #expect(!op.states.isEmpty && op.states.isSubset(of: APIDocument.states), "\(op.name): x-swiftlet-states \(op.states)")
            if op.method == "GET" {
                #expect(op.responseSchema != nil, "\(op.name): no 200 schema")
            } else {
                let schema = try #require(op.bodySchema, "\(op.name): no request schema")
                #expect(!op.examples.isEmpty, "\(op.name): no example")
                #expect(doc.resolve(schema)["additionalProperties"] == .bool(false), "\(op.name): request schema is not strict")
                for ex in op.examples {
                    #expect(doc.problems(ex.value, schema).isEmpty, "\(op.name) example \(ex.name): \(doc.problems(ex.value, schema))")
                }
            }
        }
        // The ranges the server enforces, as the brief for this document states them.
        let s = doc.root["components"]?["schemas"]
        #expect(s?["MachineConfiguration"]?["properties"]?["vcpu_count"]?["maximum"] == .number("255"))
        #expect(s?["MachineConfiguration"]?["properties"]?["mem_size_mib"]?["maximum"] == .number("1048576"))
        #expect(s?["Vsock"]?["properties"]?["guest_cid"]?["minimum"] == .number("3"))
        #expect(s?["Vsock"]?["properties"]?["guest_cid"]?["maximum"] == .number("4294967294"))
        #expect(doc.root["info"]?["description"]?.string?.contains("/swiftlet/metrics") == true)
    }

    /// The generator of bad bodies must only produce bodies the schema refuses, or the bad-input
    /// test would be asserting the wrong thing.
    @Test func generatedBadBodiesViolateTheSchema() throws {
        let doc = try APIDocument.load()
        for op in doc.operations {
            guard let schema = op.bodySchema, let example = op.examples.first else { continue }
            for bad in doc.badBodies(schema: schema, example: example.value) {
                if let json = bad.json {
                    #expect(!doc.problems(json, schema).isEmpty, "\(op.name) \(bad.label): \(json) is valid")
                }
            }
        }
    }
}

@Suite(.serialized, .enabled(if: Harness.hasKVM, "needs a usable /dev/kvm (skipped: no /dev/kvm or no access to it)"))
struct APIServerTests {
    static let curl = ["/usr/bin/curl", "/bin/curl"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// The whole life of an hvt `idle` VM, every call made with curl.
    @Test func lifecycleWithCurl() throws {
        _ = try #require(Self.curl, "curl is needed (apt-get install curl)")
        let idle = try Harness.guest("idle")
        let dir = try APIServer.directory("life")
        let metrics = dir + "/metrics.json", exitFile = dir + "/exit"
        let vm = try APIServer(dir: dir, ["--id", "life-1", "--exit-file", exitFile])
        defer { vm.kill() }

        #expect(try vm.curl("PUT", "/boot-source", #"{"kernel_image_path": "\#(idle)"}"#).status == 204)
        #expect(try vm.curl("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 4}"#).status == 204)
        #expect(try vm.curl("PUT", "/metrics", #"{"metrics_path": "\#(metrics)"}"#).status == 204)
        var info = try vm.curl("GET", "/")
        #expect(info.status == 200 && info.json?["state"] == .string("Not started") && info.json?["id"] == .string("life-1"), "\(info)")

        #expect(try vm.curl("PUT", "/actions", #"{"action_type": "InstanceStart"}"#).status == 204)
        info = try vm.curl("GET", "/")
        #expect(info.json?["state"] == .string("Running"), "\(info)")
        #expect(vm.waitForOutput("idle: ready"), "\(vm.output)")
        // From InstanceStart on, the API thread (NIO's loop) and the vCPU carry their roles'
        // seccomp filters on top of the process's; everything below is served under them.
        if Harness.sanitizerArguments.isEmpty {  // a sanitizer run has no filters
            let filters = SeccompTests.filtersByThread(vm.process.processIdentifier)
            let loop = filters.filter { $0.key.hasPrefix("NIO-ELT-") }  // NIO names it after its group's number
            #expect(filters["vcpu0"] == [2] && loop.count == 1 && loop.first?.value == [2] && filters["vmm"] == [1], "\(filters)")
        }

        #expect(try vm.curl("PATCH", "/vm", #"{"state": "Paused"}"#).status == 204)
        #expect(try vm.curl("GET", "/").json?["state"] == .string("Paused"))
        let before = try vm.curl("GET", "/swiftlet/metrics")
        usleep(200_000)
        let after = try vm.curl("GET", "/swiftlet/metrics")
        #expect(before.json?["state"] == .string("Paused"), "\(before)")
        #expect(before.json?["exits"] != nil && before.json?["exits"] == after.json?["exits"],
                "exits while paused: \(before.json?["exits"].map(String.init(describing:)) ?? "-") -> \(after.json?["exits"].map(String.init(describing:)) ?? "-")")

        #expect(try vm.curl("PATCH", "/vm", #"{"state": "Resumed"}"#).status == 204)
        #expect(try vm.curl("GET", "/").json?["state"] == .string("Running"))

        let config = try vm.curl("GET", "/vm/config")
        #expect(config.status == 200)
        #expect(config.json?["boot-source"]?["kernel_image_path"] == .string(idle), "\(config)")
        #expect(config.json?["machine-config"]?["mem_size_mib"] == .number("4"), "\(config)")

        #expect(try vm.curl("PUT", "/actions", #"{"action_type": "FlushMetrics"}"#).status == 204)
        let lines = (try? String(contentsOfFile: metrics, encoding: .utf8))?.split(separator: "\n") ?? []
        let line = try #require(lines.first.flatMap { JSON.parse(Array($0.utf8)) }, "metrics file: \(lines)")
        #expect(line["utc_timestamp_ms"]?.int != nil && line["exits"]?.object != nil && line["state"] == .string("Running"), "\(line)")

        vm.expectCleanStop()
        #expect(!FileManager.default.fileExists(atPath: vm.socket), "the API socket is left behind")
        #expect((try? String(contentsOfFile: exitFile, encoding: .utf8)) == "143\n")
        // The VM's end flushes the metrics once more.
        #expect(((try? String(contentsOfFile: metrics, encoding: .utf8))?.split(separator: "\n").count ?? 0) == 2)
    }

    /// Large requests to a running VM, under its seccomp filter: the request buffers freed
    /// afterwards make glibc shrink a thread's heap, which once read /proc/sys/vm/overcommit_memory
    /// (an open the filter kills). The VM process must keep answering.
    @Test func largeRequestsToARunningVMLeaveItAnswering() throws {
        let vm = try APIServer(dir: try APIServer.directory("large"))
        defer { vm.kill() }
        try vm.startUnikernel("idle")
        let padding = String(repeating: " ", count: 50_000)
        for _ in 0..<20 {
            // Refused after boot (400), but read whole and freed first.
            _ = try vm.curl("PUT", "/machine-config", #"{"vcpu_count": 1,\#(padding) "mem_size_mib": 4}"#)
        }
        #expect(try vm.curl("GET", "/").status == 200, "the VM process stopped answering after large requests")
        vm.expectCleanStop()
    }

    /// Pause must stop the vCPU: a guest making exits all the time (`hcloop`) makes none while paused.
    @Test func pauseFreezesABusyGuest() throws {
        let vm = try APIServer(dir: try APIServer.directory("busy"))
        defer { vm.kill() }
        try vm.startUnikernel("hcloop", bootArgs: "4000000000")
        func exits() throws -> Int { try vm.call("GET", "/swiftlet/metrics").json?["exits"]?["port_io"]?.int ?? -1 }
        #expect(try vm.poll { try exits() > 100 }, "the guest makes no exits")
        let running = try exits()
        try vm.expect("PATCH", "/vm", #"{"state": "Paused"}"#, 204)
        let paused = try exits()
        #expect(paused >= running)
        usleep(200_000)
        #expect(try exits() == paused, "exits while paused")
        try vm.expect("PATCH", "/vm", #"{"state": "Resumed"}"#, 204)
        #expect(try vm.poll { try exits() > paused }, "no exits after Resumed")
        vm.expectCleanStop()
    }

    /// Pause must also stop a vCPU that sleeps in an hvt POLL (`idle` polls for an hour): the
    /// soak found a kick landing between the POLL exit and the wait was lost, and PATCH /vm then
    /// waited out the poll with the API stuck behind it. Many cycles make that window likely to be
    /// hit without the fix (`PollerKickTests` makes it certain); each PATCH must answer in seconds.
    @Test func pauseStopsAGuestWaitingInPoll() throws {
        let vm = try APIServer(dir: try APIServer.directory("pollpause"))
        defer { vm.kill() }
        try vm.startUnikernel("idle")
        #expect(vm.waitForOutput("idle: ready"), "\(vm.output)")
        for cycle in 0..<200 {
            for state in ["Paused", "Resumed"] {
                let outcome = APITestClient.request(vm.socket, "PATCH", "/vm", body: Array(#"{"state": "\#(state)"}"#.utf8), timeout: 5)
                guard case .reply(let reply) = outcome, reply.status == 204 else {
                    Issue.record("cycle \(cycle), \(state): \(outcome) — \(vm.output)")
                    return
                }
            }
        }
        vm.expectCleanStop()
    }

    /// A PVH guest with a disk through the API (the virtio-blk round trip of VirtioGuestTests),
    /// its console in --console-log; the process ends with the guest.
    @Test func pvhBlockGuestThroughTheAPI() throws {
        let dir = try APIServer.directory("pvhblk")
        let disk = Harness.disk("api-pvh-blk.img", size: 1 << 20)
        let log = dir + "/console.log", exitFile = dir + "/exit"
        let vm = try APIServer(dir: dir, ["--console-sock", dir + "/console.sock", "--console-log", log, "--exit-file", exitFile])
        defer { vm.kill() }
        try vm.expect("PUT", "/boot-source", #"{"kernel_image_path": "\#(try Harness.pvhGuest("blk"))"}"#, 204)
        try vm.expect("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 64}"#, 204)
        try vm.expect("PUT", "/drives/data", #"{"drive_id": "data", "path_on_host": "\#(disk)", "is_root_device": false}"#, 204)
        try vm.expect("PUT", "/actions", #"{"action_type": "InstanceStart"}"#, 204)
        let status = vm.waitForExit(timeout: 60)
        let console = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(status == 0, "\(vm.output)\n\(console)")
        #expect(console.contains("blk: capacity=2048 sectors") && console.contains("SUCCESS"), "\(console)")
        #expect(!vm.output.contains("SUCCESS"), "console output went to stdout instead of the console socket/log")
        #expect((try? String(contentsOfFile: exitFile, encoding: .utf8)) == "0\n")
        try VirtioGuestTests.expectPattern(in: disk, console)
        #expect(!FileManager.default.fileExists(atPath: vm.socket))
    }

    /// The console socket carries the guest's output and input both ways; the process exit status
    /// is the guest's (echo exits with the number of lines it echoed).
    @Test func pvhConsoleSocketAndExitStatus() throws {
        let dir = try APIServer.directory("echo")
        let consoleSocket = dir + "/console.sock", log = dir + "/console.log"
        let vm = try APIServer(dir: dir, ["--console-sock", consoleSocket, "--console-log", log])
        defer { vm.kill() }
        try vm.expect("PUT", "/boot-source", #"{"kernel_image_path": "\#(try Harness.pvhGuest("echo"))"}"#, 204)
        try vm.expect("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 32}"#, 204)
        try vm.expect("PUT", "/actions", #"{"action_type": "InstanceStart"}"#, 204)
        let fd = try #require(APITestClient.connect(consoleSocket), "cannot connect to the console socket")
        // Input sent before the guest polls its UART could overflow the 16-byte FIFO.
        #expect(vm.poll(timeout: 20) { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("echo: ready") })
        defer { close(fd) }
        #expect(APITestClient.sendAll(fd, Array("hello\nworld\nquit\n".utf8)))
        var received: [UInt8] = []
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !String(decoding: received, as: UTF8.self).contains("got: world") {
            guard let chunk = APITestClient.receive(fd, until: deadline), !chunk.isEmpty else { break }
            received += chunk
        }
        let text = String(decoding: received, as: UTF8.self)
        #expect(text.contains("got: hello") && text.contains("got: world"), "console socket: \(text)")
        #expect(vm.waitForExit(timeout: 30) == 2, "\(vm.output)")
        let logged = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(logged.contains("echo: ready") && logged.contains("got: world"), "console log: \(logged)")
    }

    /// `--config-file` (Firecracker's format) boots at once, no API call needed.
    @Test func configFileBootsWithoutAPICalls() throws {
        let dir = try APIServer.directory("cfg")
        func config(_ name: String, _ text: String) throws -> String {
            let path = dir + "/" + name
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let hello = try config("hello.json", """
            {"boot-source": {"kernel_image_path": "\(try Harness.guest("hello"))", "boot_args": "one two"},
             "machine-config": {"vcpu_count": 1, "mem_size_mib": 4}}
            """)
        var r = Harness.run(Harness.swiftlet, ["api", "--api-sock", dir + "/a.sock", "--config-file", hello], timeout: 30)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("Hello, world") && r.output.contains("arg[2]=two"), "\(r.output)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/a.sock"))

        // An hvt drive is the manifest's block device of the same name.
        let disk = Harness.disk("api-hvt-blk.img", size: 64 << 10)
        let blk = try config("blk.json", """
            {"boot-source": {"kernel_image_path": "\(try Harness.guest("blk"))"},
             "machine-config": {"vcpu_count": 1, "mem_size_mib": 4},
             "drives": [{"drive_id": "storage", "path_on_host": "\(disk)", "is_root_device": false}]}
            """)
        r = Harness.run(Harness.swiftlet, ["api", "--api-sock", dir + "/b.sock", "--config-file", blk], timeout: 30)
        #expect(r.status == 0 && r.output.contains("SUCCESS"), "\(r.output)")

        // A drive the manifest does not declare is a one-line error.
        let wrong = try config("wrong.json", """
            {"boot-source": {"kernel_image_path": "\(try Harness.guest("blk"))"},
             "drives": [{"drive_id": "disk0", "path_on_host": "\(disk)", "is_root_device": false}]}
            """)
        r = Harness.run(Harness.swiftlet, ["api", "--api-sock", dir + "/c.sock", "--config-file", wrong], timeout: 30)
        #expect(r.status == 1 && r.output.contains("disk0") && Self.isOneLine(r.output), "\(r.output)")

        // A PVH guest's exit status is the process's.
        let pvh = try config("pvh.json", """
            {"boot-source": {"kernel_image_path": "\(try Harness.pvhGuest("hello"))", "boot_args": "from a config file"},
             "machine-config": {"vcpu_count": 1, "mem_size_mib": 64}}
            """)
        r = Harness.run(Harness.swiftlet, ["api", "--api-sock", dir + "/d.sock", "--config-file", pvh], timeout: 30)
        #expect(r.status == 42 && r.output.contains("pvh: cmdline=from a config file"), "\(r.output)")
    }

    /// A config file with a JSON syntax error: one line naming the line, exit 1, no backtrace.
    @Test func configFileSyntaxErrorIsOneLine() throws {
        let dir = try APIServer.directory("cfgerr")
        let cases: [(text: String, expected: String)] = [
            ("{\n  \"boot-source\": {\n    \"kernel_image_path\" \"/x\"\n  }\n}\n", "line 3"),
            ("{\n  \"boot-source\": {\"kernel_image_path\": \"/x\"},\n  \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": }\n}\n", "line 3"),
            ("{\n  \"boot-source\": {\n", "line 3"),
            ("{\"boot-source\": {\"kernel_image_path\": \"/x\", \"kernel_path\": \"/y\"}}", "boot-source: unknown key 'kernel_path'"),
        ]
        for (i, c) in cases.enumerated() {
            let path = dir + "/bad\(i).json"
            try c.text.write(toFile: path, atomically: true, encoding: .utf8)
            let r = Harness.run(Harness.swiftlet, ["api", "--api-sock", dir + "/s\(i).sock", "--config-file", path], timeout: 30)
            #expect(r.status == 1, "case \(i): \(r.output)")
            #expect(Self.isOneLine(r.output) && r.output.hasPrefix("swiftlet: config file \(path): "), "case \(i): \(r.output)")
            #expect(r.output.contains(c.expected), "case \(i): \(r.output)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/s\(i).sock"), "case \(i): socket left behind")
        }
    }

    /// Every operation of api/swiftlet-vm-api.yaml, sent with its examples in each state: the
    /// status is the documented success where `x-swiftlet-states` allows it and a documented 400
    /// elsewhere; 200 bodies match their schemas; nothing the document lacks is served.
    @Test func openAPIConformance() throws {
        let doc = try APIDocument.load()
        var succeeded: Set<String> = []
        let dir = try APIServer.directory("oas")

        /// Sends `op` (with `example` as its body) in `state`; checks the answer against the document.
        func check(_ vm: APIServer, _ op: APIDocument.Operation, _ example: APIDocument.Example?, state: String) throws {
            let allowed = (example?.states ?? op.states).contains(state)
            let body = example.map { Self.withHostPaths($0.value, dir: dir) }
            let reply = try vm.call(op.method, op.path, body.map { Array($0.description.utf8) })
            let what = "\(op.name)\(example.map { " (\($0.name))" } ?? "") in \(state)"
            #expect(op.statuses.contains(reply.status), "\(what): undocumented status \(reply.status)")
            if allowed {
                #expect(reply.status == op.success, "\(what): \(reply)")
                if reply.status == op.success { succeeded.insert(op.name) }
            } else {
                #expect(reply.status == 400, "\(what) should be refused: \(reply)")
            }
            if reply.status == 200, let schema = op.responseSchema {
                let json = try #require(reply.json, "\(what): body is not JSON: \(reply)")
                #expect(doc.problems(json, schema).isEmpty, "\(what): \(doc.problems(json, schema)) in \(json)")
            }
            if reply.status == 400 {
                #expect(reply.faultMessage != nil, "\(what): 400 without a fault_message: \(reply)")
            }
            if reply.status == 204 { #expect(reply.body.isEmpty, "\(what): 204 with a body") }
        }
        func runAll(_ vm: APIServer, state: String, skip: (APIDocument.Operation, APIDocument.Example?) -> Bool) throws {
            for op in doc.operations {
                for example in op.examples.isEmpty ? [nil] : op.examples.map(Optional.some) where !skip(op, example) {
                    try check(vm, op, example, state: state)
                }
            }
        }
        func isStateChange(_ op: APIDocument.Operation, _ ex: APIDocument.Example?) -> Bool {
            op.name == "PATCH /vm" || ex?.value["action_type"] == .string("InstanceStart")
        }

        // 1. Not started: every configuration example (the files in them never opened).
        let config = try APIServer(dir: dir, name: "config")
        defer { config.kill() }
        try runAll(config, state: "Not started") { op, ex in ex?.value["action_type"] == .string("InstanceStart") }
        let full = try config.call("GET", "/vm/config").json
        #expect(full?["drives"]?.array?.first?["drive_id"] == .string("rootfs"), "\(full.map(String.init(describing:)) ?? "-")")
        #expect(full?["network-interfaces"]?.array?.first?["guest_mac"] == .string("06:00:ac:10:00:02"))
        #expect(full?["vsock"]?["guest_cid"] == .number("3"))
        #expect(full?["machine-config"]?["mem_size_mib"] == .number("32"), "PATCH /machine-config example after the PUT")
        // What GET /machine-config answers should be accepted back by PUT (Firecracker clients do this).
        let current = try #require(config.call("GET", "/machine-config").json)
        try config.expect("PUT", "/machine-config", current.description, 204)
        // PATCH changes only the fields it names.
        try config.expect("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 64, "smt": true}"#, 204)
        try config.expect("PATCH", "/machine-config", #"{"mem_size_mib": 48}"#, 204)
        // PATCH keeps the fields it does not name.
        let smt = try config.call("GET", "/machine-config").json?["smt"]
        #expect(smt == .bool(true))
        // GET reports huge_pages as set, as Firecracker does, and the document says so.
        try config.expect("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 64, "huge_pages": "2M"}"#, 204)
        let pages = try #require(config.call("GET", "/machine-config").json)
        #expect(pages["huge_pages"] == .string("2M"))
        let info = try #require(doc.operation("GET", "/machine-config")?.responseSchema)
        #expect(doc.problems(pages, info).isEmpty, "\(doc.problems(pages, info))")
        config.expectCleanStop()

        // 2. Running and Paused: a PVH guest that spins forever (it ignores Ctrl+Alt+Del).
        let vm = try APIServer(dir: dir, name: "running")
        defer { vm.kill() }
        try vm.expect("PUT", "/boot-source", #"{"kernel_image_path": "\#(try Harness.pvhGuest("spin"))"}"#, 204)
        try vm.expect("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 32}"#, 204)
        try vm.expect("PUT", "/metrics", #"{"metrics_path": "\#(dir)/running-metrics.json"}"#, 204)
        let start = try #require(doc.operation("PUT", "/actions"))
        try check(vm, start, start.examples.first { $0.value["action_type"] == .string("InstanceStart") }, state: "Not started")
        try runAll(vm, state: "Running", skip: isStateChange)
        let patchVM = try #require(doc.operation("PATCH", "/vm"))
        for (example, after) in [("Paused", "Paused"), ("Paused", "Paused"), ("Resumed", "Running"), ("Resumed", "Running"), ("Paused", "Paused")] {
            let state = try vm.call("GET", "/").json?["state"]?.string ?? "?"
            try check(vm, patchVM, patchVM.examples.first { $0.name == example }, state: state)
            #expect(try vm.call("GET", "/").json?["state"] == .string(after), "after \(example)")
        }
        try runAll(vm, state: "Paused", skip: isStateChange)
        // InstanceStart once more: refused once started.
        try check(vm, start, start.examples.first { $0.value["action_type"] == .string("InstanceStart") }, state: "Paused")

        #expect(succeeded == Set(doc.operations.map(\.name)), "never succeeded: \(Set(doc.operations.map(\.name)).subtracting(succeeded))")

        // 3. Nothing undocumented is served: other methods on the documented paths (405 with the
        // documented methods in Allow), near-miss paths (400).
        for path in Set(doc.operations.map(\.path)).sorted() + Self.unknownPaths {
            let allowed = Set(doc.operations.filter { $0.path == path }.map(\.method))
            for method in ["GET", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE"] where !allowed.contains(method) {
                let reply = try vm.call(method, path, method == "GET" ? nil : Array("{}".utf8))
                #expect(reply.faultMessage != nil, "\(method) \(path): \(reply)")
                #expect(Self.refusesMethod(reply, allowed: allowed), "\(method) \(path): \(reply) \(reply.headers)")
            }
        }
        #expect(try vm.call("GET", "/").json?["state"] == .string("Paused"))
        vm.expectCleanStop()
    }

    /// Hundreds of bad requests, generated from the document's schemas and by hand: each gets 400
    /// with a JSON fault_message (or, for what is not HTTP, a 400 or a closed connection — never a
    /// hang), nothing changes, and the VM keeps running.
    @Test func badInputIsRefused() throws {
        let doc = try APIDocument.load()
        let dir = try APIServer.directory("bad")
        let vm = try APIServer(dir: dir)
        defer { vm.kill() }
        var sent = 0

        func refused(_ server: APIServer, _ method: String, _ path: String, _ body: [UInt8]?, _ label: String) throws {
            let reply = try server.call(method, path, body)
            sent += 1
            #expect(reply.status == 400, "\(label): \(method) \(path) \(String(decoding: (body ?? []).prefix(200), as: UTF8.self)): \(reply)")
            #expect(reply.faultMessage.map { !$0.isEmpty && !$0.contains("\n") } == true, "\(label): \(reply)")
            #expect(reply.header("content-type") == "application/json", "\(label): \(reply)")
        }
        func fuzzBodies(state: String) throws {
            for op in doc.operations where op.bodySchema != nil && op.states.contains(state) {
                let example = op.examples[0]
                for bad in doc.badBodies(schema: op.bodySchema!, example: example.value) {
                    try refused(vm, op.method, op.path, bad.bytes, "\(op.name) \(bad.label)")
                }
            }
        }

        // Not started: bodies (the state in which configuration bodies are decoded at all).
        let pristine = try vm.call("GET", "/vm/config").body
        try fuzzBodies(state: "Not started")
        for (path, body) in [("/drives/a", #"{"drive_id": "b", "path_on_host": "/x", "is_root_device": false}"#),
                             ("/drives/rootfs", #"{"drive_id": "rootfs ", "path_on_host": "/x", "is_root_device": false}"#),
                             ("/network-interfaces/eth0", #"{"iface_id": "eth1", "host_dev_name": "tap0"}"#),
                             ("/network-interfaces/eth0", #"{"iface_id": "ETH0", "host_dev_name": "tap0"}"#)] {
            try refused(vm, "PUT", path, Array(body.utf8), "id mismatch")
        }
        let long = String(repeating: "x", count: 65)
        for (id, path) in [("", ""), ("a b", "a%20b"), ("a/b", "a/b"), ("..", ".."), ("..", "%2e%2e"), ("a.b", "a.b"),
                           ("a:b", "a:b"), (long, long), ("\u{e9}t\u{e9}", "%C3%A9t%C3%A9")] {
            let body = #"{"drive_id": "\#(id)", "path_on_host": "/x", "is_root_device": false}"#
            try refused(vm, "PUT", "/drives/" + path, Array(body.utf8), "bad drive id '\(id)'")
            let nic = #"{"iface_id": "\#(id)", "host_dev_name": "tap0"}"#
            try refused(vm, "PUT", "/network-interfaces/" + path, Array(nic.utf8), "bad iface id '\(id)'")
        }
        // Wrong state before boot.
        try refused(vm, "PATCH", "/vm", Array(#"{"state": "Paused"}"#.utf8), "PATCH /vm before InstanceStart")
        try refused(vm, "PUT", "/actions", Array(#"{"action_type": "SendCtrlAltDel"}"#.utf8), "SendCtrlAltDel before InstanceStart")
        try refused(vm, "PUT", "/actions", Array(#"{"action_type": "FlushMetrics"}"#.utf8), "FlushMetrics without PUT /metrics")
        try refused(vm, "PUT", "/actions", Array(#"{"action_type": "InstanceStart"}"#.utf8), "InstanceStart without a boot source")
        // Size limit: 51,200 bytes of valid JSON pass, one byte more does not.
        let small = #"{"vcpu_count": 1, "mem_size_mib": 128}"#
        let exact = Array(small.utf8.dropLast()) + [UInt8](repeating: 0x20, count: 51_200 - small.utf8.count) + [0x7D]
        #expect(exact.count == 51_200)
        #expect(try vm.call("PUT", "/machine-config", exact).status == 204, "a body of exactly 51,200 bytes")
        try refused(vm, "PUT", "/machine-config", Array(small.utf8.dropLast()) + [UInt8](repeating: 0x20, count: 51_201 - small.utf8.count) + [0x7D], "51,201 bytes")
        try refused(vm, "PUT", "/boot-source", Array(#"{"kernel_image_path": ""#.utf8) + [UInt8](repeating: 0x61, count: 200_000) + Array(#""}"#.utf8), "200 kB")
        #expect(try vm.call("GET", "/vm/config").body == pristine, "bad requests changed the configuration")

        // Known leniencies of the JSON parser (Firecracker's serde refuses these).
        // Firecracker (serde_json) refuses these; Foundation's decoder alone would not (StrictJSON).
        try refused(vm, "PUT", "/vsock", Array(#"{"guest_cid": 3, "uds_path": "/x",}"#.utf8), "trailing comma")
        try refused(vm, "PUT", "/boot-source", Array(#"{"kernel_image_path": "/a", "kernel_image_path": "/b"}"#.utf8), "duplicate key")
        // A NUL inside a path is cut off when the path reaches open(2): "/a\u0000b" would open "/a".
        try refused(vm, "PUT", "/boot-source", Array(#"{"kernel_image_path": "/bin/sh\u0000.hvt"}"#.utf8), "NUL in a path")
        // Conflicts with what is configured.
        try vm.expect("PUT", "/drives/root1", #"{"drive_id": "root1", "path_on_host": "\#(Harness.disk("api-root1.img", size: 1 << 20))", "is_root_device": true}"#, 204)
        try refused(vm, "PUT", "/drives/root2", Array(#"{"drive_id": "root2", "path_on_host": "/y", "is_root_device": true}"#.utf8), "second root device")
        try vm.expect("PUT", "/network-interfaces/n1", #"{"iface_id": "n1", "host_dev_name": "tapx"}"#, 204)
        try refused(vm, "PUT", "/network-interfaces/n2", Array(#"{"iface_id": "n2", "host_dev_name": "tapx"}"#.utf8), "shared tap")
        // InstanceStart that fails (the tap does not exist) leaves it Not started.
        try vm.expect("PUT", "/boot-source", #"{"kernel_image_path": "\#(try Harness.guest("idle"))"}"#, 204)
        try refused(vm, "PUT", "/actions", Array(#"{"action_type": "InstanceStart"}"#.utf8), "InstanceStart with a missing tap")
        #expect(try vm.call("GET", "/").json?["state"] == .string("Not started"))
        vm.expectCleanStop()

        // Running: a fresh instance with an idle unikernel.
        let running = try APIServer(dir: dir, name: "bad-running")
        defer { running.kill() }
        try running.expect("PUT", "/boot-source", #"{"kernel_image_path": "\#(try Harness.guest("idle"))"}"#, 204)
        try running.expect("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 4}"#, 204)
        try running.expect("PUT", "/actions", #"{"action_type": "InstanceStart"}"#, 204)
        for op in doc.operations where op.bodySchema != nil {
            if op.states.contains("Running") {
                for bad in doc.badBodies(schema: op.bodySchema!, example: op.examples[0].value) {
                    try refused(running, op.method, op.path, bad.bytes, "\(op.name) \(bad.label)")
                }
            }
            // Wrong state: every configuration example after InstanceStart, InstanceStart twice.
            for example in op.examples where !example.states.contains("Running") {
                try refused(running, op.method, op.path, Array(Self.withHostPaths(example.value, dir: dir).description.utf8), "\(op.name) \(example.name) after InstanceStart")
            }
        }
        try refused(running, "PUT", "/actions", Array(#"{"action_type": "SendCtrlAltDel"}"#.utf8), "SendCtrlAltDel to a unikernel")
        // Wrong methods (405 on a documented path) and unknown paths (400).
        for path in Set(doc.operations.map(\.path)).sorted() + Self.unknownPaths {
            let allowed = Set(doc.operations.filter { $0.path == path }.map(\.method))
            for method in ["GET", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "HEAD"] where !allowed.contains(method) {
                let reply = try running.call(method, path, method == "GET" || method == "HEAD" ? nil : Array(#"{"state": "Paused"}"#.utf8))
                sent += 1
                #expect(Self.refusesMethod(reply, allowed: allowed), "\(method) \(path): \(reply) \(reply.headers)")
                if method != "HEAD" {
                    #expect(reply.faultMessage.map { !$0.isEmpty && !$0.contains("\n") } == true, "\(method) \(path): \(reply)")
                }
            }
        }
        // Not HTTP at all, or HTTP the parser refuses: a 400 or a closed connection, never a hang.
        var rng = SplitMix(seed: 0x5eed)
        var garbage: [[UInt8]] = [
            [0, 1, 2, 3], Array("hello\r\n\r\n".utf8), [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03],
            Array("GET\r\n\r\n".utf8), Array("get / HTTP/1.1\r\nHost: x\r\n\r\n".utf8), Array("GET / HTTP/9.9\r\n\r\n".utf8),
            Array("PUT /vm HTTP/1.1\r\nContent-Length: abc\r\n\r\n".utf8), Array("PUT /vm HTTP/1.1\r\nContent-Length: -1\r\n\r\n".utf8),
            Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8), Array("GET / HTTP/1.1\r\nBad Header\r\n\r\n".utf8),
            Array("GET /\u{7F}\u{1} HTTP/1.1\r\n\r\n".utf8), Array("GET / HTTP/1.1\r\nHost: x\r\n".utf8) + [0xFF, 0xFE] + Array(": y\r\n\r\n".utf8),
            Array("GET /".utf8) + [UInt8](repeating: 0x61, count: 100_000) + Array(" HTTP/1.1\r\n\r\n".utf8),
        ]
        for _ in 0..<20 { garbage.append((0..<Int(rng.next() % 2048 + 1)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }) }
        for (i, bytes) in garbage.enumerated() {
            let outcome = APITestClient.exchange(running.socket, bytes, timeout: 5)
            sent += 1
            switch outcome {
            case .reply(let r): #expect(r.status == 400, "garbage \(i): \(r)")
            case .closed: break
            case .timedOut(let partial): Issue.record("garbage \(i): no answer within 5 s (got \(partial.count) bytes)")
            case .failed(let why): Issue.record("garbage \(i): \(why)")
            }
        }
        // After its 400 for a request the HTTP parser rejects, the server closes the connection.
        let closed = APITestClient.answersThenCloses(running.socket, Array("garbage\r\n\r\n".utf8), timeout: 2)
        #expect(closed, "the connection stays open")
        // A client that never finishes its request does not hold up the others.
        let stuck = try #require(APITestClient.connect(running.socket))
        defer { close(stuck) }
        _ = APITestClient.sendAll(stuck, Array("PUT /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{".utf8))
        let t0 = Date()
        #expect(try running.call("GET", "/").status == 200)
        #expect(Date().timeIntervalSince(t0) < 2)

        #expect(sent >= 300, "only \(sent) bad requests")
        #expect(running.isRunning, "the process died: \(running.output)")
        let info = try running.call("GET", "/")
        #expect(info.status == 200 && info.json?["state"] == .string("Running"), "\(info)")
        running.expectCleanStop()
        #expect(!running.output.contains("Fatal error"), "\(running.output)")
    }

    /// The API socket is the owner's only: another user cannot connect, and trying does not hurt.
    @Test(.enabled(if: Harness.isRoot, "needs root to run curl as another user"))
    func onlyTheOwnerCanConnect() throws {
        let curl = try #require(Self.curl, "curl is needed (apt-get install curl)")
        let setpriv = try #require(["/usr/bin/setpriv", "/bin/setpriv"].first { FileManager.default.isExecutableFile(atPath: $0) },
                                   "setpriv (util-linux) is needed")
        // The directories on the way must let `nobody` reach the socket, so that the socket's own
        // mode is what refuses it (checked by the positive control below): a folder of our own
        // right under /tmp, whatever TMPDIR and the umask are.
        let dir = "/tmp/swiftlet-acl-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir)
        let vm = try APIServer(dir: dir)
        defer { vm.kill() }
        var st = stat()
        #expect(stat(vm.socket, &st) == 0)
        #expect(st.st_mode & S_IFMT == S_IFSOCK && st.st_mode & 0o777 == 0o600, "mode \(String(st.st_mode, radix: 8))")
        #expect(st.st_uid == getuid())

        let asNobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", curl, "-sS", "--max-time", "5",
                        "--unix-socket", vm.socket, "http://localhost/"]
        let denied = Harness.run(asNobody[0], Array(asNobody.dropFirst()), timeout: 20)
        #expect(denied.status != 0 && !denied.output.contains("state"), "nobody connected: \(denied.output)")
        #expect(try vm.call("GET", "/").status == 200, "the server stopped answering")

        // Positive control: with the mode opened up, the same command connects.
        chmod(vm.socket, 0o666)
        let allowed = Harness.run(asNobody[0], Array(asNobody.dropFirst()), timeout: 20)
        chmod(vm.socket, 0o600)
        #expect(allowed.status == 0 && allowed.output.contains("\"state\""), "the control failed, so the check above proves nothing: \(allowed.output)")

        try vm.startUnikernel("idle")
        #expect(try vm.call("GET", "/").json?["state"] == .string("Running"))
        #expect(vm.waitForOutput("idle: ready"), "\(vm.output)")
        vm.expectCleanStop()
    }

    // MARK: Helpers

    static let unknownPaths = ["/x", "/machine-config/", "/Machine-Config", "//", "/vm/", "/vm/config/", "/vm/state",
                               "/actions/InstanceStart", "/swiftlet", "/swiftlet/metrics/x", "/drives", "/drives/",
                               "/network-interfaces", "/version/", "/balloon", "/snapshot/create", "/mmds", "/cpu-config",
                               "/" + String(repeating: "a", count: 4000)]

    /// A method `path` does not serve: 405 naming the `allowed` methods in Allow on a documented
    /// path, Firecracker's 400 on an unknown one (`allowed` empty).
    static func refusesMethod(_ reply: APITestClient.Reply, allowed: Set<String>) -> Bool {
        guard !allowed.isEmpty else { return reply.status == 400 }
        let allow = reply.header("allow")?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        return reply.status == 405 && allow.map(Set.init) == allowed
    }

    /// A stderr or stdout of exactly one line (a user error, not a trap or a backtrace).
    static func isOneLine(_ text: String) -> Bool {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        return lines.count == 1 && !text.contains("Fatal error") && !text.contains("Stack dump") && !text.contains("backtrace")
    }

    /// The example with the paths the server opens at PUT time (log, metrics, kernel, initrd,
    /// drive) moved into the test's directory.
    static func withHostPaths(_ value: JSON, dir: String) -> JSON {
        guard case .object(var o) = value else { return value }
        for key in ["log_path", "metrics_path"] where o[key] != nil { o[key] = .string(dir + "/" + key + ".out") }
        // The document's kernel, initrd and drive paths stand for files of the user's: make them exist here.
        for key in ["kernel_image_path", "initrd_path", "path_on_host"] where o[key] != nil {
            let path = dir + "/" + key
            _ = FileManager.default.createFile(atPath: path, contents: Data("not a kernel".utf8))
            o[key] = .string(path)
        }
        return .object(o)
    }
}

// MARK: - The `swiftlet api` process under test

/// One `swiftlet api` process on a socket in `dir`, stdout and stderr in a file. `kill()` (and
/// the tests' `defer`) end it by PID; nothing else is signalled.
final class APIServer {
    let socket: String
    let process = Process()
    let outputPath: String
    private var handle: FileHandle?

    /// A fresh directory for one test (short: socket paths are limited to 107 bytes).
    static func directory(_ name: String) throws -> String {
        let path = Harness.scratch.appendingPathComponent("api-" + name).path
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    init(dir: String, name: String = "api", _ arguments: [String] = []) throws {
        socket = dir + "/" + name + ".sock"
        outputPath = dir + "/" + name + ".out"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.executableURL = URL(fileURLWithPath: Harness.swiftlet)
        process.arguments = ["api", "--api-sock", socket] + arguments + Harness.sanitizerArguments
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let ready = poll(timeout: 10) { !self.process.isRunning || APITestClient.connect(self.socket).map { close($0); return true } == true }
        try #require(ready && process.isRunning, "swiftlet api did not come up: \(output)")
    }

    deinit { kill() }

    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }
    var isRunning: Bool { process.isRunning }

    /// One request with the test client; a hang or a broken answer fails the test.
    func call(_ method: String, _ path: String, _ body: [UInt8]? = nil) throws -> APITestClient.Reply {
        let outcome = APITestClient.request(socket, method, path, body: body)
        guard case .reply(let reply) = outcome else {
            throw HarnessError("\(method) \(path): \(outcome) — server output: \(output)")
        }
        return reply
    }

    func expect(_ method: String, _ path: String, _ body: String, _ status: Int,
                sourceLocation: SourceLocation = #_sourceLocation) throws {
        let reply = try call(method, path, Array(body.utf8))
        #expect(reply.status == status, "\(method) \(path) \(body): \(reply)", sourceLocation: sourceLocation)
    }

    /// Boots the hvt test unikernel `guest` through the API: 1 vCPU, 4 MiB.
    func startUnikernel(_ guest: String, bootArgs: String? = nil,
                        sourceLocation: SourceLocation = #_sourceLocation) throws {
        let args = bootArgs.map { #", "boot_args": "\#($0)""# } ?? ""
        try expect("PUT", "/boot-source", #"{"kernel_image_path": "\#(try Harness.guest(guest))"\#(args)}"#, 204, sourceLocation: sourceLocation)
        try expect("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 4}"#, 204, sourceLocation: sourceLocation)
        try expect("PUT", "/actions", #"{"action_type": "InstanceStart"}"#, 204, sourceLocation: sourceLocation)
    }

    /// The same request made with curl, as any Firecracker client would.
    func curl(_ method: String, _ path: String, _ body: String? = nil) throws -> APITestClient.Reply {
        let curl = try #require(APIServerTests.curl)
        var args = ["-sS", "--max-time", "10", "--unix-socket", socket, "-X", method, "-w", "\n%{http_code}"]
        if let body { args += ["-H", "Content-Type: application/json", "-H", "Accept: application/json", "-d", body] }
        let r = Harness.run(curl, args + ["http://localhost" + path], timeout: 20)
        try #require(r.status == 0, "curl \(method) \(path): \(r.output)")
        let lines = r.output.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.last ?? "") ?? -1
        return APITestClient.Reply(status: status, headers: [], body: Array(lines.dropLast().joined(separator: "\n").utf8))
    }

    /// Polls `condition` every 10 ms for up to `timeout` seconds.
    func poll(timeout: Double = 5, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            usleep(10_000)
        }
        return try condition()
    }

    func waitForOutput(_ text: String, timeout: Double = 10) -> Bool { poll(timeout: timeout) { output.contains(text) } }

    /// The exit status (128+N for signal N), or nil if it is still running after `timeout`.
    func waitForExit(timeout: Double) -> Int32? {
        guard poll(timeout: timeout, { !process.isRunning }) else { return nil }
        process.waitUntilExit()
        try? handle?.close()
        handle = nil
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    /// SIGTERM (or `signal`), then the exit status; SIGKILL after 15 s.
    func stop(signal: Int32 = SIGTERM) -> Int32? {
        guard process.isRunning else { return waitForExit(timeout: 0) }
        Glibc.kill(process.processIdentifier, signal)
        if let status = waitForExit(timeout: 15) { return status }
        kill()
        return nil
    }

    /// SIGTERM must stop the VM cleanly: exit status 143.
    func expectCleanStop(sourceLocation: SourceLocation = #_sourceLocation) {
        let status = stop()
        #expect(status == 143, "\(output)", sourceLocation: sourceLocation)
    }

    func kill() {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? handle?.close()
        handle = nil
    }
}

// MARK: - The test client: HTTP/1.1 text over a raw Unix socket

enum APITestClient {
    struct Reply: CustomStringConvertible {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]
        var json: JSON? { JSON.parse(body) }
        var faultMessage: String? { json?["fault_message"]?.string }
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1 }
        var description: String { "\(status) \(String(decoding: body.prefix(400), as: UTF8.self))" }
    }

    enum Outcome: CustomStringConvertible {
        case reply(Reply)
        /// The server closed the connection without a (complete) answer.
        case closed([UInt8])
        case timedOut([UInt8])
        case failed(String)
        var description: String {
            switch self {
            case .reply(let r): "reply \(r)"
            case .closed(let b): "connection closed after \(b.count) bytes"
            case .timedOut(let b): "no answer in time (\(b.count) bytes)"
            case .failed(let s): s
            }
        }
    }

    /// `METHOD PATH HTTP/1.1` with Host and, with a body, Content-Type and Content-Length.
    static func request(_ socket: String, _ method: String, _ path: String, body: [UInt8]?, timeout: Double = 10) -> Outcome {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        return exchange(socket, Array((head + "\r\n").utf8) + (body ?? []), timeout: timeout, headOnly: method == "HEAD")
    }

    /// Sends `bytes` on a new connection and reads one response (to its Content-Length).
    static func exchange(_ socket: String, _ bytes: [UInt8], timeout: Double = 10, headOnly: Bool = false) -> Outcome {
        guard let fd = connect(socket) else { return .failed("cannot connect to \(socket): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let deadline = Date().addingTimeInterval(timeout)
        // A server may answer (400) and close before it has read everything: keep what it said.
        _ = sendAll(fd, bytes)
        var data: [UInt8] = []
        while true {
            if let reply = parse(data, headOnly: headOnly) { return .reply(reply) }
            guard let chunk = receive(fd, until: deadline) else { return .timedOut(data) }
            if chunk.isEmpty { return .closed(data) }
            data += chunk
        }
    }

    /// Whether the server answers `bytes` and then closes the connection (within `timeout`).
    static func answersThenCloses(_ socket: String, _ bytes: [UInt8], timeout: Double) -> Bool {
        guard let fd = connect(socket) else { return false }
        defer { close(fd) }
        _ = sendAll(fd, bytes)
        let deadline = Date().addingTimeInterval(timeout)
        while let chunk = receive(fd, until: deadline) {
            if chunk.isEmpty { return true }
        }
        return false
    }

    /// One complete response in `data`, or nil if more is needed.
    static func parse(_ data: [UInt8], headOnly: Bool) -> Reply? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = (0..<max(0, data.count - 3)).first(where: { Array(data[$0..<$0 + 4]) == separator }) else { return nil }
        let lines = String(decoding: data[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            return Reply(status: -1, headers: [], body: data)
        }
        let headers = lines.dropFirst().compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        let length = headOnly ? 0 : (headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0)
        let bodyStart = end + 4
        guard data.count >= bodyStart + length else { return nil }
        return Reply(status: status, headers: headers, body: Array(data[bodyStart..<bodyStart + length]))
    }

    static func connect(_ path: String) -> Int32? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { close(fd); return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let r = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if r != 0 { let e = errno; close(fd); errno = e; return nil }
        return fd
    }

    /// Writes everything (MSG_NOSIGNAL: a server that closed early must not SIGPIPE the tests).
    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
            if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { return false }
        }
        return true
    }

    /// The next bytes; [] at end of stream (or a reset); nil past the deadline.
    static func receive(_ fd: Int32, until deadline: Date) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { return nil }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = Glibc.poll(&p, 1, Int32(min(remaining * 1000, 1000)) + 1)
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { return Array(buffer[..<n]) }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            return []
        }
    }
}

// MARK: - JSON, with integers and booleans kept apart

/// A JSON value. Numbers keep their literal text, so 1.5, 1e400 and 2^70 survive a round trip
/// (and JSONSerialization's NSNumber, which blurs booleans and integers, is not involved).
indirect enum JSON: Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    subscript(key: String) -> JSON? { if case .object(let o) = self { o[key] } else { nil } }
    var string: String? { if case .string(let s) = self { s } else { nil } }
    var array: [JSON]? { if case .array(let a) = self { a } else { nil } }
    var object: [String: JSON]? { if case .object(let o) = self { o } else { nil } }
    var int: Int? { if case .number(let n) = self { Int(n) } else { nil } }
    var double: Double? { if case .number(let n) = self { Double(n) } else { nil } }
    var isIntegerLiteral: Bool {
        if case .number(let n) = self { !n.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) } else { false }
    }

    /// Compact JSON, keys sorted.
    var description: String {
        switch self {
        case .null: "null"
        case .bool(let b): b ? "true" : "false"
        case .number(let n): n
        case .string(let s): Self.quote(s)
        case .array(let a): "[" + a.map(\.description).joined(separator: ",") + "]"
        case .object(let o): "{" + o.keys.sorted().map { Self.quote($0) + ":" + o[$0]!.description }.joined(separator: ",") + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// Strict RFC 8259 parsing (no trailing commas, no leading zeros); nil if not JSON.
    static func parse(_ bytes: [UInt8]) -> JSON? {
        var p = Parser(b: bytes)
        guard let v = p.value(depth: 0) else { return nil }
        p.space()
        return p.i == bytes.count ? v : nil
    }

    private struct Parser {
        let b: [UInt8]
        var i = 0
        mutating func space() { while i < b.count, [0x20, 0x09, 0x0A, 0x0D].contains(b[i]) { i += 1 } }
        mutating func literal(_ s: String) -> Bool {
            let l = Array(s.utf8)
            guard i + l.count <= b.count, Array(b[i..<i + l.count]) == l else { return false }
            i += l.count
            return true
        }
        mutating func value(depth: Int) -> JSON? {
            guard depth < 64 else { return nil }
            space()
            guard i < b.count else { return nil }
            switch b[i] {
            case UInt8(ascii: "{"):
                i += 1
                var o: [String: JSON] = [:]
                space()
                if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                while true {
                    space()
                    guard case .string(let k)? = stringValue() else { return nil }
                    space()
                    guard i < b.count, b[i] == UInt8(ascii: ":") else { return nil }
                    i += 1
                    guard let v = value(depth: depth + 1) else { return nil }
                    o[k] = v
                    space()
                    guard i < b.count else { return nil }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                    return nil
                }
            case UInt8(ascii: "["):
                i += 1
                var a: [JSON] = []
                space()
                if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                while true {
                    guard let v = value(depth: depth + 1) else { return nil }
                    a.append(v)
                    space()
                    guard i < b.count else { return nil }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                    return nil
                }
            case UInt8(ascii: "\""): return stringValue()
            case UInt8(ascii: "t"): return literal("true") ? .bool(true) : nil
            case UInt8(ascii: "f"): return literal("false") ? .bool(false) : nil
            case UInt8(ascii: "n"): return literal("null") ? .null : nil
            default: return number()
            }
        }
        mutating func number() -> JSON? {
            let start = i
            func digits() -> Int { let s = i; while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }; return i - s }
            if i < b.count, b[i] == UInt8(ascii: "-") { i += 1 }
            let intStart = i
            let n = digits()
            guard n > 0, !(n > 1 && b[intStart] == 0x30) else { return nil }
            if i < b.count, b[i] == UInt8(ascii: ".") { i += 1; guard digits() > 0 else { return nil } }
            if i < b.count, b[i] | 0x20 == UInt8(ascii: "e") {
                i += 1
                if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
                guard digits() > 0 else { return nil }
            }
            return .number(String(decoding: b[start..<i], as: UTF8.self))
        }
        mutating func stringValue() -> JSON? {
            guard i < b.count, b[i] == UInt8(ascii: "\"") else { return nil }
            i += 1
            var out: [UInt8] = []
            while i < b.count {
                let c = b[i]
                i += 1
                switch c {
                case UInt8(ascii: "\""):
                    // Invalid UTF-8 is not JSON text.
                    guard let s = String(validating: out, as: UTF8.self) else { return nil }
                    return .string(s)
                case UInt8(ascii: "\\"):
                    guard i < b.count else { return nil }
                    let e = b[i]
                    i += 1
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                    case UInt8(ascii: "b"): out.append(8)
                    case UInt8(ascii: "f"): out.append(12)
                    case UInt8(ascii: "n"): out.append(10)
                    case UInt8(ascii: "r"): out.append(13)
                    case UInt8(ascii: "t"): out.append(9)
                    case UInt8(ascii: "u"):
                        guard var code = hex4() else { return nil }
                        if (0xD800..<0xDC00).contains(code) {
                            guard literal("\\u"), let low = hex4(), (0xDC00..<0xE000).contains(low) else { return nil }
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let scalar = Unicode.Scalar(code) else { return nil }
                        out += Array(String(Character(scalar)).utf8)
                    default: return nil
                    }
                case 0..<0x20: return nil
                default: out.append(c)
                }
            }
            return nil
        }
        mutating func hex4() -> UInt32? {
            guard i + 4 <= b.count, let v = UInt32(String(decoding: b[i..<i + 4], as: UTF8.self), radix: 16) else { return nil }
            i += 4
            return v
        }
    }

    /// A value Yams loaded.
    static func fromYAML(_ any: Any) -> JSON {
        switch any {
        case let b as Bool: .bool(b)
        case let n as Int: .number(String(n))
        case let d as Double: .number(String(d))
        case let s as String: .string(s)
        case let a as [Any]: .array(a.map(fromYAML))
        case let m as [AnyHashable: Any]: .object(Dictionary(uniqueKeysWithValues: m.map { ("\($0.key.base)", fromYAML($0.value)) }))
        case let m as [String: Any]: .object(m.mapValues(fromYAML))
        default: .null
        }
    }
}

// MARK: - api/swiftlet-vm-api.yaml

/// The OpenAPI document, its operations, a JSON-schema subset validator (the keywords the document
/// uses) and a generator of bodies the schemas refuse.
struct APIDocument {
    static let states: Set<String> = ["Not started", "Running", "Paused"]
    let root: JSON
    let operations: [Operation]

    struct Example { var name: String; var value: JSON; var states: Set<String> }

    struct Operation {
        var method: String
        var template: String
        /// `template` with its parameters replaced by their examples.
        var path: String
        var states: Set<String>
        var success: Int
        var statuses: Set<Int>
        var bodySchema: JSON?
        var responseSchema: JSON?
        var examples: [Example]
        var name: String { "\(method) \(template)" }
    }

    static func load() throws -> APIDocument {
        let url = Harness.root.appendingPathComponent("api/swiftlet-vm-api.yaml")
        let text = try String(contentsOf: url, encoding: .utf8)
        let loaded = try #require(try Yams.load(yaml: text), "empty document")
        return try APIDocument(root: JSON.fromYAML(loaded))
    }

    init(root: JSON) throws {
        self.root = root
        #expect(root["openapi"]?.string?.hasPrefix("3.0") == true)
        var ops: [Operation] = []
        let paths = try #require(root["paths"]?.object, "no paths")
        func resolve(_ s: JSON) -> JSON { APIDocument.resolve(s, in: root) }
        for (template, item) in paths {
            for method in ["get", "put", "patch", "post", "delete", "head", "options"] {
                guard let op = item[method] else { continue }
                var path = template
                for p in (op["parameters"]?.array ?? []).map(resolve) where p["in"] == .string("path") {
                    let name = try #require(p["name"]?.string)
                    path = path.replacingOccurrences(of: "{\(name)}", with: try #require(p["example"]?.string, "\(template): no example for \(name)"))
                }
                let responses = try #require(op["responses"]?.object, "\(template) \(method): no responses")
                let statuses = Set(responses.keys.compactMap { Int($0) })
                let success = try #require(statuses.filter { (200..<300).contains($0) }.min(), "\(template) \(method): no 2xx")
                let states = Set((op["x-swiftlet-states"]?.array ?? []).compactMap(\.string))
                let media = op["requestBody"]?["content"]?["application/json"]
                var examples: [Example] = []
                if let e = media?["example"] { examples.append(Example(name: "example", value: e, states: states)) }
                for (name, e) in (media?["examples"]?.object ?? [:]).sorted(by: { $0.key < $1.key }) {
                    let own = e["x-swiftlet-states"]?.array.map { Set($0.compactMap(\.string)) }
                    examples.append(Example(name: name, value: e["value"] ?? .null, states: own ?? states))
                }
                let responseSchema = responses["200"].flatMap { resolve($0)["content"]?["application/json"]?["schema"] }
                ops.append(Operation(method: method.uppercased(), template: template, path: path, states: states, success: success,
                                     statuses: statuses, bodySchema: media?["schema"], responseSchema: responseSchema, examples: examples))
            }
        }
        // In the order a client configures a VM: GET, PUT, then PATCH of each path; /actions last
        // (FlushMetrics needs PUT /metrics first).
        let rank = ["GET": 0, "PUT": 1, "PATCH": 2]
        operations = ops.sorted {
            ($0.template == "/actions" ? 1 : 0, $0.template, rank[$0.method] ?? 3) < ($1.template == "/actions" ? 1 : 0, $1.template, rank[$1.method] ?? 3)
        }
    }

    func operation(_ method: String, _ template: String) -> Operation? {
        operations.first { $0.method == method && $0.template == template }
    }

    static func resolve(_ schema: JSON, in root: JSON) -> JSON {
        var s = schema
        for _ in 0..<16 {
            guard let ref = s["$ref"]?.string, ref.hasPrefix("#/") else { return s }
            var target: JSON? = root
            for part in ref.dropFirst(2).split(separator: "/") { target = target?[String(part)] }
            s = target ?? .null
        }
        return s
    }

    func resolve(_ schema: JSON) -> JSON { Self.resolve(schema, in: root) }

    /// What is wrong with `value` under `schema` (empty when it is valid). As in OpenAPI 3.0, null
    /// is valid only where the schema says `nullable: true` (the document says it nowhere).
    func problems(_ value: JSON, _ schema: JSON, at path: String = "$") -> [String] {
        let s = resolve(schema)
        var out: [String] = []
        for part in s["allOf"]?.array ?? [] { out += problems(value, part, at: path) }
        if let type = s["type"]?.string {
            let ok: Bool = switch (type, value) {
            case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool), ("number", .number): true
            case ("integer", .number): value.isIntegerLiteral
            default: false
            }
            if !ok { return out + ["\(path): expected \(type), found \(value)"] }
        }
        if let e = s["enum"]?.array, !e.contains(value) { out.append("\(path): \(value) is not one of \(e)") }
        switch value {
        case .string(let str):
            let count = str.unicodeScalars.count
            if let min = s["minLength"]?.int, count < min { out.append("\(path): shorter than \(min)") }
            if let max = s["maxLength"]?.int, count > max { out.append("\(path): longer than \(max)") }
            if let pattern = s["pattern"]?.string {
                let re = try? NSRegularExpression(pattern: pattern)
                if re?.firstMatch(in: str, range: NSRange(str.startIndex..., in: str)) == nil { out.append("\(path): does not match \(pattern)") }
            }
        case .number(let n):
            let v = Double(n) ?? .infinity
            if let min = s["minimum"]?.double, !(v >= min) { out.append("\(path): below \(min)") }
            if let max = s["maximum"]?.double, !(v <= max) { out.append("\(path): above \(max)") }
        case .object(let o):
            let required = Set((s["required"]?.array ?? []).compactMap(\.string))
            let properties = s["properties"]?.object ?? [:]
            for key in required.sorted() where o[key] == nil || o[key] == .null { out.append("\(path).\(key): missing") }
            for (key, v) in o.sorted(by: { $0.key < $1.key }) {
                if let p = properties[key] {
                    if v == .null && resolve(p)["nullable"] == .bool(true) { continue }
                    out += problems(v, p, at: "\(path).\(key)")
                } else if s["additionalProperties"] == .bool(false) {
                    out.append("\(path): unknown field '\(key)'")
                } else if let extra = s["additionalProperties"], extra.object != nil {
                    out += problems(v, extra, at: "\(path).\(key)")
                }
            }
        case .array(let a):
            if let items = s["items"] { for (i, v) in a.enumerated() { out += problems(v, items, at: "\(path)[\(i)]") } }
        default: break
        }
        return out
    }

    struct BadBody {
        var label: String
        var bytes: [UInt8]
        /// The body as JSON when it is well-formed JSON (then it must break the schema instead).
        var json: JSON?
    }

    /// Bodies `schema` refuses, derived from a valid `example`: every truncation, syntax errors,
    /// non-objects, wrong types, out-of-range and off-enum values, missing required fields,
    /// unknown fields, bytes that are not UTF-8.
    func badBodies(schema: JSON, example: JSON) -> [BadBody] {
        var out: [BadBody] = []
        let s = resolve(schema)
        let text = Array(example.description.utf8)
        for n in 0..<text.count { out.append(BadBody(label: "truncated to \(n) bytes", bytes: Array(text[..<n]))) }
        let exampleText = example.description
        for (label, t) in [("object as array", "[" + exampleText.dropFirst().dropLast() + "]"),
                           ("extra brace", exampleText + "}"), ("two objects", exampleText + exampleText),
                           ("single quotes", exampleText.replacingOccurrences(of: "\"", with: "'")),
                           ("no colons", exampleText.replacingOccurrences(of: ":", with: " ")),
                           ("unquoted keys", exampleText.replacingOccurrences(of: "\":", with: ":").replacingOccurrences(of: "{\"", with: "{").replacingOccurrences(of: ",\"", with: ",")),
                           ("comment", "/* c */" + exampleText), ("NaN", "{\"x\": NaN}"), ("bare word", "InstanceStart"),
                           ("empty object in braces", "{{}}"), ("lone comma", "{,}"), ("nul byte", exampleText + "\u{0}")] {
            out.append(BadBody(label: label, bytes: Array(t.utf8)))
        }
        for v in [JSON.array([]), .string("x"), .number("1"), .bool(true), .null, .array([example])] {
            out.append(BadBody(label: "not an object: \(v)", bytes: Array(v.description.utf8), json: v))
        }
        guard case .object(let base) = example else { return out }
        let properties = s["properties"]?.object ?? [:]
        let required = Set((s["required"]?.array ?? []).compactMap(\.string))
        func with(_ key: String, _ value: JSON?) -> JSON {
            var o = base
            o[key] = value
            return .object(o)
        }
        func add(_ label: String, _ j: JSON) { out.append(BadBody(label: label, bytes: Array(j.description.utf8), json: j)) }
        for (key, p) in properties.sorted(by: { $0.key < $1.key }) {
            let ps = resolve(p)
            let type = ps["type"]?.string ?? "string"
            var wrong: [JSON] = [.array([]), .object(["x": .number("1")])]
            switch type {
            case "string": wrong += [.number("1"), .bool(true)]
            case "integer": wrong += [.string("1"), .bool(true), .number("1.5"), .number("-1.0e1"), .number("1.0"), .number("2e0")]
            case "boolean": wrong += [.string("true"), .number("1"), .number("0")]
            default: break
            }
            if ps["nullable"] != .bool(true) { wrong.append(.null) }
            for v in wrong { add("\(key) = \(v)", with(key, v)) }
            if type == "integer" {
                var values: [String] = ["-1", "100000000000000000000000000000", "1e400"]
                if let min = ps["minimum"]?.int { values.append(String(min - 1)) }
                if let max = ps["maximum"]?.int { values.append(String(max + 1)) }
                for v in values where !problems(.number(v), ps).isEmpty { add("\(key) = \(v)", with(key, .number(v))) }
            }
            if ps["enum"] != nil { for v in ["NotAValue", "", "none"] where !problems(.string(v), ps).isEmpty { add("\(key) = '\(v)'", with(key, .string(v))) } }
            if ps["minLength"] != nil { add("\(key) empty", with(key, .string(""))) }
            if ps["pattern"] != nil {
                for v in ["01:00:00:00:00:00", "06:00:00:00:00", "06-00-00-00-00-01", "zz:00:00:00:00:00", "a b", "", "a\u{0}b"]
                where !problems(.string(v), ps).isEmpty { add("\(key) = '\(v)'", with(key, .string(v))) }
            }
            if required.contains(key) { add("\(key) missing", with(key, nil)) }
            if type == "string", case .string(let sv)? = base[key] {
                // The example with raw 0xFF 0xFE bytes inside this string: not UTF-8, so not JSON.
                // (U+0002 is written as the escape \u0002, which is then swapped for the bytes.)
                let text = with(key, .string(sv + "\u{2}")).description.replacingOccurrences(of: "\\u0002", with: "\u{2}")
                let bytes = Array(text.utf8).flatMap { $0 == 2 ? [UInt8(0xFF), 0xFE] : [$0] }
                out.append(BadBody(label: "\(key) not UTF-8", bytes: bytes))
            }
        }
        for key in ["bogus", "huge_pages", "cpu_template", "rate_limiter", "id", ""] where properties[key] == nil {
            add("unknown field '\(key)'", with(key, .number("1")))
        }
        add("unknown nested object", with("extra", .object(["nested": .object(["deeper": .bool(true)])])))
        return out
    }
}

/// A small seeded generator, so the random garbage is the same on every run.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
