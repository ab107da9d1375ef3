import Foundation
import Testing

/// A drive marked read-only stays byte-identical and the guest's write fails, through every door
/// that can mark one: Firecracker's config file, the API's `is_read_only`, swiftletd's
/// `disks: PATH,readonly` and `swiftlet run --disk PATH,readonly` (PVH only: `swiftlet run` boots
/// Linux and PVH kernels; hvt unikernels run under `swiftlet hvt`, which, like solo5-hvt, has no
/// read-only flag). The hvt guest sees its block write fail (SOLO5_R_EUNSPEC), the PVH guest
/// VIRTIO_BLK_S_IOERR.
@Suite(.enabled(if: Harness.hasKVM, "needs /dev/kvm"))
struct ReadOnlyDriveTests {
    enum Guest: String, CaseIterable { case hvt, pvh }

    /// A disk with a pattern the guest would overwrite, and its bytes.
    func disk(_ name: String) throws -> (path: String, bytes: Data) {
        let path = Harness.scratch.appendingPathComponent("ro-\(name)-\(UUID().uuidString).img").path
        let bytes = Data((0..<(64 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) })
        try bytes.write(to: URL(fileURLWithPath: path))
        return (path, bytes)
    }

    func kernel(_ guest: Guest) throws -> String { guest == .hvt ? try Harness.guest("blk") : try Harness.pvhGuest("blk") }
    /// The drive id: the hvt manifest's device name; any id for PVH.
    func driveID(_ guest: Guest) -> String { guest == .hvt ? "storage" : "data" }
    func memoryMiB(_ guest: Guest) -> Int { guest == .hvt ? 4 : 64 }

    func expectRefused(_ guest: Guest, output: String, status: Int32?, disk: (path: String, bytes: Data),
                       sourceLocation: SourceLocation = #_sourceLocation) {
        let refusal = guest == .hvt ? "blk: write refused (ret 3)" : "blk: write refused with IOERR"
        #expect(output.contains(refusal) && output.contains("SUCCESS"), "\(output)", sourceLocation: sourceLocation)
        #expect(status == 0, "\(output)", sourceLocation: sourceLocation)
        #expect((try? Data(contentsOf: URL(fileURLWithPath: disk.path))) == disk.bytes, "the read-only disk changed",
                sourceLocation: sourceLocation)
    }

    @Test(arguments: Guest.allCases)
    func configFile(_ guest: Guest) throws {
        let d = try disk("cfg-\(guest)")
        let dir = try APIServer.directory("ro-cfg-\(guest)")
        let path = dir + "/vm.json"
        try """
            {"boot-source": {"kernel_image_path": "\(try kernel(guest))", "boot_args": "ro"},
             "machine-config": {"vcpu_count": 1, "mem_size_mib": \(memoryMiB(guest))},
             "drives": [{"drive_id": "\(driveID(guest))", "path_on_host": "\(d.path)", "is_root_device": false, "is_read_only": true}]}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let r = Harness.run(Harness.swiftlet, ["api", "--api-sock", dir + "/a.sock", "--config-file", path], timeout: 60)
        expectRefused(guest, output: r.output, status: r.status, disk: d)
    }

    @Test(arguments: Guest.allCases)
    func api(_ guest: Guest) throws {
        let d = try disk("api-\(guest)")
        let dir = try APIServer.directory("ro-api-\(guest)")
        let vm = try APIServer(dir: dir)
        defer { vm.kill() }
        try vm.expect("PUT", "/boot-source", #"{"kernel_image_path": "\#(try kernel(guest))", "boot_args": "ro"}"#, 204)
        try vm.expect("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": \#(memoryMiB(guest))}"#, 204)
        try vm.expect("PUT", "/drives/\(driveID(guest))",
                      #"{"drive_id": "\#(driveID(guest))", "path_on_host": "\#(d.path)", "is_root_device": false, "is_read_only": true}"#, 204)
        try vm.expect("PUT", "/actions", #"{"action_type": "InstanceStart"}"#, 204)
        let status = vm.waitForExit(timeout: 60)
        expectRefused(guest, output: vm.output, status: status, disk: d)
    }

    @Test(arguments: Guest.allCases)
    func swiftletd(_ guest: Guest) throws {
        let d = try disk("daemon-\(guest)")
        let config = """
            vms:
              ro:
                kernel: \(try kernel(guest))
                memory: \(memoryMiB(guest))M
                cmdline: "ro"
                disks: ["\(d.path),readonly,id=\(driveID(guest))"]

            """
        let daemon = try DaemonIntegrationTests.Daemon(config: config, tag: "ro-\(guest)")
        defer { daemon.cleanUp() }
        let start = daemon.ctl(["start", "ro"])
        #expect(start.status == 0, "\(start.output)")
        #expect(daemon.wait("ro", for: "stopped", timeout: 60))
        let logs = daemon.ctl(["logs", "ro"]).output
        expectRefused(guest, output: logs, status: (daemon.status()["ro"]?["exit_status"] as? Int).map(Int32.init), disk: d)
    }

    @Test func swiftletRunDisk() throws {
        let d = try disk("run-pvh")
        let r = Harness.run(Harness.swiftlet, ["run", "--kernel", try kernel(.pvh), "--memory", "64M", "--cmdline", "ro",
                                               "--disk", d.path + ",readonly"], timeout: 60)
        expectRefused(.pvh, output: r.output, status: r.status, disk: d)
    }

    /// The same hvt guest and disk, read-write: the write goes through (so the refusals above
    /// are the read-only flag's doing).
    @Test func aWritableHvtDriveIsWritten() throws {
        let d = try disk("rw-hvt")
        let dir = try APIServer.directory("rw-cfg")
        let path = dir + "/vm.json"
        try """
            {"boot-source": {"kernel_image_path": "\(try kernel(.hvt))", "boot_args": "ro"},
             "machine-config": {"vcpu_count": 1, "mem_size_mib": 4},
             "drives": [{"drive_id": "storage", "path_on_host": "\(d.path)", "is_root_device": false}]}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let r = Harness.run(Harness.swiftlet, ["api", "--api-sock", dir + "/a.sock", "--config-file", path], timeout: 60)
        #expect(r.output.contains("FAIL: write to a read-only device succeeded"), "\(r.output)")
        #expect((try? Data(contentsOf: URL(fileURLWithPath: d.path))) != d.bytes)
    }
}

/// A device error reached through the API names the API's field, not a `swiftlet run` flag.
@Suite(.enabled(if: Harness.hasKVM, "needs /dev/kvm"))
struct DeviceErrorNamesTests {
    @Test func aMissingDriveThroughAConfigFileNamesTheDrive() throws {
        let dir = try APIServer.directory("names")
        let path = dir + "/vm.json"
        try """
            {"boot-source": {"kernel_image_path": "\(try Harness.pvhGuest("blk"))"},
             "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
             "drives": [{"drive_id": "data", "path_on_host": "/nonexistent/disk.img", "is_root_device": false}]}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let r = Harness.run(Harness.swiftlet, ["api", "--api-sock", dir + "/a.sock", "--config-file", path], timeout: 30)
        #expect(r.status == 1 && r.output.contains("drive 'data' (path_on_host /nonexistent/disk.img)"), "\(r.output)")
        #expect(!r.output.contains("--disk"), "\(r.output)")
        let run = Harness.run(Harness.swiftlet, ["run", "--kernel", try Harness.pvhGuest("blk"), "--disk", "/nonexistent/disk.img"], timeout: 30)
        #expect(run.status == 1 && run.output.contains("--disk /nonexistent/disk.img"), "\(run.output)")
    }
}

/// `PUT /logger` applies to the VMM's own messages too (one log in the API process).
@Suite(.enabled(if: Harness.hasKVM, "needs /dev/kvm"))
struct VMMMessagesFollowTheLoggerTests {
    @Test func aTenderWarningGoesToTheLoggersFile() throws {
        let dir = try APIServer.directory("vmmlog")
        let log = dir + "/vm.log"
        let vm = try APIServer(dir: dir)
        defer { vm.kill() }
        try vm.expect("PUT", "/logger", #"{"log_path": "\#(log)", "level": "Info"}"#, 204)
        try vm.expect("PUT", "/boot-source", #"{"kernel_image_path": "\#(try Harness.guest("hello"))"}"#, 204)
        // 3 MiB: the hvt tender rounds it down to 2 MiB and says so (solo5-hvt's warning).
        try vm.expect("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 3}"#, 204)
        try vm.expect("PUT", "/actions", #"{"action_type": "InstanceStart"}"#, 204)
        #expect(vm.waitForExit(timeout: 30) == 0, "\(vm.output)")
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("[vmm] WARN adjusting memory to 2097152 bytes"), "log file: \(text)")
        #expect(!vm.output.contains("adjusting memory"), "the VMM wrote to stderr past the logger: \(vm.output)")
    }
}
