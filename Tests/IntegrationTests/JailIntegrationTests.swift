import Foundation
import Testing

/// The jail swiftletd puts every VM process in (docs/jail.md), seen from outside through
/// /proc/PID: an unprivileged user without capabilities, mount/IPC/PID namespaces of its own, a
/// root holding only /dev and the shared vsock directory, cgroup limits; and the VM still works
/// inside (console, a block device, pause/resume, stop).
@Suite(.serialized, .enabled(if: Harness.hasKVM && Harness.isRoot, "needs a usable /dev/kvm and root (swiftletd jails VM processes)"))
struct JailIntegrationTests {
    typealias Daemon = DaemonIntegrationTests.Daemon

    static func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// The fields of a /proc/PID/status line ("Uid:\t0\t0\t0\t0" → ["0", "0", "0", "0"]).
    static func statusField(_ pid: Int32, _ name: String) -> [String] {
        guard let line = text("/proc/\(pid)/status").split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return [] }
        return line.dropFirst(name.count + 1).split(whereSeparator: \.isWhitespace).map(String.init)
    }

    static func namespace(_ pid: String, _ kind: String) -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/\(kind)")) ?? "?"
    }

    /// The cgroup directory of `pid` for v1 `controller` (/proc/PID/cgroup), under /sys/fs/cgroup.
    static func cgroupDirectory(_ pid: Int32, _ controller: String) -> String? {
        for line in text("/proc/\(pid)/cgroup").split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            if controller.isEmpty ? fields[0] == "0" : fields[1].split(separator: ",").contains(Substring(controller)) {
                return "/sys/fs/cgroup" + (controller.isEmpty ? "" : "/" + controller) + fields[2]
            }
        }
        return nil
    }

    static var isCgroupV2: Bool {
        (text("/sys/fs/cgroup/cgroup.controllers").split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })
            .contains("pids")
    }

    @Test func aJailedVMProcessIsConfinedAndItsVMWorks() throws {
        let idle = try Harness.guest("idle")
        let echo = try Harness.pvhGuest("echo")
        let vsockDir = "/tmp/sldit-\(getpid())-jail-vsock"
        try? FileManager.default.removeItem(atPath: vsockDir)
        try FileManager.default.createDirectory(atPath: vsockDir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: vsockDir) }
        let config = """
            vms:
              j:
                kernel: \(idle)
                memory: 2M
              e:
                kernel: \(echo)
                memory: 32M
                cpus: 2
                vsock: "cid=3,uds=\(vsockDir)/v.sock"
            """
        let daemon = try Daemon(config: config, tag: "jail")
        defer { daemon.cleanUp() }
        let started = daemon.ctl(["start", "j"])
        #expect(started.status == 0, "\(started.output) \(daemon.daemonLog)")
        let pid = try #require(daemon.pid("j"))

        // An unprivileged user (the swiftlet user, else nobody), no groups, no capabilities.
        let uids = Self.statusField(pid, "Uid"), gids = Self.statusField(pid, "Gid")
        #expect(uids.count == 4 && !uids.contains("0"), "Uid: \(uids)")
        #expect(gids.count == 4 && !gids.contains("0"), "Gid: \(gids)")
        #expect(Self.statusField(pid, "Groups").isEmpty)
        #expect(Self.statusField(pid, "CapEff") == ["0000000000000000"])
        #expect(Self.statusField(pid, "CapPrm") == ["0000000000000000"])
        // Its own mount, IPC and PID namespaces; it is pid 1 in the last.
        for kind in ["mnt", "ipc", "pid"] {
            #expect(Self.namespace("\(pid)", kind) != Self.namespace("self", kind), "\(kind) namespace")
        }
        #expect(Self.statusField(pid, "NSpid") == ["\(pid)", "1"])
        // Its root holds only a minimal /dev.
        let root = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/root").sorted()
        #expect(root == ["dev"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/root/dev").sorted() == ["kvm", "null", "urandom"])
        // Its cgroup limits: guest memory + the VMM's overhead (128 MiB), 1 CPU, 1 + 64 tasks.
        if Self.isCgroupV2 {
            let cg = try #require(Self.cgroupDirectory(pid, ""))
            #expect(cg.hasSuffix("/swiftlet/j"))
            #expect(Self.text(cg + "/memory.max") == "\((2 + 128) << 20)\n")
            #expect(Self.text(cg + "/pids.max") == "65\n")
            #expect(Self.text(cg + "/cpu.max") == "100000 100000\n")
        } else {
            let memory = try #require(Self.cgroupDirectory(pid, "memory"))
            #expect(memory.hasSuffix("/swiftlet/j"))
            #expect(Self.text(memory + "/memory.limit_in_bytes") == "\((2 + 128) << 20)\n")
            let pids = try #require(Self.cgroupDirectory(pid, "pids"))
            #expect(Self.text(pids + "/pids.max") == "65\n")
            let cpu = try #require(Self.cgroupDirectory(pid, "cpu"))
            #expect(Self.text(cpu + "/cpu.cfs_quota_us") == "100000\n")
        }

        // Signals from the daemon reach it: pause, resume, stop.
        #expect(daemon.ctl(["pause", "j"]).output == "j: paused\n")
        #expect(daemon.ctl(["resume", "j"]).output == "j: running\n")
        let cgroupDir = Self.isCgroupV2 ? Self.cgroupDirectory(pid, "") : Self.cgroupDirectory(pid, "memory")
        let stopped = daemon.ctl(["stop", "j", "--wait"])
        #expect(stopped.status == 0, "\(stopped.output)")
        #expect(daemon.state("j") == "stopped")
        #expect(daemon.status()["j"]?["exit_status"] as? Int == 143, "SIGTERM stopped it cleanly (128 + 15)")
        // What the jail left is gone: its cgroup and its directory.
        if let cgroupDir { #expect(!FileManager.default.fileExists(atPath: cgroupDir), "\(cgroupDir) removed") }
        #expect(!FileManager.default.fileExists(atPath: daemon.stateDir + "/j.jail"))

        // A PVH guest with two vCPUs, a console and vsock: the socket's directory is shared.
        #expect(daemon.ctl(["start", "e"]).status == 0)
        let epid = try #require(daemon.pid("e"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: "/proc/\(epid)/root").sorted() == ["dev", "tmp"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: "/proc/\(epid)/root" + vsockDir) == ["v.sock"])
        let console = daemon.ctl(["console", "e", "--timeout", "20"], input: "inside\nquit\n", timeout: 30)
        #expect(console.status == 0 && console.output.contains("got: inside"), "\(console.output)")
        #expect(daemon.wait("e", for: "stopped"))
    }

    /// A VM definition's extension (`ctl start --extension`) is started by the VM process and
    /// joins its jail: the PID, mount and IPC namespaces, the root, the user and the cgroup.
    @Test func aJailedVMsExtensionIsInsideItsJail() throws {
        let daemon = try Daemon(config: "vms: {}\n", tag: "extjail")
        defer { daemon.cleanUp() }
        let program = Harness.root.appendingPathComponent("examples/extensions/increment.py").path
        let started = daemon.ctl(["start", "x", "--kernel", try Harness.pvhGuest("ext"), "--memory", "32M", "--extension", program])
        #expect(started.status == 0, "\(started.output) \(daemon.daemonLog)")
        let pid = try #require(daemon.pid("x"))
        #expect(daemon.eventually { daemon.ctl(["logs", "x"]).output.contains("ext: loop") }, "\(daemon.ctl(["logs", "x"]).output)")
        let children = Harness.run("/usr/bin/pgrep", ["-P", String(pid)])
        let ext = try #require(Int32(children.output.split(separator: "\n").first ?? ""), "no extension process: \(children.output)")
        for kind in ["mnt", "ipc", "pid"] {
            #expect(Self.namespace("\(ext)", kind) == Self.namespace("\(pid)", kind), "\(kind) namespace")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: "/proc/\(ext)/root") == ["dev"])
        #expect(Self.statusField(ext, "Uid") == Self.statusField(pid, "Uid"))
        #expect(Self.statusField(ext, "Seccomp") == ["2"])
        let controller = Self.isCgroupV2 ? "" : "memory"
        let cgroup = try #require(Self.cgroupDirectory(pid, controller))
        #expect(Self.cgroupDirectory(ext, controller) == cgroup, "the extension is in the VM's cgroup")
        // Its death fails its device only; the guest sees all ones and ends (status 0).
        kill(ext, SIGKILL)
        #expect(daemon.wait("x", for: "stopped", timeout: 30))
        #expect(daemon.status()["x"]?["exit_status"] as? Int == 0, "\(daemon.ctl(["logs", "x"]).output)")
        #expect(daemon.ctl(["logs", "x"]).output.contains("ext: all ones after the failure"))
        #expect(!FileManager.default.fileExists(atPath: cgroup), "\(cgroup) removed")
        // A definition's extension must be a whole path to an executable, checked up front.
        let relative = daemon.ctl(["start", "y", "--kernel", try Harness.pvhGuest("ext"), "--extension", "/nonexistent/ext"])
        #expect(relative.status != 0 && relative.output.contains("not an absolute path to an executable file"), "\(relative.output)")
    }

    @Test func aJailedUnikernelReadsAndWritesItsDisk() throws {
        let disk = Harness.disk("jail-blk.img", size: 64 << 10)
        let config = "vms:\n  b:\n    kernel: \(try Harness.guest("blk"))\n    memory: 4M\n    disks: [\"\(disk),id=storage\"]\n"
        let daemon = try Daemon(config: config, tag: "jailblk")
        defer { daemon.cleanUp() }
        let started = daemon.ctl(["start", "b"])
        #expect(started.status == 0, "\(started.output)")
        #expect(daemon.wait("b", for: "stopped"))
        #expect(daemon.status()["b"]?["exit_status"] as? Int == 0)
        let logs = daemon.ctl(["logs", "b"]).output
        #expect(logs.contains("capacity=65536 block_size=512") && logs.contains("SUCCESS"), "\(logs)")
        let data = try Data(contentsOf: URL(fileURLWithPath: disk))
        #expect(data.prefix(4096).contains { $0 != 0 }, "the guest's writes reached the file")
    }

    @Test func noJailKeepsTheOldWay() throws {
        let daemon = try Daemon(config: "jail: false\n" + (try DaemonIntegrationTests.idleConfig(["n"])), tag: "nojail")
        defer { daemon.cleanUp() }
        #expect(daemon.ctl(["start", "n"]).status == 0)
        let pid = try #require(daemon.pid("n"))
        #expect(Self.namespace("\(pid)", "mnt") == Self.namespace("self", "mnt"))
        #expect(Self.statusField(pid, "Uid").first == "0")
        #expect(daemon.ctl(["stop", "n", "--wait"]).status == 0)
    }

    @Test func foregroundRunsTakeJailToo() throws {
        let base = "/tmp/sldit-\(getpid())-fgjail"
        try? FileManager.default.removeItem(atPath: base)
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        // A unikernel's console output and a PVH guest's exit status, jailed.
        let hello = Harness.run(Harness.swiftlet, ["hvt", "--jail=\(base)/h", try Harness.guest("hello"), "x"])
        #expect(hello.status == 0 && hello.output.contains("Hello, world") && hello.output.contains("arg[1]=x"), "\(hello.output)")
        let pvh = Harness.run(Harness.swiftlet, ["run", "--jail", "\(base)/p", "--kernel", try Harness.pvhGuest("hello"), "--memory", "32M"])
        #expect(pvh.status == 42, "\(pvh.output)")
        // The running process: unprivileged, its own mount namespace, a root holding /dev only.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Harness.swiftlet)
        p.arguments = ["hvt", "--jail=\(base)/i", try Harness.guest("idle")]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) }; p.waitUntilExit() }
        let pid = p.processIdentifier
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline && (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/root")) != ["dev"] { usleep(20_000) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/root") == ["dev"])
        #expect(!Self.statusField(pid, "Uid").contains("0"))
        #expect(Self.statusField(pid, "CapEff") == ["0000000000000000"])
        #expect(Self.namespace("\(pid)", "mnt") != Self.namespace("self", "mnt"))
        kill(pid, SIGTERM)
        p.waitUntilExit()
        #expect(p.terminationStatus == 1, "a stop signal ends it as it ends solo5-hvt (status 1)")
        let relative = Harness.run(Harness.swiftlet, ["run", "--jail", "rel", "--kernel", "/x"])
        #expect(relative.status == 1 && relative.output.contains("--jail must be an absolute path"), "\(relative.output)")
        #expect(relative.output.split(separator: "\n").count == 1)
    }
}
