import Foundation
import Host
import OCIRuntime
import Testing

@Suite struct RuncCommandLineTests {
    @Test func theShimsCreate() throws {
        // go-runc's order: global options, the command, its options, the ID.
        let line = try RuncCommandLine(["--root", "/run/containerd/runc/default", "--log", "/b/log.json", "--log-format", "json",
                                        "create", "--bundle", "/b", "--pid-file", "/b/init.pid", "--console-socket", "/tmp/pty.sock", "c1"])
        #expect(line.root == "/run/containerd/runc/default" && line.log == "/b/log.json" && line.logFormat == "json")
        #expect(line.command == "create" && line.options["bundle"] == "/b" && line.options["pid-file"] == "/b/init.pid")
        #expect(line.options["console-socket"] == "/tmp/pty.sock")
        #expect(try line.containerID() == "c1")
    }

    @Test func urfaveForms() throws {
        let a = try RuncCommandLine(["--root=/r", "-systemd-cgroup", "update", "--resources=-", "c"])
        #expect(a.root == "/r" && a.systemdCgroup && a.options["resources"] == "-")
        let b = try RuncCommandLine(["kill", "-a", "c", "9"])
        #expect(b.flag("all") && b.arguments == ["c", "9"])
        let c = try RuncCommandLine(["delete", "--force=false", "c"])
        #expect(!c.flag("force"))
        let d = try RuncCommandLine(["ps", "--format=json", "c"])
        #expect(d.options["format"] == "json")
        let e = try RuncCommandLine(["create", "-b", "/x", "--", "-odd-id"])
        #expect(e.options["bundle"] == "/x" && e.arguments == ["-odd-id"])
    }

    @Test func badCommandLinesAreOneLine() {
        for argv in [["create", "--nope", "c"], ["frobnicate"], [], ["create", "--bundle"], ["--log-format", "xml", "state", "c"],
                     ["delete", "--force=maybe", "c"]] {
            #expect(throws: OCIError.self, "\(argv)") { try RuncCommandLine(argv) }
        }
        #expect(throws: OCIError("state: container id cannot be empty")) { try RuncCommandLine(["state"]).containerID() }
        // Text from the caller is escaped: a message stays one line (fuzz target oci-bundle's find).
        #expect(throws: OCIError(#"flag provided but not defined: -a\x0Db"#)) { try RuncCommandLine(["create", "--a\rb", "c"]) }
        #expect(OCIError("x\ny").message == #"x\x0Ay"#)
    }
}

@Suite struct RootfsPathTests {
    /// A rootfs of links and files, in a temporary directory.
    static func makeRoot() throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("rootfs-\(UUID().uuidString)").path
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/unikernel", withIntermediateDirectories: true)
        try Data("k".utf8).write(to: URL(fileURLWithPath: root + "/unikernel/hello.hvt"))
        try fm.createSymbolicLink(atPath: root + "/kernel", withDestinationPath: "/unikernel/hello.hvt")
        try fm.createSymbolicLink(atPath: root + "/relative", withDestinationPath: "unikernel/../unikernel/hello.hvt")
        try fm.createSymbolicLink(atPath: root + "/escape", withDestinationPath: "../../../../../../etc/passwd")
        try fm.createSymbolicLink(atPath: root + "/absolute-escape", withDestinationPath: "/../../etc/passwd")
        try fm.createSymbolicLink(atPath: root + "/loop", withDestinationPath: "loop")
        try fm.createSymbolicLink(atPath: root + "/dir", withDestinationPath: "/unikernel")
        return root
    }

    @Test func linksResolveInsideTheRoot() throws {
        let root = try Self.makeRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        for path in ["/kernel", "kernel", "/relative", "/dir/hello.hvt", "/../../unikernel/./hello.hvt"] {
            #expect(try RootfsPath.regularFile(path, in: root, for: "kernel") == root + "/unikernel/hello.hvt", "\(path)")
        }
        // Escapes land inside the root, where there is no etc/passwd.
        #expect(try RootfsPath.resolve("/escape", in: root) == root + "/etc/passwd")
        #expect(try RootfsPath.resolve("/absolute-escape", in: root) == root + "/etc/passwd")
        #expect(throws: OCIError("kernel /escape: no such file in the root file system")) {
            try RootfsPath.regularFile("/escape", in: root, for: "kernel")
        }
        #expect(throws: OCIError.self) { try RootfsPath.regularFile("/loop", in: root, for: "kernel") }
        #expect(throws: OCIError("kernel /unikernel: not a regular file")) { try RootfsPath.regularFile("/unikernel", in: root, for: "kernel") }
    }
}

@Suite struct GuestSpecTests {
    static func spec(_ annotations: [String: String], args: [String] = ["hello"], limit: Int64? = nil) throws -> BundleSpec {
        var object: [String: Any] = ["ociVersion": "1.0.2", "process": ["args": args, "terminal": false], "root": ["path": "rootfs"],
                                     "annotations": annotations]
        if let limit { object["linux"] = ["resources": ["memory": ["limit": limit]]] }
        return try BundleSpec.parse(JSONSerialization.data(withJSONObject: object))
    }

    /// Resolves every path to /R/PATH without touching the disk.
    static func resolve(_ path: String, _ root: String, _ purpose: String) throws(OCIError) -> String { root + path }

    @Test func ourAnnotations() throws {
        let g = try GuestSpec(Self.spec(["org.swiftlet.kernel": "/k.hvt", "org.swiftlet.kind": "hvt", "org.swiftlet.block": "/d.img,data=/e.img",
                                         "org.swiftlet.memory": "64M"], args: ["k.hvt", "--x=1", "y"]), rootfs: "/R", resolve: Self.resolve)
        #expect(g.kind == .hvt && g.kernel == "/R/k.hvt" && g.memoryMiB == 64 && g.arguments == ["--x=1", "y"])
        #expect(g.blocks == [GuestSpec.Block(name: "storage", path: "/R/d.img"), GuestSpec.Block(name: "data", path: "/R/e.img")])
        let command = try VMMCommand(g, network: nil)
        #expect(command.arguments == ["hvt", "--mem=64", "--block:storage=/R/d.img", "--block:data=/R/e.img", "--", "/R/k.hvt", "--x=1", "y"])
        #expect(try VMMCommand(g, network: nil, jail: "/s/c/jail").arguments.prefix(3) == ["hvt", "--mem=64", "--jail=/s/c/jail"])
    }

    @Test func uruncsAnnotations() throws {
        let g = try GuestSpec(Self.spec(["com.urunc.unikernel.binary": "/unikernel/net.hvt", "com.urunc.unikernel.unikernelType": "mirage",
                                         "com.urunc.unikernel.hypervisor": "hvt", "com.urunc.unikernel.cmdline": "--a  --b",
                                         "com.urunc.unikernel.block": "/disk.img", "com.urunc.unikernel.solo5BlkDev": "blk"],
                                        limit: 96 << 20), rootfs: "/R", resolve: Self.resolve)
        #expect(g.kind == .hvt && g.arguments == ["--a", "--b"] && g.memoryMiB == 96 - GuestSpec.vmmOverheadMiB)
        #expect(g.blocks == [GuestSpec.Block(name: "blk", path: "/R/disk.img")])
        let net = VMMCommand.Network(tap: "tap0", mac: "02:00:00:00:00:01", address: "10.4.0.7/16", gateway: "10.4.0.1")
        #expect(try VMMCommand(g, network: net).arguments == ["hvt", "--mem=\(96 - GuestSpec.vmmOverheadMiB)", "--block:blk=/R/disk.img",
                                                              "--net:service=tap0", "--net-mac:service=02:00:00:00:00:01", "--",
                                                              "/R/unikernel/net.hvt", "--ipv4=10.4.0.7/16", "--ipv4-gateway=10.4.0.1", "--a", "--b"])
    }

    @Test func linux() throws {
        let g = try GuestSpec(Self.spec(["org.swiftlet.kernel": "/vmlinuz", "org.swiftlet.kind": "linux", "org.swiftlet.initrd": "/initrd",
                                         "org.swiftlet.cmdline": "console=ttyS0 quiet"]), rootfs: "/R", resolve: Self.resolve)
        let net = VMMCommand.Network(tap: "tap0", mac: "02:00:00:00:00:01", address: "10.4.0.7/16", gateway: "10.4.0.1")
        #expect(try VMMCommand(g, network: nil, jail: "/j").arguments.prefix(7) == ["run", "--kernel", "/R/vmlinuz", "--memory", "128M", "--jail", "/j"])
        #expect(try VMMCommand(g, network: net).arguments == ["run", "--kernel", "/R/vmlinuz", "--memory", "128M", "--initrd", "/R/initrd",
                                                              "--net", "tap=tap0,mac=02:00:00:00:00:01", "--cmdline",
                                                              "console=ttyS0 quiet ip=10.4.0.7::10.4.0.1:255.255.0.0::eth0:off"])
    }

    @Test func whatIsRefused() throws {
        let cases: [([String: String], Int64?, String)] = [
            ([:], nil, "names no kernel"),
            (["org.swiftlet.kernel": "/k"], nil, "names no kernel kind"),
            (["org.swiftlet.kernel": "/k", "org.swiftlet.kind": "windows"], nil, "unknown kernel kind 'windows'"),
            (["com.urunc.unikernel.binary": "/k", "com.urunc.unikernel.unikernelType": "unikraft", "com.urunc.unikernel.hypervisor": "qemu"], nil,
             "Swiftlet runs hvt unikernels and Linux"),
            (["com.urunc.unikernel.binary": "/k", "com.urunc.unikernel.unikernelType": "mirage", "com.urunc.unikernel.hypervisor": "spt"], nil,
             "not spt"),
            (["org.swiftlet.kernel": "/k", "org.swiftlet.kind": "hvt", "org.swiftlet.memory": "12345K"], nil, "is not a memory size"),
            (["org.swiftlet.kernel": "/k", "org.swiftlet.kind": "hvt"], 16 << 20, "leaves no room for a guest"),
            (["org.swiftlet.kernel": "/k", "org.swiftlet.kind": "hvt", "org.swiftlet.initrd": "/i"], nil, "takes no initrd"),
            (["org.swiftlet.kernel": "/k", "org.swiftlet.kind": "hvt", "org.swiftlet.block": "a=/x,a=/y"], nil, "named twice"),
            (["org.swiftlet.kernel": "/k", "org.swiftlet.kind": "hvt", "org.swiftlet.block": "bad-name=/x"], nil, "not a device name"),
            // oci-bundle's second find: a lone `=` trapped on an empty split.
            (["org.swiftlet.kernel": "/k", "org.swiftlet.kind": "hvt", "org.swiftlet.block": "="], nil, "not a device name"),
            (["org.swiftlet.kernel": "/k", "org.swiftlet.kind": "hvt", "org.swiftlet.block": "data="], nil, "names no file"),
        ]
        for (annotations, limit, message) in cases {
            do {
                _ = try GuestSpec(Self.spec(annotations, limit: limit), rootfs: "/R", resolve: Self.resolve)
                Issue.record("accepted \(annotations)")
            } catch let error as OCIError {
                #expect(error.message.contains(message) && !error.message.contains("\n"), "\(error.message)")
            }
        }
    }

    @Test func configJSONErrorsAreOneLine() {
        #expect(throws: OCIError("config.json: not valid JSON")) { try BundleSpec.parse(Data("{".utf8)) }
        #expect(throws: OCIError("config.json: ociVersion: missing")) { try BundleSpec.parse(Data("{}".utf8)) }
    }
}

@Suite struct ContainerRecordTests {
    @Test func statusFollowsTheProcess() {
        var r = ContainerRecord(id: "c", bundle: "/b", rootfs: "/b/rootfs", pid: 42, startTicks: 7, created: "2026-12-06T00:00:00.000Z", annotations: [:])
        #expect(r.status(isRunning: { _ in true }) == "created")
        r.started = true
        #expect(r.status(isRunning: { _ in true }) == "running")
        r.paused = true
        #expect(r.status(isRunning: { _ in true }) == "paused")
        #expect(r.status(isRunning: { _ in false }) == "stopped")
    }

    @Test func stateIsRuncsDocument() throws {
        let r = ContainerRecord(id: "c", bundle: "/b", rootfs: "/b/rootfs", pid: 42, startTicks: 7, created: "2026-12-06T00:00:00.000Z",
                                annotations: ["org.swiftlet.kind": "hvt"])
        let object = try #require(JSONSerialization.jsonObject(with: Data(r.stateJSON(status: "running").utf8)) as? [String: Any])
        #expect(object["id"] as? String == "c" && object["pid"] as? Int == 42 && object["status"] as? String == "running")
        #expect(object["bundle"] as? String == "/b" && object["rootfs"] as? String == "/b/rootfs" && object["owner"] as? String == "")
        #expect(object["ociVersion"] as? String == OCIRuntime.ociVersion && object["created"] as? String == "2026-12-06T00:00:00.000Z")
        #expect((object["annotations"] as? [String: String])?["org.swiftlet.kind"] == "hvt")
        let stopped = try #require(JSONSerialization.jsonObject(with: Data(r.stateJSON(status: "stopped").utf8)) as? [String: Any])
        #expect(stopped["pid"] as? Int == 0)
    }

    @Test func ids() {
        for id in ["c1", "a.b_c-d+e", "x"] { #expect(ContainerStore.isValidID(id)) }
        for id in ["", ".", "..", "a/b", "a b", "é"] { #expect(!ContainerStore.isValidID(id), "\(id)") }
    }

    @Test func signals() {
        #expect(OCIRuntime.signal("15") == SIGTERM && OCIRuntime.signal("SIGKILL") == SIGKILL && OCIRuntime.signal("term") == SIGTERM)
        #expect(OCIRuntime.signal("0") == nil && OCIRuntime.signal("SIGFOO") == nil && OCIRuntime.signal("65") == nil)
    }
}
