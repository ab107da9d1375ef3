import Foundation
import Testing

/// `swiftlet run --net tap=tap0` with the freestanding PVH `net` guest (guests/pvh/net.c, a
/// polling virtio-net driver negotiating VERSION_1 and MAC only): ping through a tap inside a
/// network namespace this test creates (and deletes), and the guest's `tx` mode counted on the
/// tap. Nothing leaves the namespace.
@Suite(.enabled(if: Harness.hasKVM && Harness.isRoot
                    && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")
                    && FileManager.default.isExecutableFile(atPath: "/usr/bin/ping"),
                "needs a usable /dev/kvm, root (for a network namespace and a tap), /usr/sbin/ip and /usr/bin/ping"))
struct VirtioNetGuestTests {
    static func ip(_ args: String...) -> Harness.Outcome { Harness.run("/usr/sbin/ip", args, timeout: 20) }

    /// A namespace with tap0 = 10.99.1.1/24, up; `body` runs with its name; deleted afterwards.
    static func withNamespace(_ tag: String, _ body: (String) throws -> Void) throws {
        let ns = "swvn\(tag)\(getpid() % 100000)"
        _ = ip("netns", "del", ns)
        let add = ip("netns", "add", ns)
        try #require(add.status == 0, "ip netns add: \(add.output)")
        defer { _ = ip("netns", "del", ns) }
        for args in [["ip", "tuntap", "add", "tap0", "mode", "tap"],
                     ["ip", "addr", "add", "10.99.1.1/24", "dev", "tap0"],
                     ["ip", "link", "set", "tap0", "up"]] {
            let r = Harness.run("/usr/sbin/ip", ["netns", "exec", ns] + args, timeout: 20)
            try #require(r.status == 0, "\(args.joined(separator: " ")): \(r.output)")
        }
        try body(ns)
    }

    /// Starts swiftlet in `ns` with output to a file; returns the process and the file.
    static func start(_ ns: String, cmdline: String?) throws -> (Process, URL) {
        let out = Harness.scratch.appendingPathComponent("vnet-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        let handle = try FileHandle(forWritingTo: out)
        let vm = Process()
        vm.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        var args = ["netns", "exec", ns, Harness.swiftlet, "run", "--kernel", try Harness.pvhGuest("net"),
                    "--net", "tap=tap0,mac=02:5e:00:00:01:02"]
        if let cmdline { args += ["--cmdline", cmdline] }
        vm.arguments = args
        vm.standardOutput = handle
        vm.standardError = handle
        try vm.run()
        try handle.close()
        return (vm, out)
    }

    static func output(_ file: URL) -> String { (try? String(contentsOf: file, encoding: .utf8)) ?? "" }

    static func finish(_ vm: Process, within seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        while vm.isRunning && Date() < deadline { usleep(10_000) }
        if vm.isRunning { vm.terminate() }
        vm.waitUntilExit()
    }

    @Test func pingThroughTap() throws {
        try Self.withNamespace("p") { ns in
            let (vm, log) = try Self.start(ns, cmdline: nil)
            // Wait for the driver to post its receive buffers before the first ARP request.
            let ready = Date().addingTimeInterval(20)
            while vm.isRunning && Date() < ready && !Self.output(log).contains("net: ready") { usleep(20_000) }
            let ping = Harness.run("/usr/sbin/ip", ["netns", "exec", ns, "ping", "-c", "3", "-i", "0.3", "-W", "5", "10.99.1.2"],
                                   timeout: 60)
            Self.finish(vm, within: 40)
            let output = Self.output(log)
            #expect(ping.status == 0, "ping: \(ping.output)\nguest: \(output)")
            #expect(output.contains("net: mac=02:5e:00:00:01:02 ip=10.99.1.2"), "\(output)")
            #expect(output.contains("arp: replied to 10.99.1.1"), "\(output)")
            #expect(output.contains("SUCCESS"), "\(output)")
            #expect(vm.terminationStatus == 0, "\(output)")
        }
    }

    @Test func transmittedFramesReachTheTap() throws {
        try Self.withNamespace("t") { ns in
            func rxPackets() -> Int {
                let r = Harness.run("/usr/sbin/ip", ["netns", "exec", ns, "cat", "/sys/class/net/tap0/statistics/rx_packets"])
                return Int(r.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
            }
            let before = rxPackets()
            let (vm, log) = try Self.start(ns, cmdline: "tx 500 len=1000")
            Self.finish(vm, within: 60)
            let output = Self.output(log)
            #expect(vm.terminationStatus == 0, "\(output)")
            #expect(output.contains("tx: frames=500 bytes=500000"), "\(output)")
            // 500 UDP frames plus the ARP request that resolved 10.99.1.1.
            let after = rxPackets()
            #expect(after - before >= 501, "tap rx_packets \(before) -> \(after)\n\(output)")
        }
    }
}
