import Foundation
import Testing

/// Extensions (`swiftlet run --extension`, docs/abi.md "Extensions") with the PVH guest
/// guests/pvh/ext.c: the Python extension (plain sockets) and the C one (libswiftlet's helpers)
/// serve port I/O, MMIO and memory requests; killed mid-run, the device reads all ones and the VM
/// goes on; every way of misbehaving fails the device with one line, never the VM or the VMM.
@Suite(.enabled(if: Harness.hasKVM, "needs a usable /dev/kvm"))
struct ExtensionTests {
    /// The VMM's one line about a failed extension (stderr: `swiftlet: …`, or the API process's log).
    static var warning: Regex<(Substring, Substring)> { #/(\d{4}-\d\d-\d\dT\S+ \[vmm\] WARN |swiftlet: )extension [^\n]*failed: [^\n]*the VM goes on\n?/# }

    /// The guest's console in `output`: the VMM's warning (stderr) and the console (stdout, byte
    /// by byte) share the log, so the warning may land inside a console line; it is taken out.
    static func console(_ output: String) -> String { output.replacing(warning, with: "") }

    /// Runs the ext guest with the extension `program`, kills the extension once the guest loops, and checks
    /// that the guest saw it answer, then fail, and exited 0. `listen`: the VMM listens on a
    /// socket (`--extension listen=PATH`) and the test starts `program` itself, pointed there by
    /// SWIFTLET_EXTENSION_SOCKET. `extra`: more arguments of `swiftlet run`. `inspect` sees the
    /// VM process and the extension's before the kill.
    private func killMidRun(_ program: String, api: Bool = false, listen: Bool = false, extra: [String] = [],
                            inspect: (_ vm: Int32, _ extension: Int32) throws -> Void = { _, _ in }) throws {
        let socket = Harness.scratch.appendingPathComponent("ext-\(UUID().uuidString.prefix(8)).sock").path
        let extensionArgument = listen ? "listen=\(socket)" : program
        var arguments = ["run", "--kernel", try Harness.pvhGuest("ext"), "--extension", extensionArgument] + extra
        if api {
            // swiftlet api boots a config file at once; the extension starts at InstanceStart.
            let config = Harness.scratch.appendingPathComponent("ext-\(UUID().uuidString).json").path
            try #"{"boot-source": {"kernel_image_path": "\#(try Harness.pvhGuest("ext"))"}, "machine-config": {"vcpu_count": 1, "mem_size_mib": 64}}"#
                .write(toFile: config, atomically: true, encoding: .utf8)
            let socket = Harness.scratch.appendingPathComponent("ext-\(UUID().uuidString).sock").path
            arguments = ["api", "--api-sock", socket, "--config-file", config, "--extension", extensionArgument] + Harness.sanitizerArguments
        }
        let vm = try Harness.Background(Harness.swiftlet, arguments)
        var started: Process?
        defer { if let started, started.isRunning { kill(started.processIdentifier, SIGKILL) } }
        if listen {
            let deadline = Date().addingTimeInterval(20)
            while !FileManager.default.fileExists(atPath: socket) && Date() < deadline { usleep(20_000) }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: program)
            p.environment = ProcessInfo.processInfo.environment.merging(["SWIFTLET_EXTENSION_SOCKET": socket]) { $1 }
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            started = p
        }
        #expect(vm.waitFor("ext: loop"), "\(vm.output)")
        usleep(300_000)
        let pid: Int32
        if let started {
            pid = started.processIdentifier
            #expect(!FileManager.default.fileExists(atPath: socket), "the socket is gone once the extension connected")
        } else {
            let children = Harness.run("/usr/bin/pgrep", ["-P", String(vm.process.processIdentifier)])
            pid = try #require(Int32(children.output.split(separator: "\n").first ?? ""), "no extension process: \(children.output)")
        }
        try inspect(vm.process.processIdentifier, pid)
        kill(pid, SIGKILL)
        #expect(vm.finish() == 0, "\(vm.output)")
        // The VMM's warning (stderr) and the guest's console (stdout, byte by byte) share the log
        // file, so the warning may land inside a console line: take it out before reading those.
        let output = vm.output
        #expect(output.contains(Self.warning), "\(output)")
        let console = Self.console(output)
        for line in ["ext: port ok", "ext: mmio ok", "ext: memory ok", "ext: device failed after", "ext: all ones after the failure"] {
            #expect(console.contains(line), "\(line): \(output)")
        }
    }

    /// The increment example in Python.
    static var incrementPy: String { Harness.root.appendingPathComponent("examples/extensions/increment.py").path }

    @Test func aPythonExtensionServesTheGuestAndItsDeathFailsOnlyItsDevice() throws {
        try killMidRun(Self.incrementPy)
    }

    @Test func anExtensionMayConnectToASocketTheVMMNames() throws {
        try killMidRun(Self.incrementPy, listen: true)
    }

    /// Under --jail the extension is where the VM process is: its mount namespace, a root holding
    /// only /dev, its unprivileged user; with no_new_privs and a seccomp filter of its own.
    @Test(.enabled(if: Harness.isRoot, "--jail needs root"))
    func anExtensionLivesInTheJailOfItsVM() throws {
        let jail = "/tmp/sldit-\(getpid())-extjail"
        try? FileManager.default.removeItem(atPath: jail)
        defer { try? FileManager.default.removeItem(atPath: jail) }
        try killMidRun(Self.incrementPy, extra: ["--jail", jail]) { vm, ext in
            typealias J = JailIntegrationTests
            #expect(J.namespace("\(ext)", "mnt") == J.namespace("\(vm)", "mnt"))
            #expect(J.namespace("\(ext)", "mnt") != J.namespace("self", "mnt"))
            #expect((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(ext)/root")) == ["dev"])
            let uids = J.statusField(ext, "Uid")
            #expect(!uids.isEmpty && !uids.contains("0") && uids == J.statusField(vm, "Uid"), "\(uids)")
            #expect(J.statusField(ext, "CapEff") == ["0000000000000000"])
            #expect(J.statusField(ext, "NoNewPrivs") == ["1"])
            #expect(J.statusField(ext, "Seccomp") == ["2"])
        }
    }

    @Test func swiftletApiTakesExtensionsToo() throws {
        try killMidRun(Self.incrementPy, api: true)
    }

    @Test func aUnikernelRefusesExtensions() throws {
        let config = Harness.scratch.appendingPathComponent("ext-hvt-\(UUID().uuidString).json").path
        try #"{"boot-source": {"kernel_image_path": "\#(try Harness.guest("exit"))"}, "machine-config": {"vcpu_count": 1, "mem_size_mib": 32}}"#
            .write(toFile: config, atomically: true, encoding: .utf8)
        let socket = Harness.scratch.appendingPathComponent("ext-\(UUID().uuidString).sock").path
        let r = Harness.run(Harness.swiftlet, ["api", "--api-sock", socket, "--config-file", config, "--extension", "/bin/true"])
        #expect(r.status != 0 && r.output.contains("serves Linux and PVH guests"), "\(r.output)")
    }

    @Test func aCExtensionBuiltOnLibswiftletDoesTheSame() throws {
        let prefix = Harness.scratch.appendingPathComponent("ext-prefix-\(UUID().uuidString)").path
        let staged = Harness.run("/bin/bash", [Harness.root.appendingPathComponent("scripts/libswiftlet").path,
                                               Harness.root.appendingPathComponent(".build/debug").path, prefix])
        try #require(staged.status == 0, "\(staged.output)")
        let binary = prefix + "/increment"
        let built = Harness.run("/usr/bin/cc", ["-O2", "-Wall", "-Wextra", "-Werror", "-o", binary,
                                                Harness.root.appendingPathComponent("examples/extensions/increment.c").path,
                                                "-I\(prefix)/include", "-L\(prefix)/lib", "-lswiftlet", "-Wl,-rpath,\(prefix)/lib"])
        try #require(built.status == 0, "\(built.output)")
        try killMidRun(binary)
        // The same program, connecting to the socket of --extension listen=PATH
        // (swiftlet_ext_connect reads SWIFTLET_EXTENSION_SOCKET).
        try killMidRun(binary, listen: true)
    }

    /// One misbehaving extension per mode: the guest's first access reads all ones (it exits 1
    /// saying so), the VMM logs why the device failed, and nothing crashes or hangs.
    @Test(arguments: [("exit", "exited during its set-up"), ("silent", "did not finish its set-up"),
                      ("version", "protocol version 99"), ("overlap", "range refused"), ("ram", "range refused"),
                      ("garbage", "malformed message"), ("stall", "did not answer an access within 200 ms"),
                      ("network", "exited during its set-up")])
    func aMisbehavingExtensionFailsItsDeviceOnly(mode: String, reason: String) throws {
        let script = Harness.root.appendingPathComponent("Tests/extensions/misbehave.py").path
        let r = Harness.run(Harness.swiftlet, ["run", "--kernel", try Harness.pvhGuest("ext"),
                                               "--extension", "\(script),\(mode),timeout_ms=200"], timeout: 60)
        #expect(r.status == 1, "\(mode): \(r.output)")
        #expect(Self.console(r.output).contains("ext: port answered 4294967295"), "\(mode): \(r.output)")
        #expect(r.output.contains(reason), "\(mode): \(r.output)")
        #expect(r.output.components(separatedBy: "\n").filter { $0.contains("failed: ") }.count == 1, "one line: \(r.output)")
    }

    @Test func memoryRequestsOutsideRAMOrTooLongAreRefused() throws {
        let script = Harness.root.appendingPathComponent("Tests/extensions/misbehave.py").path
        let r = Harness.run(Harness.swiftlet, ["run", "--kernel", try Harness.pvhGuest("ext"),
                                               "--extension", "\(script),memory,timeout_ms=500"], timeout: 60)
        // The read outside RAM gets EFAULT (-14); the 5,000-byte write is no message: the device
        // fails, the guest's memory check reads all ones and sees its buffer unchanged.
        #expect(r.output.contains("misbehave: read outside RAM: status -14"), "\(r.output)")
        #expect(r.output.contains("malformed message") || r.output.contains("did not answer"), "\(r.output)")
        #expect(r.status == 1 && Self.console(r.output).contains("ext: memory not updated"), "\(r.output)")
    }

    @Test func aWrongProgramOrSpecIsOneLineAndNoVM() throws {
        let missing = Harness.run(Harness.swiftlet, ["run", "--kernel", try Harness.pvhGuest("ext"), "--extension", "/nonexistent/ext"])
        #expect(missing.status == 1 && missing.output.contains("--extension /nonexistent/ext: cannot start"), "\(missing.output)")
        #expect(!missing.output.contains("ext: port"), "the VM never ran: \(missing.output)")
        let bad = Harness.run(Harness.swiftlet, ["run", "--kernel", try Harness.pvhGuest("ext"), "--extension", "x,irq=99"])
        #expect(bad.status != 0 && bad.output.contains("is not PROGRAM"), "\(bad.output)")
        let relative = Harness.run(Harness.swiftlet, ["run", "--kernel", try Harness.pvhGuest("ext"), "--extension", "listen=x.sock"])
        #expect(relative.status != 0 && relative.output.contains("is not PROGRAM"), "\(relative.output)")
        let nowhere = Harness.run(Harness.swiftlet, ["run", "--kernel", try Harness.pvhGuest("ext"), "--extension", "listen=/nonexistent/x.sock"])
        #expect(nowhere.status == 1 && nowhere.output.contains("--extension listen=/nonexistent/x.sock: "), "\(nowhere.output)")
        #expect(nowhere.output.split(separator: "\n").count == 1, "one line: \(nowhere.output)")
    }
}
