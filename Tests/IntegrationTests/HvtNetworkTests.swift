import Foundation
import Testing

/// The `net` guest answers ARP and ping through a tap inside a network namespace this test
/// creates (and deletes); nothing leaves the namespace.
@Suite(.enabled(if: Harness.hasKVM && Harness.isRoot && FileManager.default.fileExists(atPath: "/usr/bin/ping"),
                "needs /dev/kvm, root, iproute2 and ping"))
struct HvtNetworkTests {
    @Test func pingThroughTap() throws {
        let ns = "swlt\(getpid() % 100000)"
        func ip(_ args: String...) -> Harness.Outcome { Harness.run("/usr/sbin/ip", args, timeout: 20) }
        _ = ip("netns", "del", ns)
        #expect(ip("netns", "add", ns).status == 0)
        defer { _ = ip("netns", "del", ns) }
        #expect(ip("netns", "exec", ns, "ip", "tuntap", "add", "tap0", "mode", "tap").status == 0)
        #expect(ip("netns", "exec", ns, "ip", "addr", "add", "10.99.0.1/24", "dev", "tap0").status == 0)
        #expect(ip("netns", "exec", ns, "ip", "link", "set", "tap0", "up").status == 0)

        let guest = try Harness.guest("net")
        let vm = Process()
        vm.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        vm.arguments = ["netns", "exec", ns, Harness.swiftlet, "hvt", "--net:service=tap0", "--net-mac:service=02:5e:00:00:00:02", guest]
        // Output to a file, read while it runs: ping once the guest says it listens.
        let log = Harness.scratch.appendingPathComponent("hvt-net-\(getpid()).log").path
        FileManager.default.createFile(atPath: log, contents: nil)
        defer { unlink(log) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        vm.standardOutput = handle
        vm.standardError = handle
        try vm.run()
        try handle.close()
        func output() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        let ready = Date().addingTimeInterval(20)
        while vm.isRunning && Date() < ready && !output().contains("net: ready") { usleep(10_000) }
        let ping = Harness.run("/usr/sbin/ip", ["netns", "exec", ns, "ping", "-c", "3", "-i", "0.3", "-W", "5", "10.99.0.2"], timeout: 60)
        let deadline = Date().addingTimeInterval(40)
        while vm.isRunning && Date() < deadline { usleep(10_000) }
        if vm.isRunning { vm.terminate() }
        vm.waitUntilExit()
        let output = output()
        #expect(ping.status == 0, "ping: \(ping.output)\nguest: \(output)")
        #expect(output.contains("mac=02:5e:00:00:00:02"), "\(output)")
        #expect(output.contains("SUCCESS"), "\(output)")
        #expect(vm.terminationStatus == 0)
    }
}
