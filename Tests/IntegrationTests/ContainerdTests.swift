import Foundation
import Synchronization
import Testing

/// Debian's containerd and ctr are installed (.ci/run installs them).
let hasContainerd = FileManager.default.isExecutableFile(atPath: "/usr/bin/containerd") && FileManager.default.isExecutableFile(atPath: "/usr/bin/ctr")

/// `swiftlet oci` driven by the real thing: Debian's containerd (started here with its own root,
/// state and socket) and its runc shim, through `ctr run --runc-binary`, with images built by
/// scripts/oci-image from our test guests and imported with `ctr image import`.
@Suite(.serialized, .enabled(if: Harness.hasKVM && Harness.isRoot && hasContainerd,
                             "needs a usable /dev/kvm, root, and containerd (apt-get install containerd)"))
struct ContainerdTests {
    /// One containerd for the suite, in its own directory, torn down at exit.
    final class Containerd: @unchecked Sendable {
        /// Started on first use.
        static func shared() throws -> Containerd {
            try lock.withLock { current throws -> Containerd in
                if let current { return current }
                let started = try Containerd()
                current = started
                return started
            }
        }
        private static let lock = Mutex<Containerd?>(nil)

        let dir: String
        /// containerd's pid (no child of ours: see `start`).
        private(set) var pid: Int32 = 0
        var socket: String { dir + "/containerd.sock" }
        /// swiftlet-oci: a link to the built swiftlet, which answers to that name.
        var runtime: String { dir + "/bin/swiftlet-oci" }
        let namespace = "swiftlet-test"

        init() throws {
            dir = "/tmp/sldct-\(getpid())"
            try? FileManager.default.removeItem(atPath: dir)
            try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: dir + "/bin/swiftlet-oci", withDestinationPath: Harness.swiftlet)
            try """
                version = 2
                root = "\(dir)/root"
                state = "\(dir)/state"
                disabled_plugins = ["io.containerd.grpc.v1.cri"]
                [grpc]
                  address = "\(dir)/containerd.sock"
                [ttrpc]
                  address = "\(dir)/containerd.sock.ttrpc"
                """.write(toFile: dir + "/config.toml", atomically: true, encoding: .utf8)
            try start()
            atexit { Containerd.stopShared() }
        }

        private func start() throws {
            // Python's Popen closes every inherited descriptor: Foundation watches a child's end
            // through a pipe the child inherits, so a daemon holding it would never let a
            // Harness.run return, nor a shim (containerd's child) let the test stop containerd.
            let started = Harness.run("/usr/bin/python3", ["-c", """
                import subprocess, sys
                log = open(sys.argv[2], "ab")
                p = subprocess.Popen(["/usr/bin/containerd", "--config", sys.argv[1]], stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
                print(p.pid)
                """, dir + "/config.toml", dir + "/containerd.log"])
            pid = Int32(started.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline && ctr(["version"]).status != 0 { usleep(100_000) }
            guard pid > 0, ctr(["version"]).status == 0 else {
                throw HarnessError("containerd did not come up: \((try? String(contentsOfFile: dir + "/containerd.log", encoding: .utf8)) ?? "")")
            }
        }

        static func stopShared() { lock.withLock { $0?.stop() } }

        /// Stops containerd and waits until it has (a zombie counts as gone).
        private func terminate() {
            guard pid > 0 else { return }
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  stat.split(separator: ")").last?.split(separator: " ").first != "Z" { usleep(50_000) }
        }

        func stop() {
            terminate()
            // The snapshotter's mounts go with containerd's directory.
            _ = Harness.run("/bin/sh", ["-c", "grep ' \(dir)/' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l"])
            try? FileManager.default.removeItem(atPath: dir)
        }

        /// Restarts containerd (the shims and their VMs go on).
        func restart() throws {
            terminate()
            try start()
        }

        /// Container directories left under the runtime's root (ours, and runc's below `runc`,
        /// where swiftlet oci hands sandbox containers; that directory itself may stay, as runc's).
        func leftContainers() -> [String] {
            let root = dir + "/runc/\(namespace)"
            let ours = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { $0 != "runc" }
            return ours + ((try? FileManager.default.contentsOfDirectory(atPath: root + "/runc")) ?? []).map { "runc/" + $0 }
        }

        /// The pid of task `id`, from `ctr task ls`.
        func taskPID(_ id: String) -> Int32? {
            for line in ctr(["task", "ls"]).output.split(separator: "\n") {
                let fields = line.split(whereSeparator: \.isWhitespace)
                if fields.count >= 3 && fields[0] == id && fields[2] == "RUNNING" { return Int32(fields[1]) }
            }
            return nil
        }

        func eventually(timeout: Double = 20, _ condition: () -> Bool) -> Bool { Harness.eventually(timeout: timeout, interval: 0.1, condition) }

        func ctr(_ arguments: [String], timeout: Double = 60) -> Harness.Outcome {
            Harness.run("/usr/bin/ctr", ["--address", socket, "--namespace", namespace] + arguments, timeout: timeout)
        }

        /// `ctr run` with our runtime.
        func run(_ arguments: [String], timeout: Double = 60) -> Harness.Outcome {
            ctr(["run", "--runtime", "io.containerd.runc.v2", "--runc-binary", runtime, "--runc-root", dir + "/runc"] + arguments, timeout: timeout)
        }

        /// Builds (once) and imports the image of test guest `guest` (hvt); returns its name.
        func image(_ guest: String, kind: String = "hvt", abi: Int = 2, kernel path: String? = nil, extra: [String] = []) throws -> String {
            let name = "swiftlet/\(guest)-\(kind)\(abi):test"
            let archive = dir + "/\(guest)-\(kind)\(abi).tar"
            if !FileManager.default.fileExists(atPath: archive) {
                let kernel = try path ?? (kind == "hvt" ? Harness.guest(guest, abi: abi) : Harness.pvhGuest(guest))
                let built = Harness.run(Harness.root.appendingPathComponent("scripts/oci-image").path,
                                        ["--kernel", kernel, "--kind", kind, "--name", name, "--out", archive] + extra)
                guard built.status == 0 else { throw HarnessError("oci-image: \(built.output)") }
                let imported = ctr(["image", "import", archive])
                guard imported.status == 0 else { throw HarnessError("ctr image import: \(imported.output)") }
            }
            return "docker.io/" + name
        }
    }

    var containerd: Containerd { get throws { try Containerd.shared() } }

    @Test func helloPrintsAndExitsWithItsStatus() throws {
        let c = try containerd
        let hello = try c.image("hello")
        let r = c.run(["--rm", hello, "hello-\(getpid())", "/unikernel/hello.hvt", "one", "two"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("Hello, world") && r.output.contains("arg[1]=one"), "\(r.output)")
        // A unikernel of hvt ABI 1 (older MirageOS builds) runs the same way.
        let old = try c.image("hello", abi: 1)
        let r1 = c.run(["--rm", old, "hello1-\(getpid())", "/unikernel/hello.hvt", "abi1"])
        #expect(r1.status == 0 && r1.output.contains("Hello, world") && r1.output.contains("arg[1]=abi1"), "\(r1.output)")
        // The guest's exit status is the task's.
        let exit = try c.image("exit")
        let e = c.run(["--rm", exit, "exit-\(getpid())", "/unikernel/exit.hvt", "7"])
        #expect(e.status == 7, "\(e.output)")
        // Nothing is left: no container, no state directory.
        #expect(c.ctr(["containers", "list", "-q"]).output.isEmpty)
        #expect(c.leftContainers().isEmpty)
    }

    /// `ctr run -t`: the runtime sends a pty's master over --console-socket and the VM's console is
    /// its slave (util-linux's script gives ctr the terminal it needs).
    @Test func withATerminalTheConsoleIsThePty() throws {
        let c = try containerd
        let hello = try c.image("hello")
        let command = (["/usr/bin/ctr", "--address", c.socket, "--namespace", c.namespace, "run", "-t", "--rm", "--runtime", "io.containerd.runc.v2",
                        "--runc-binary", c.runtime, "--runc-root", c.dir + "/runc", hello, "tty-\(getpid())", "/unikernel/hello.hvt", "on-a-tty"])
            .joined(separator: " ")
        let r = Harness.run("/usr/bin/script", ["-qec", command, "/dev/null"])
        #expect(r.status == 0 && r.output.contains("Hello, world") && r.output.contains("arg[1]=on-a-tty"), "\(r.output)")
    }

    /// A pod's sandbox (pause) container comes to the RuntimeClass's runtime too; it is no VM, so
    /// swiftlet oci hands it to runc (as urunc does), under a root of its own.
    @Test func aSandboxContainerIsRuncs() throws {
        let c = try containerd
        let source = c.dir + "/pause.c", binary = c.dir + "/pause-static"
        try #"#include <stdio.h>\#nint main(void) { puts("a plain process under runc"); return 4; }\#n"#.write(toFile: source, atomically: true, encoding: .utf8)
        try #require(Harness.run("/usr/bin/gcc", ["-static", "-O2", "-o", binary, source]).status == 0)
        // scripts/oci-image packs any file; the image's Cmd is the file's path in it.
        let image = try c.image("pause", kind: "hvt", kernel: binary)
        let r = c.run(["--rm", "--label", "io.kubernetes.cri.container-type=sandbox", image, "sandbox-\(getpid())"])
        #expect(r.status == 4 && r.output.contains("a plain process under runc"), "\(r.output)")
        // Without the annotation the bundle is taken for what its /swiftlet.json says (an hvt
        // unikernel): the VMM refuses the file, and it never runs as a plain process.
        let refused = c.run(["--rm", image, "plain-\(getpid())"])
        #expect(refused.status != 0 && !refused.output.contains("a plain process under runc"), "\(refused.output)")
    }

    @Test func aLongRunningUnikernelStopsOnTaskKill() throws {
        let c = try containerd
        let idle = try c.image("idle")
        let id = "idle-\(getpid())"
        let run = try Harness.Background("/usr/bin/ctr", ["--address", c.socket, "--namespace", c.namespace, "run", "--rm",
                                                          "--runtime", "io.containerd.runc.v2", "--runc-binary", c.runtime,
                                                          "--runc-root", c.dir + "/runc", idle, id])
        #expect(c.eventually { c.ctr(["task", "ls"]).output.contains("\(id) ") && c.ctr(["task", "ls"]).output.contains("RUNNING") },
                "\(c.ctr(["task", "ls"]).output) \(run.output)")
        // The VM process is the task's: the pid containerd shows runs swiftlet hvt.
        let pid = try #require(c.taskPID(id))
        let commandLine = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
        #expect(commandLine.contains("hvt"), "\(commandLine)")
        #expect(c.ctr(["task", "kill", id]).status == 0)
        // SIGTERM ends a unikernel as it ends solo5-hvt: status 1.
        #expect(run.finish(timeout: 30) == 1, "\(run.output)")
        #expect(c.ctr(["containers", "list", "-q"]).output.isEmpty)
    }

    @Test func aUnikernelsDiskComesFromTheImage() throws {
        let c = try containerd
        let disk = c.dir + "/disk.img"
        FileManager.default.createFile(atPath: disk, contents: Data(count: 64 * 1024))
        let blk = try c.image("blk", extra: ["--file", "\(disk):/data/disk.img", "--annotation", "org.swiftlet.block=/data/disk.img"])
        let r = c.run(["--rm", blk, "blk-\(getpid())"])
        #expect(r.status == 0 && r.output.contains("SUCCESS"), "\(r.output)")
    }

    @Test func aPVHGuestRunsAsALinuxContainer() throws {
        let c = try containerd
        let hello = try c.image("hello", kind: "linux")
        let r = c.run(["--rm", hello, "pvh-\(getpid())"])
        #expect(r.status == 42 && r.output.contains("pvh: hello from a freestanding guest"), "\(r.output)")
    }

    /// CNI's bridge plugin (Debian's containernetworking-plugins) makes the container's namespace
    /// as CRI would, inside a namespace of the test's (the bridge and the 10.99.0.x addresses live
    /// there only); the unikernel takes eth0's address and answers ping from that side.
    @Test func aNetworkedUnikernelAnswersPingThroughCNIsBridge() throws {
        let c = try containerd
        let net = try c.image("net")
        let outer = "sldo-\(getpid())", inner = "sldc-\(getpid())"
        defer { _ = Harness.run("/usr/sbin/ip", ["netns", "del", inner]); _ = Harness.run("/usr/sbin/ip", ["netns", "del", outer]) }
        for ns in [outer, inner] { try #require(Harness.run("/usr/sbin/ip", ["netns", "add", ns]).status == 0) }
        _ = Harness.run("/usr/sbin/ip", ["-n", outer, "link", "set", "lo", "up"])
        let config = """
            {"cniVersion": "1.0.0", "name": "swiftlet-test", "type": "bridge", "bridge": "slcni0", "isGateway": true,
             "ipam": {"type": "host-local", "dataDir": "\(c.dir)/ipam",
                      "ranges": [[{"subnet": "10.99.0.0/24", "rangeStart": "10.99.0.2", "rangeEnd": "10.99.0.2", "gateway": "10.99.0.1"}]]}}
            """
        func cni(_ command: String) -> Harness.Outcome {
            Harness.run("/bin/sh", ["-c", "printf '%s' '\(config)' | CNI_COMMAND=\(command) CNI_CONTAINERID=net-\(getpid()) CNI_NETNS=/var/run/netns/\(inner) CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni ip netns exec \(outer) /usr/lib/cni/bridge"])
        }
        let added = cni("ADD")
        try #require(added.status == 0 && added.output.contains("10.99.0.2"), "\(added.output)")
        defer { _ = cni("DEL") }
        let id = "net-\(getpid())"
        let run = try Harness.Background("/usr/bin/ctr", ["--address", c.socket, "--namespace", c.namespace, "run", "--rm",
                                                          "--runtime", "io.containerd.runc.v2", "--runc-binary", c.runtime,
                                                          "--runc-root", c.dir + "/runc", "--with-ns", "network:/var/run/netns/\(inner)",
                                                          net, id, "/unikernel/net.hvt", "--echoes=3"])
        #expect(run.waitFor("ip=10.99.0.2", timeout: 30), "the guest took eth0's address: \(run.output)")
        let mac = Harness.run("/usr/sbin/ip", ["-n", inner, "-j", "link", "show", "eth0"]).output
        let ping = Harness.run("/usr/sbin/ip", ["netns", "exec", outer, "ping", "-c", "3", "-w", "20", "10.99.0.2"], timeout: 30)
        #expect(ping.status == 0, "\(ping.output)")
        #expect(run.finish(timeout: 30) == 0, "\(run.output)")
        let output = run.output
        #expect(output.contains("SUCCESS"), "\(output)")
        // The guest's MAC is the veth's.
        if let guestMAC = output.split(separator: "\n").first(where: { $0.hasPrefix("mac=") })?.dropFirst(4) {
            #expect(mac.contains(String(guestMAC)), "\(guestMAC) vs \(mac)")
        } else {
            Issue.record("no mac= line: \(output)")
        }
        // The tap and the mirroring went with the container.
        #expect(!Harness.run("/usr/sbin/ip", ["-n", inner, "link"]).output.contains("tap0_swiftlet"))
    }

    @Test func aHundredContainersLeaveNothingBehind() throws {
        let c = try containerd
        let exit = try c.image("exit")
        let before = Harness.run("/bin/sh", ["-c", "grep -c . /proc/mounts"]).output
        DaemonIntegrationTests.parallel(Array(0..<100), width: 4) { i in
            let r = c.run(["--rm", exit, "many-\(getpid())-\(i)", "/unikernel/exit.hvt", "3"])
            #expect(r.status == 3, "\(i): \(r.output)")
        }
        #expect(c.ctr(["containers", "list", "-q"]).output.isEmpty)
        #expect(c.leftContainers().isEmpty)
        #expect(Harness.run("/bin/sh", ["-c", "grep -c . /proc/mounts"]).output == before)
        #expect(Harness.run("/usr/bin/pgrep", ["-f", "exit.hvt 3"]).output.isEmpty)
        // Each container's cgroup (ctr's cgroupsPath is /NAMESPACE/ID) went at delete.
        for parent in ["/sys/fs/cgroup/memory/\(c.namespace)", "/sys/fs/cgroup/pids/\(c.namespace)", "/sys/fs/cgroup/\(c.namespace)"] {
            let left = ((try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []).filter { $0.hasPrefix("many-") }
            #expect(left.isEmpty, "\(parent): \(left)")
        }
        #expect(Harness.run("/usr/bin/pgrep", ["-f", "containerd-shim-runc-v2 -namespace \(c.namespace)"]).output.isEmpty)
    }

    @Test func vmsKeepRunningWhileContainerdRestarts() throws {
        let c = try containerd
        let idle = try c.image("idle")
        let id = "restart-\(getpid())"
        let started = c.run(["-d", idle, id])
        #expect(started.status == 0, "\(started.output)")
        let pid = try #require(c.eventually { c.taskPID(id) != nil } ? c.taskPID(id) : nil, "\(c.ctr(["task", "ls"]).output)")
        try c.restart()
        #expect(kill(pid, 0) == 0, "the VM outlived containerd's restart")
        #expect(c.taskPID(id) == pid, "containerd found it again: \(c.ctr(["task", "ls"]).output)")
        #expect(c.ctr(["task", "kill", "-s", "SIGKILL", id]).status == 0)
        #expect(c.eventually { c.ctr(["task", "ls"]).output.contains("STOPPED") }, "\(c.ctr(["task", "ls"]).output)")
        #expect(c.ctr(["task", "delete", id]).status == 0)
        #expect(c.ctr(["container", "delete", id]).status == 0)
    }
}
