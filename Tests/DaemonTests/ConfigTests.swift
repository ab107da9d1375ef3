import Daemon
import DaemonProtocol
import VMSpec
import Foundation
import Testing

/// The config file: strict keys, value checks, and errors that name the line.
@Suite struct ConfigTests {
    /// Files the definitions refer to (they must exist).
    static let dir: String = {
        let d = NSTemporaryDirectory() + "swiftletd-config-\(getpid())"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        for f in ["vmlinuz", "initrd.img", "web.img", "data.img"] { _ = FileManager.default.createFile(atPath: "\(d)/\(f)", contents: Data()) }
        return d
    }()

    static var example: String {
        """
        # /etc/swiftlet/swiftletd.yaml
        state_dir: /run/swiftlet        # optional
        user: nobody
        vms:
          web:
            kernel: \(dir)/vmlinuz
            initrd: \(dir)/initrd.img
            cmdline: "console=ttyS0 reboot=k panic=-1"
            memory: 256M
            cpus: 2
            disks: ["\(dir)/web.img", "\(dir)/data.img,readonly"]
            networks: ["tap=tap-web,mac=02:00:00:00:00:01"]
            vsock: "cid=3,uds=/run/web.vsock"
            autostart: true
          tiny:
            kernel: \(dir)/vmlinuz
            memory: 2
        """
    }

    func parse(_ text: String) throws(DaemonError) -> DaemonConfig {
        try DaemonConfig.parse(yaml: text, name: "swiftletd.yaml")
    }

    /// The error message of parsing `text` (or "no error").
    func error(_ text: String) -> String {
        do { _ = try parse(text); return "no error" } catch { return error.message }
    }

    @Test func theExampleParses() throws {
        let c = try parse(Self.example)
        #expect(c.stateDir == "/run/swiftlet")
        #expect(c.user == "nobody")
        #expect(c.uid != nil && c.gid != nil)
        let web = try #require(c.vms["web"])
        #expect(web.kernel == "\(Self.dir)/vmlinuz")
        #expect(web.initrd == "\(Self.dir)/initrd.img")
        #expect(web.cmdline == "console=ttyS0 reboot=k panic=-1")
        #expect(web.memoryMiB == 256)
        #expect(web.cpus == 2)
        #expect(web.disks.map(\.path) == ["\(Self.dir)/web.img", "\(Self.dir)/data.img"])
        #expect(web.disks.map(\.readOnly) == [false, true])
        #expect(web.diskIDs == ["disk0", "disk1"])
        #expect(web.networks == [VMDefinition.Network(tap: "tap-web", mac: MACAddress("02:00:00:00:00:01"))])
        #expect(web.networkIDs == ["net0"])
        #expect(web.vsock == VMDefinition.Vsock(cid: 3, uds: "/run/web.vsock"))
        #expect(web.autostart)
        let tiny = try #require(c.vms["tiny"])
        #expect(tiny.memoryMiB == 2 && tiny.cpus == 1 && !tiny.autostart && tiny.cmdline == nil && tiny.disks.isEmpty)
    }

    @Test func emptyFileHasNoVMs() throws {
        #expect(try parse("").vms.isEmpty)
        #expect(try parse("# nothing\n").vms.isEmpty)
        #expect(try parse("vms:\n").vms.isEmpty)
    }

    @Test func unknownKeysAreNamedWithTheirLine() {
        #expect(error("state_dir: /run/x\nvms: {}\nverbose: true\n") ==
            "swiftletd.yaml: line 3: verbose: unknown key 'verbose' (known keys: state_dir, user, jail, vms)")
        let typo = Self.example.replacingOccurrences(of: "    cpus: 2", with: "    cpu: 2")
        #expect(error(typo).hasPrefix("swiftletd.yaml: line 10: vms.web.cpu: unknown key 'cpu' (known keys: kernel, "))
    }

    @Test func syntaxErrorNamesTheLine() {
        let text = "vms:\n  web:\n    kernel: /x\n    memory: [256M\n    cpus: 1\n"
        let message = error(text)
        #expect(message.hasPrefix("swiftletd.yaml: line "), "\(message)")
        #expect(!message.contains("\n"))
        let tab = "vms:\n  web:\n\tkernel: /x\n"
        #expect(error(tab).hasPrefix("swiftletd.yaml: line 3: "), "\(error(tab))")
        let colon = "vms:\n  web:\n    kernel: a: b\n"
        #expect(error(colon).hasPrefix("swiftletd.yaml: line 3: "), "\(error(colon))")
    }

    @Test(arguments: [
        ("cpus: 0", "line 4: vms.a.cpus: 0 is out of range (1 to 255)"),
        ("cpus: 256", "line 4: vms.a.cpus: 256 is out of range (1 to 255)"),
        ("cpus: two", "line 4: vms.a.cpus: 'two' is not a number of vCPUs (1 to 255)"),
        ("memory: 0", "line 4: vms.a.memory: '0' is not a memory size"),
        ("memory: 1.5G", "line 4: vms.a.memory: '1.5G' is not a memory size"),
        ("memory: 100K", "line 4: vms.a.memory: '100K' is not a memory size"),
        ("memory: 2T", "line 4: vms.a.memory: '2T' is not a memory size"),
        ("memory: -5", "line 4: vms.a.memory: '-5' is not a memory size"),
        ("disks: [\"/nonexistent/disk.img\"]", "line 4: vms.a.disks[0]: /nonexistent/disk.img: no such file"),
        ("disks: \"/x\"", "line 4: vms.a.disks: expected a list"),
        ("networks: [\"tap=\"]", "line 4: vms.a.networks[0]: 'tap=' is not tap=NAME"),
        ("networks: [\"tap=t0,mac=01:00:00:00:00:01\"]", "line 4: vms.a.networks[0]: 'tap=t0,mac=01:00:00:00:00:01' is not tap=NAME"),
        ("networks: [\"tap=a-very-long-tap-name\"]", "line 4: vms.a.networks[0]: 'tap=a-very-long-tap-name' is not"),
        ("vsock: \"cid=2,uds=/x\"", "line 4: vms.a.vsock: 'cid=2,uds=/x' is not cid=N,uds=PATH"),
        ("autostart: maybe", "line 4: vms.a.autostart: expected true or false"),
        ("initrd: /nonexistent/initrd", "line 4: vms.a.initrd: /nonexistent/initrd: no such file"),
    ])
    func badValues(line: String, expected: String) {
        let text = "vms:\n  a:\n    kernel: \(Self.dir)/vmlinuz\n    \(line)\n"
        let message = error(text)
        #expect(message.hasPrefix("swiftletd.yaml: " + expected), "\(message)")
        #expect(!message.contains("\n"))
    }

    @Test func missingOrBadKernel() {
        #expect(error("vms:\n  a:\n    memory: 64M\n") == "swiftletd.yaml: line 2: vms.a: missing key 'kernel'")
        #expect(error("vms:\n  a:\n    kernel: /nonexistent/vmlinuz\n") == "swiftletd.yaml: line 3: vms.a.kernel: /nonexistent/vmlinuz: no such file")
        #expect(error("vms:\n  a:\n    kernel: \(Self.dir)\n").hasSuffix(": is a directory, not a regular file"))
        // The files the VM process would refuse, refused when the definition is read (one rule,
        // Host.ImageFile, for both): a FIFO or a device as kernel, initrd or disk.
        #expect(error("vms:\n  a:\n    kernel: /dev/zero\n").hasSuffix("vms.a.kernel: /dev/zero: is a character device, not a regular file"))
        let fifo = Self.dir + "/definition.fifo"
        unlink(fifo)
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        #expect(error("vms:\n  a:\n    kernel: \(Self.dir)/vmlinuz\n    disks: [\"\(fifo)\"]\n").hasSuffix("vms.a.disks[0]: \(fifo): is a FIFO, not a regular file or block device"))
    }

    @Test func badNamesAndShapes() {
        #expect(error("vms:\n  \"a b\":\n    kernel: \(Self.dir)/vmlinuz\n").hasPrefix("swiftletd.yaml: line 2: vms.a b: 'a b' is not a VM name"))
        let long = String(repeating: "x", count: 65)
        #expect(error("vms:\n  \(long):\n    kernel: \(Self.dir)/vmlinuz\n").contains("is not a VM name"))
        #expect(error("vms: [a, b]\n").hasPrefix("swiftletd.yaml: line 1: vms: expected a mapping"), "\(error("vms: [a, b]\n"))")
        #expect(error("just a string\n") == "swiftletd.yaml: line 1: expected a mapping (state_dir, user, jail, vms)")
        #expect(error("state_dir: relative/dir\n") == "swiftletd.yaml: line 1: state_dir: 'relative/dir' must be an absolute path")
        #expect(error("user: no-such-user-here\n") == "swiftletd.yaml: line 1: user: no such user 'no-such-user-here'")
    }

    /// Found by the daemon-config fuzz target: Yams reads an integer scalar with a colon as YAML
    /// 1.1's base 60 and traps when it overflows; and values with line breaks made errors of
    /// several lines.
    @Test func base60NumbersAndLineBreaksGetOneLine() {
        let sixty = Array(repeating: "1", count: 12).joined(separator: ":")
        #expect(error("vms:\n  a:\n    kernel: \(Self.dir)/vmlinuz\n    memory: \(sixty)\n")
                == "swiftletd.yaml: line 4: vms.a.memory: '\(sixty)' is not a memory size of 1 MiB to 1 TiB in whole MiB (e.g. 256M, 2G, or a number of MiB)")
        #expect(error("vms:\n  a:\n    kernel: \(Self.dir)/vmlinuz\n    cpus: \(sixty)\n")
                == "swiftletd.yaml: line 4: vms.a.cpus: '\(sixty)' is not a number of vCPUs (1 to 255)")
        #expect(error("state_dir: \"run\\nswiftlet\"\n") == #"swiftletd.yaml: line 1: state_dir: 'run\x0Aswiftlet' must be an absolute path"#)
        #expect(error("user: \"no\\nbody\"\n") == #"swiftletd.yaml: line 1: user: no such user 'no\x0Abody'"#)
        #expect(error("vms:\n  a:\n    kernel: \"/no\\nsuch\"\n") == #"swiftletd.yaml: line 3: vms.a.kernel: /no\x0Asuch: no such file"#)
        #expect(!error("\"unknown\\nkey\": 1\n").contains("\n"))
    }

    @Test func deviceIDs() throws {
        let d = Self.dir
        let c = try parse("vms:\n  u:\n    kernel: \(d)/vmlinuz\n    disks: [\"\(d)/web.img,id=storage\", \"\(d)/data.img,ro,root\"]\n    networks: [\"tap=t0,id=service\", \"tap=t1\"]\n")
        let u = try #require(c.vms["u"])
        #expect(u.diskIDs == ["storage", "disk1"])
        #expect(u.disks[1].readOnly && u.disks[1].root)
        #expect(u.networkIDs == ["service", "net1"])
        let twice = "vms:\n  u:\n    kernel: \(d)/vmlinuz\n    disks: [\"\(d)/web.img,id=x\", \"\(d)/data.img,id=x\"]\n"
        #expect(error(twice) == "swiftletd.yaml: line 4: vms.u.disks: device id 'x' is used twice")
    }

    @Test func memorySizes() throws {
        for (text, mib) in [("256M", 256), ("2G", 2048), ("4096K", 4), ("64", 64), ("1m", 1), ("1024G", 1 << 20)] {
            let c = try parse("vms:\n  a:\n    kernel: \(Self.dir)/vmlinuz\n    memory: \(text)\n")
            #expect(c.vms["a"]?.memoryMiB == mib, "\(text)")
        }
    }

    @Test func jsonDefinitionIsStrictToo() throws {
        let good = #"{"kernel": "\#(Self.dir)/vmlinuz", "memory": "4M", "cpus": 1, "disks": ["\#(Self.dir)/web.img,id=storage"]}"#
        let d = try JSONDecoder().decode(VMDefinition.self, from: Data(good.utf8))
        #expect(d.memoryMiB == 4 && d.diskIDs == ["storage"])
        let unknown = #"{"kernel": "\#(Self.dir)/vmlinuz", "mem": 4}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(VMDefinition.self, from: Data(unknown.utf8)) }
        let number = #"{"kernel": "\#(Self.dir)/vmlinuz", "memory": 64}"#
        #expect(try JSONDecoder().decode(VMDefinition.self, from: Data(number.utf8)).memoryMiB == 64)
    }

    @Test func definitionRoundTripsThroughJSON() throws {
        let c = try parse(Self.example)
        let web = try #require(c.vms["web"])
        let data = try JSONEncoder().encode(web)
        #expect(try JSONDecoder().decode(VMDefinition.self, from: data) == web)
    }

    @Test func loadNamesAMissingFile() {
        do {
            _ = try DaemonConfig.load(path: "/nonexistent/swiftletd.yaml")
            Issue.record("no error")
        } catch {
            #expect(error.message == "/nonexistent/swiftletd.yaml: no such file")
        }
    }

    @Test func stateDirectoryLength() {
        #expect(throws: DaemonError.self) { try VMPaths.checkDirectory("/" + String(repeating: "d", count: 60)) }
        #expect(throws: Never.self) { try VMPaths.checkDirectory("/run/swiftlet") }
    }
}

/// examples/swiftletd.yaml parses to the two VMs examples/README.md describes (its guest paths
/// moved to a scratch directory holding empty files, since definitions must name existing files).
@Suite struct ExampleDaemonConfigTests {
    @Test func theExampleConfigParses() throws {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: repository.appendingPathComponent("examples/swiftletd.yaml"), encoding: .utf8)
        let dir = NSTemporaryDirectory() + "swiftletd-example-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for file in ["demo.hvt", "vmlinuz", "initrd.img"] { _ = FileManager.default.createFile(atPath: "\(dir)/\(file)", contents: Data()) }
        let config = try DaemonConfig.parse(yaml: text.replacingOccurrences(of: "/tmp/swiftlet-examples", with: dir), name: "swiftletd.yaml")
        #expect(config.stateDir == "/run/swiftlet")
        #expect(config.vms.keys.sorted() == ["debian", "demo"])
        let demo = try #require(config.vms["demo"])
        #expect(demo.kernel == "\(dir)/demo.hvt" && demo.cmdline == "hello from swiftletd" && demo.memoryMiB == 32 && demo.autostart)
        let debian = try #require(config.vms["debian"])
        #expect(debian.initrd == "\(dir)/initrd.img" && debian.memoryMiB == 256 && debian.cpus == 2 && !debian.autostart)
    }
}
