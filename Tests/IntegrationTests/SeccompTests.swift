import Foundation
import Testing

/// The VMM's seccomp filter in a real process: `swiftlet seccomp-check` installs it (after an
/// optional privilege drop) and makes one system call. Forbidden calls must kill the process with
/// SIGSYS (status 128+31); allowed ones survive. Then whole VMs run under it.
@Suite struct SeccompTests {
    static let sigsys: Int32 = 128 + 31

    /// $SWIFTLET_BIN, else the `swiftlet` built next to this test bundle (so a build in another
    /// scratch directory tests its own binary), else the Harness default.
    static let binary: String = {
        if ProcessInfo.processInfo.environment["SWIFTLET_BIN"] != nil { return Harness.swiftlet }
        let sibling = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("swiftlet").path
        return FileManager.default.isExecutableFile(atPath: sibling) ? sibling : Harness.swiftlet
    }()

    static func check(_ args: [String], timeout: Double = 30) -> Harness.Outcome {
        Harness.run(binary, ["seccomp-check"] + args, timeout: timeout)
    }

    @Test(arguments: ["getpid", "socket-unix", "thread"])
    func allowedCallsSurvive(_ probe: String) {
        let r = Self.check([probe])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("survived uid="), "\(r.output)")
    }

    @Test(arguments: ["execve", "socket-inet", "fork", "open", "ptrace", "mprotect-exec", "kill"])
    func forbiddenCallsDieOfSIGSYS(_ probe: String) {
        let r = Self.check([probe])
        #expect(r.status == Self.sigsys, "\(probe): \(r.output)")
        #expect(!r.output.contains("survived"), "\(r.output)")
    }

    // MARK: Per-thread filters

    /// Every probe `seccomp-check` knows.
    static let probes = ["getpid", "socket-unix", "thread", "kvm-ioctl", "terminal-ioctl", "tap-offload-ioctl", "pwrite", "unlink",
                         "execve", "socket-inet", "fork", "open", "ptrace", "mprotect-exec", "kill"]

    /// What a thread of each role may still do (written out here, not read from the policy):
    /// every other probe must kill the process from such a thread, though the process filter
    /// alone lets five of them through (socket-unix, thread, the ioctls, pwrite, unlink).
    static let roleKeeps: [String: Set<String>] = [
        "vcpu": ["getpid", "kvm-ioctl", "tap-offload-ioctl", "pwrite"],
        "device": ["getpid", "kvm-ioctl", "terminal-ioctl", "tap-offload-ioctl", "pwrite", "socket-unix"],
        "api": ["getpid", "kvm-ioctl", "terminal-ioctl", "tap-offload-ioctl"],
    ]

    @Test(arguments: ["vcpu", "device", "api"])
    func eachThreadRoleKeepsItsCallsAndDiesOfTheRest(_ role: String) {
        for probe in Self.probes {
            let r = Self.check(["--thread", role, probe])
            if Self.roleKeeps[role]!.contains(probe) {
                #expect(r.status == 0 && r.output.contains("on a \(role) thread; survived"), "\(role) \(probe): \(r.output)")
            } else {
                #expect(r.status == Self.sigsys, "\(role) \(probe) should die of SIGSYS: \(r.status) \(r.output)")
                #expect(!r.output.contains("survived"), "\(role) \(probe): \(r.output)")
            }
        }
    }

    /// The seccomp filters on each thread of process `pid`, by thread name (several threads may
    /// share one: vcpu0, vcpu1 differ, two `console` threads would not).
    static func filtersByThread(_ pid: Int32) -> [String: [Int]] {
        var result: [String: [Int]] = [:]
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        for tid in tasks {
            guard let comm = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/comm", encoding: .utf8),
                  let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Seccomp_filters:") }),
                  let count = Int(line.split(separator: "\t").last ?? "") else { continue }
            result[comm.trimmingCharacters(in: .whitespacesAndNewlines), default: []].append(count)
        }
        return result
    }

    /// `swiftlet hvt` confines itself as solo5-hvt does, and narrows its vCPU thread further;
    /// `--no-seccomp` and the debugging modules leave it unfiltered (as solo5-hvt-debug).
    @Test(.enabled(if: Harness.hasKVM && Harness.sanitizerArguments.isEmpty, "needs a usable /dev/kvm, and filters (not a sanitizer run)"))
    func hvtTenderThreadsCarryTheirFilters() throws {
        let idle = try Harness.guest("idle")
        for (args, vcpu, main) in [([String](), 2, 1), (["--no-seccomp"], 0, 0), (["--dumpcore=\(Harness.scratch.path)"], 0, 0)] {
            let vm = try Harness.Background(Harness.swiftlet, ["hvt", "--mem=4"] + args + [idle])
            #expect(vm.waitFor("idle: ready"), "\(args): \(vm.output)")
            let filters = Self.filtersByThread(vm.process.processIdentifier)
            #expect(filters["vcpu0"] == [vcpu], "\(args): \(filters)")
            #expect(filters["swiftlet"] == [main], "\(args): \(filters)")
            vm.process.terminate()
            #expect(vm.finish() == 1, "\(args): \(vm.output)")
            if args.first?.hasPrefix("--dumpcore") == true {
                #expect(vm.output.contains("without the seccomp filter"), "\(vm.output)")
            }
        }
    }

    /// `swiftlet run`: both vCPUs and every device thread carry their role's filter on top of the
    /// process's; the thread that waits for the VM has the process filter alone. The disk still
    /// works under them (the guest's check runs in `pvhGuestsWithVirtioDevicesRunUnderTheFilter`).
    @Test(.enabled(if: Harness.hasKVM && Harness.sanitizerArguments.isEmpty, "needs a usable /dev/kvm, and filters (not a sanitizer run)"))
    func linuxVMThreadsCarryTheirFilters() throws {
        let disk = Harness.disk("seccomp-threads.img", size: 1 << 20)
        let vm = try Harness.Background(Harness.swiftlet, ["run", "--kernel", try Harness.pvhGuest("spin"), "--cpus", "2",
                                                           "--memory", "64", "--disk", disk])
        #expect(vm.waitFor("spin: running"), "\(vm.output)")
        let filters = Self.filtersByThread(vm.process.processIdentifier)
        #expect(filters["vcpu0"] == [2] && filters["vcpu1"] == [2], "\(filters)")
        #expect(filters["virtio-blk0"] == [2] && filters["virtio-rng0"] == [2], "\(filters)")
        #expect(filters["silence"] == [2], "\(filters)")
        // The main thread (the full CLI, which the `swiftlet` front runs as swiftlet-cli).
        #expect(filters["swiftlet-cli"] == [1], "\(filters)")
        vm.process.terminate()
        #expect(vm.finish() == 128 + SIGTERM, "\(vm.output)")
    }

    @Test(.enabled(if: Harness.isRoot, "needs root to change uid"))
    func privilegeDropThenFilter() {
        let r = Self.check(["--uid", "65534", "--gid", "65534", "getpid"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("survived uid=65534 gid=65534"), "\(r.output)")
        let open = Self.check(["--uid", "65534", "--gid", "65534", "open"])
        #expect(open.status == Self.sigsys, "\(open.output)")
    }

    @Test func usageErrorsAreOneLine() {
        for args in [["--uid", "1", "getpid"], [], ["no-such-probe"]] {
            let r = Self.check(args)
            #expect(r.status != 0 && r.status != Self.sigsys, "\(args): \(r.output)")
            #expect(r.output.split(separator: "\n").count == 1, "\(args): \(r.output)")
        }
    }

    // MARK: Whole VMs under the filter

    /// A Firecracker config file for `--run-config`.
    static func config(_ kernel: String, drive: String? = nil, cpus: Int = 1, name: String) throws -> String {
        var json = #"{"boot-source": {"kernel_image_path": "\#(kernel)"}, "machine-config": {"vcpu_count": \#(cpus), "mem_size_mib": 128}"#
        if let drive {
            json += #", "drives": [{"drive_id": "storage", "path_on_host": "\#(drive)", "is_root_device": false, "is_read_only": false}]"#
        }
        json += "}"
        let path = Harness.scratch.appendingPathComponent("seccomp-\(name).json").path
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Drops to nobody as well when we are root, as `swiftlet api --uid --gid` would.
    static var dropArgs: [String] { Harness.isRoot ? ["--uid", "65534", "--gid", "65534"] : [] }

    @Test(.enabled(if: Harness.hasKVM, "needs a usable /dev/kvm"))
    func pvhGuestsWithVirtioDevicesRunUnderTheFilter() throws {
        let disk = Harness.disk("seccomp-blk.img", size: 1 << 20)
        let blk = Self.check(Self.dropArgs + ["--run-config", try Self.config(try Harness.pvhGuest("blk"), drive: disk, name: "blk")], timeout: 60)
        #expect(blk.status == 0, "\(blk.output)")
        #expect(blk.output.contains("SUCCESS"), "\(blk.output)")
        try VirtioGuestTests.expectPattern(in: disk, blk.output)

        let rng = Self.check(Self.dropArgs + ["--run-config", try Self.config(try Harness.pvhGuest("rng"), name: "rng")], timeout: 60)
        #expect(rng.status == 0 && rng.output.contains("SUCCESS"), "\(rng.output)")

        // vCPU threads are created after the filter: clone3 → ENOSYS → clone(CLONE_THREAD).
        let smp = Self.check(Self.dropArgs + ["--run-config", try Self.config(try Harness.pvhGuest("hello"), cpus: 2, name: "smp")], timeout: 60)
        #expect(smp.status == 42, "\(smp.output)")
    }

    @Test(.enabled(if: Harness.hasKVM, "needs a usable /dev/kvm"))
    func hvtUnikernelsRunUnderTheFilter() throws {
        let hello = Self.check(Self.dropArgs + ["--run-config", try Self.config(try Harness.guest("hello"), name: "hvt-hello")], timeout: 60)
        #expect(hello.status == 0, "\(hello.output)")
        #expect(hello.output.contains("Hello, world"), "\(hello.output)")

        let disk = Harness.disk("seccomp-hvt-blk.img", size: 1 << 20)
        let blk = Self.check(Self.dropArgs + ["--run-config", try Self.config(try Harness.guest("blk"), drive: disk, name: "hvt-blk")], timeout: 60)
        #expect(blk.status == 0 && blk.output.contains("SUCCESS"), "\(blk.output)")

        let time = Self.check(Self.dropArgs + ["--run-config", try Self.config(try Harness.guest("time"), name: "hvt-time")], timeout: 60)
        #expect(time.status == 0 && time.output.contains("SUCCESS"), "\(time.output)")
    }

    /// An ABI-2 unikernel's network ring under the filter: the I/O thread (started after the
    /// filter), its ioeventfd sleeps and tap I/O, answering ping in a namespace of its own.
    @Test(.enabled(if: Harness.hasKVM && Harness.isRoot && FileManager.default.fileExists(atPath: "/usr/bin/ping"),
                   "needs /dev/kvm, root and ping"))
    func hvtNetworkRingUnderTheFilter() throws {
        let json = #"{"boot-source": {"kernel_image_path": "\#(try Harness.guest("net"))"}, "machine-config": {"vcpu_count": 1, "mem_size_mib": 64}, "network-interfaces": [{"iface_id": "service", "host_dev_name": "tap0"}]}"#
        let config = Harness.scratch.appendingPathComponent("seccomp-hvt-net.json").path
        try json.write(toFile: config, atomically: true, encoding: .utf8)
        try Harness.withTapNamespace { ns in
            let vm = try Harness.Background("/usr/sbin/ip", ["netns", "exec", ns, Self.binary, "seccomp-check"] + Self.dropArgs
                                            + ["--run-config", config])
            #expect(vm.waitFor("net: ready"), "\(vm.output)")
            let p = Harness.run("/usr/sbin/ip", ["netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "5", "10.99.0.2"])
            #expect(p.status == 0, "\(p.output)\n\(vm.output)")
            #expect(vm.finish() == 0, "\(vm.output)")
            #expect(vm.output.contains("net: io=ring") && vm.output.contains("SUCCESS"), "\(vm.output)")
        }
    }

    /// SIGTERM stops a VM under the filter cleanly: sigwait, tgkill kicks, thread joins, exit.
    @Test(.enabled(if: Harness.hasKVM, "needs a usable /dev/kvm"))
    func stopSignalUnderTheFilter() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = ["seccomp-check"] + Self.dropArgs + ["--run-config", try Self.config(try Harness.pvhGuest("spin"), cpus: 2, name: "spin")]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let started = Date()
        var text = ""
        while p.isRunning && Date().timeIntervalSince(started) < 30 && !text.contains("spin: running") {
            text += String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        }
        p.terminate()
        let deadline = Date().addingTimeInterval(20)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        #expect(text.contains("spin: running"), "\(text)")
        #expect(p.terminationReason == .exit && p.terminationStatus == 128 + SIGTERM, "\(p.terminationReason) \(p.terminationStatus)")
    }
}
