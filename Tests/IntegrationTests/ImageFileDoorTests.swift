import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A FIFO, a character device or an oversized file where a kernel, initrd or disk belongs, through
/// every door: one line and exit 1 within seconds (they used to block in open() for a writer with
/// SIGTERM blocked, or read /dev/zero until memory ran out), and the API keeps answering.
@Suite(.enabled(if: Harness.hasKVM, "needs a usable /dev/kvm"))
struct ImageFileDoorTests {
    /// Long enough for a slow debug start, far shorter than a hang.
    static let quick: Double = 10

    static func fifo(_ name: String) -> String {
        let path = Harness.scratch.appendingPathComponent("\(name)-\(UUID().uuidString).fifo").path
        _ = mkfifo(path, 0o600)
        return path
    }

    /// Runs `swiftlet args`; expects exit 1 before `quick` seconds with one `swiftlet: ` line
    /// containing `text`.
    func expectRefused(_ args: [String], _ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let start = Date()
        let r = Harness.run(Harness.swiftlet, args, timeout: Self.quick)
        let seconds = Date().timeIntervalSince(start)
        #expect(r.status == 1 && seconds < Self.quick - 1, "\(args): status \(r.status) after \(seconds) s: \(r.output)", sourceLocation: sourceLocation)
        #expect(r.output.split(separator: "\n").count == 1 && r.output.hasPrefix("swiftlet: "), "one line: \(r.output)", sourceLocation: sourceLocation)
        #expect(r.output.contains(text), "'\(text)' in: \(r.output)", sourceLocation: sourceLocation)
    }

    @Test func hvtRefusesAFIFOOrACharacterDeviceAsItsKernel() {
        let fifo = Self.fifo("kernel")
        defer { unlink(fifo) }
        expectRefused(["hvt", "--mem=4", fifo], "kernel \(fifo) is a FIFO, not a regular file")
        expectRefused(["hvt", "--mem=4", "/dev/zero"], "kernel /dev/zero is a character device, not a regular file")
    }

    /// A kernel larger than --mem is refused from its size, not read (a sparse 1 GiB file here).
    @Test func hvtRefusesAKernelLargerThanItsMemory() throws {
        let path = Harness.disk("huge-\(UUID().uuidString).hvt", size: 0)
        defer { unlink(path) }
        #expect(truncate(path, 1 << 30) == 0)
        expectRefused(["hvt", "--mem=4", path], "kernel \(path) (1073741824 bytes) does not fit in the guest's memory (4194304 bytes)")
    }

    @Test func runRefusesAFIFOAsKernelOrInitrd() throws {
        let fifo = Self.fifo("run")
        defer { unlink(fifo) }
        expectRefused(["run", "--kernel", fifo], "kernel \(fifo) is a FIFO, not a regular file")
        expectRefused(["run", "--kernel", try Harness.pvhGuest("hello"), "--initrd", fifo], "initrd \(fifo) is a FIFO, not a regular file")
        expectRefused(["run", "--kernel", try Harness.pvhGuest("hello"), "--initrd", "/dev/urandom"],
                      "initrd /dev/urandom is a character device, not a regular file")
        expectRefused(["run", "--kernel", try Harness.pvhGuest("blk"), "--disk", fifo + ",readonly"],
                      "virtio-blk: disk \(fifo) is a FIFO, not a regular file or block device")
    }

    /// The Firecracker config file, under `swiftlet run` and `swiftlet api` alike.
    @Test func configFilesRefuseAFIFOKernel() throws {
        let fifo = Self.fifo("cfg")
        defer { unlink(fifo) }
        let dir = try APIServer.directory("fifo-cfg")
        let config = dir + "/fifo.json"
        try #"{"boot-source": {"kernel_image_path": "\#(fifo)"}, "machine-config": {"vcpu_count": 1, "mem_size_mib": 64}}"#
            .write(toFile: config, atomically: true, encoding: .utf8)
        expectRefused(["run", "--config-file", config], "kernel \(fifo) is a FIFO, not a regular file")
        expectRefused(["api", "--api-sock", dir + "/a.sock", "--config-file", config], "kernel \(fifo) is a FIFO, not a regular file")
    }

    /// PUT /boot-source with a FIFO answers 400 at once, and the one request thread still serves
    /// `GET /` afterwards; a FIFO drive is refused at its PUT, or at InstanceStart if the path
    /// became one since, just as fast.
    @Test func theAPIRefusesAFIFOAndKeepsAnswering() throws {
        _ = try #require(APIServerTests.curl, "curl is needed (apt-get install curl)")
        let fifo = Self.fifo("api")
        defer { unlink(fifo) }
        let vm = try APIServer(dir: try APIServer.directory("fifo-api"))
        defer { vm.kill() }

        var start = Date()
        let put = try vm.curl("PUT", "/boot-source", #"{"kernel_image_path": "\#(fifo)"}"#)
        #expect(put.status == 400 && (put.faultMessage ?? "").contains("kernel_image_path \(fifo) is a FIFO, not a regular file"), "\(put)")
        #expect(Date().timeIntervalSince(start) < 5)
        let info = try vm.curl("GET", "/")
        #expect(info.status == 200 && info.json?["state"] == .string("Not started"), "\(info)")

        try vm.expect("PUT", "/boot-source", #"{"kernel_image_path": "\#(try Harness.guest("blk"))"}"#, 204)
        try vm.expect("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 4}"#, 204)
        start = Date()
        let drive = try vm.curl("PUT", "/drives/storage", #"{"drive_id": "storage", "path_on_host": "\#(fifo)", "is_root_device": false, "is_read_only": true}"#)
        #expect(drive.status == 400 && (drive.faultMessage ?? "").contains("path_on_host \(fifo) is a FIFO"), "\(drive)")
        #expect(Date().timeIntervalSince(start) < 5)
        // A path that was a file at its PUT and is a FIFO by InstanceStart is refused there.
        let swapped = Self.fifo("api-swapped")
        defer { unlink(swapped) }
        unlink(swapped)
        _ = FileManager.default.createFile(atPath: swapped, contents: nil)
        try vm.expect("PUT", "/drives/storage", #"{"drive_id": "storage", "path_on_host": "\#(swapped)", "is_root_device": false, "is_read_only": true}"#, 204)
        unlink(swapped)
        #expect(mkfifo(swapped, 0o600) == 0)
        start = Date()
        let boot = try vm.curl("PUT", "/actions", #"{"action_type": "InstanceStart"}"#)
        #expect(boot.status == 400 && (boot.faultMessage ?? "").contains("disk \(swapped) is a FIFO"), "\(boot)")
        #expect(Date().timeIntervalSince(start) < 5)
        #expect(try vm.curl("GET", "/").status == 200)
        vm.expectCleanStop()
    }
}
