import Foundation
import Testing

/// `swiftlet oci` (swiftlet-oci) driven by hand as containerd's shim drives it: bundles made here
/// (config.json and a rootfs holding a test guest), runc's commands, its JSON log, its errors.
@Suite(.serialized, .enabled(if: Harness.hasKVM && Harness.isRoot, "needs a usable /dev/kvm and root (namespaces)"))
struct OCICommandTests {
    let dir: String

    init() throws {
        dir = Harness.scratch.appendingPathComponent("oci-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir + "/state", withIntermediateDirectories: true)
    }

    /// A bundle whose rootfs holds test guest `guest` at /unikernel/NAME.hvt.
    func bundle(_ name: String, guest: String = "hello", annotations: [String: String]? = nil, args: [String] = ["hello"],
                extra: (String) throws -> Void = { _ in }) throws -> String {
        let bundle = dir + "/" + name
        try FileManager.default.createDirectory(atPath: bundle + "/rootfs/unikernel", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: try Harness.guest(guest), toPath: bundle + "/rootfs/unikernel/\(guest).hvt")
        try extra(bundle + "/rootfs")
        let config: [String: Any] = [
            "ociVersion": "1.0.2",
            "process": ["args": args, "terminal": false, "cwd": "/"],
            "root": ["path": "rootfs"],
            "annotations": annotations ?? ["org.swiftlet.kernel": "/unikernel/\(guest).hvt", "org.swiftlet.kind": "hvt"],
            "linux": ["namespaces": [["type": "pid"], ["type": "ipc"], ["type": "uts"], ["type": "mount"], ["type": "network"]]],
        ]
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: bundle + "/config.json"))
        return bundle
    }

    /// swiftlet oci with our --root; its output.
    func oci(_ arguments: [String], log: String? = nil) -> Harness.Outcome {
        Harness.run(Harness.swiftlet, ["oci", "--root", dir + "/state"] + (log.map { ["--log", $0, "--log-format", "json"] } ?? []) + arguments)
    }

    /// `create` with the VM's stdio in `output` (the process keeps it: a pipe would never end).
    func create(_ id: String, bundle: String, output: String) -> Harness.Outcome {
        Harness.run("/bin/sh", ["-c", "exec \"$0\" oci --root \"$1\" create --bundle \"$2\" --pid-file \"$3\" \"$4\" >\"$5\" 2>&1",
                                Harness.swiftlet, dir + "/state", bundle, bundle + "/init.pid", id, output])
    }

    func state(_ id: String) throws -> [String: Any] {
        let r = oci(["state", id])
        return try #require(try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any], "\(r.output)")
    }

    @Test func createStartStateDelete() throws {
        let bundle = try bundle("life", args: ["/unikernel/hello.hvt", "from-oci"])
        let output = dir + "/life.out"
        let created = create("life", bundle: bundle, output: output)
        #expect(created.status == 0, "\(created.output) \((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")")
        let pidText = try String(contentsOfFile: bundle + "/init.pid", encoding: .utf8)
        let pid = try #require(Int32(pidText), "the pid file holds the pid alone: '\(pidText)'")
        var s = try state("life")
        #expect(s["status"] as? String == "created" && s["pid"] as? Int == Int(pid) && s["bundle"] as? String == bundle)
        #expect(oci(["ps", "--format", "json", "life"]).output == "[\(pid)]\n")
        // Nothing runs before start.
        #expect(!((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").contains("Hello"))
        #expect(oci(["start", "life"]).status == 0)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, (try? state("life"))?["status"] as? String != "stopped" { usleep(50_000) }
        s = try state("life")
        #expect(s["status"] as? String == "stopped" && s["pid"] as? Int == 0)
        let console = try String(contentsOfFile: output, encoding: .utf8)
        #expect(console.contains("Hello, world") && console.contains("arg[1]=from-oci"), "\(console)")
        #expect(oci(["start", "life"]).output.contains("cannot start a container that has stopped"))
        let kill = oci(["kill", "life", "KILL"])
        #expect(kill.status == 1 && kill.output.contains("container not running"), "\(kill.output)")
        #expect(oci(["delete", "life"]).status == 0)
        let gone = oci(["state", "life"])
        #expect(gone.status == 1 && gone.output.contains("container \"life\" does not exist"), "\(gone.output)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/state/life"))
    }

    @Test func killPauseResumeAndForcedDelete() throws {
        let bundle = try bundle("idle", guest: "idle")
        #expect(create("idle", bundle: bundle, output: dir + "/idle.out").status == 0)
        #expect(oci(["start", "idle"]).status == 0)
        #expect(try state("idle")["status"] as? String == "running")
        // The VMM jails itself inside the container: a root holding only /dev, no root user.
        let pid = try #require(try state("idle")["pid"] as? Int)
        #expect(Harness.eventually { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/root")) == ["dev"] },
                "\((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/root")) ?? [])")
        #expect(!JailIntegrationTests.statusField(Int32(pid), "Uid").contains("0"))
        #expect(oci(["pause", "idle"]).status == 0)
        #expect(try state("idle")["status"] as? String == "paused")
        #expect(oci(["resume", "idle"]).status == 0)
        let refused = oci(["delete", "idle"])
        #expect(refused.status == 1 && refused.output.contains("cannot delete container idle that is not stopped: running"), "\(refused.output)")
        #expect(oci(["delete", "--force", "idle"]).status == 0)
        #expect(!FileManager.default.fileExists(atPath: dir + "/state/idle"))
    }

    @Test func badBundlesAndCommandsAreRuncsErrors() throws {
        let log = dir + "/log.json"
        func refused(_ arguments: [String], _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
            let r = oci(arguments, log: log)
            #expect(r.status == 1, "\(arguments): \(r.output)", sourceLocation: sourceLocation)
            #expect(r.output.contains(message) && r.output.split(separator: "\n").count == 1, "\(arguments): \(r.output)", sourceLocation: sourceLocation)
        }
        refused(["create", "--bundle", try bundle("none", annotations: [:]), "none"], "names no kernel")
        refused(["create", "--bundle", try bundle("kind", annotations: ["org.swiftlet.kernel": "/unikernel/hello.hvt", "org.swiftlet.kind": "qemu"]), "kind"],
                "unknown kernel kind 'qemu'")
        // A link out of the rootfs resolves inside it, where there is no such file.
        let escape = try bundle("escape", annotations: ["org.swiftlet.kernel": "/kernel", "org.swiftlet.kind": "hvt"]) { rootfs in
            try FileManager.default.createSymbolicLink(atPath: rootfs + "/kernel", withDestinationPath: "../../../../../../../bin/true")
        }
        refused(["create", "--bundle", escape, "escape"], "kernel /kernel: no such file in the root file system")
        refused(["create", "--bundle", dir + "/nowhere", "x"], "config.json: cannot read")
        refused(["start", "never"], "container \"never\" does not exist")
        refused(["exec", "--process", "/p.json", "never"], "exec is not supported")
        refused(["create", "--bundle", escape, "--frobnicate", "y"], "flag provided but not defined: -frobnicate")
        refused(["kill", "never", "SIGNOPE"], "does not exist")
        for id in ["none", "kind", "escape", "x"] { #expect(!FileManager.default.fileExists(atPath: dir + "/state/" + id), "\(id) left behind") }
        // Twice the same ID.
        let twice = try bundle("twice", guest: "idle")
        #expect(create("twice", bundle: twice, output: dir + "/twice.out").status == 0)
        refused(["create", "--bundle", twice, "twice"], "container with id exists: twice")
        refused(["update", "--memory", "1G", "twice"], "fixed when it boots")
        #expect(oci(["delete", "twice"]).status == 0, "a created container is deleted without --force, as runc does")
        // The shim reads the last error line of the JSON log: valid JSON, level error.
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(lines.count >= 8)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
            #expect(object?["level"] == "error" && object?["msg"] != nil && object?["time"]?.hasSuffix("Z") == true, "\(line)")
        }
    }

    @Test func featuresAndVersion() throws {
        let features = oci(["features"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(features.output.utf8)) as? [String: Any])
        #expect(object["ociVersionMax"] as? String != nil)
        let linked = dir + "/swiftlet-oci"
        try FileManager.default.createSymbolicLink(atPath: linked, withDestinationPath: Harness.swiftlet)
        let version = Harness.run(linked, ["--version"])
        #expect(version.status == 0 && version.output.contains("swiftlet-oci version"), "\(version.output)")
    }
}
