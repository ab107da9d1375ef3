import Foundation
import Testing

/// `swiftlet run` with our freestanding PVH guests (guests/pvh) on this machine's /dev/kvm:
/// the PVH entry, hvm_start_info (command line, memory map, initrd module, RSDP), COM1 output and
/// input, the debug-exit port, several vCPUs, and stopping on a signal.
@Suite(.enabled(if: Harness.hasKVM, "needs a usable /dev/kvm"))
struct PVHGuestTests {
    @Test func startInfoAndExitStatus() throws {
        let rd = Harness.scratch.appendingPathComponent("pvh-initrd").path
        try "initrd-contents".write(toFile: rd, atomically: true, encoding: .utf8)
        let r = Harness.run(Harness.swiftlet, ["run", "--kernel", try Harness.pvhGuest("hello"), "--initrd", rd,
                                               "--cmdline", "test cmdline", "--memory", "64M"], timeout: 60)
        #expect(r.status == 42, "\(r.output)")
        #expect(r.output.contains("pvh: cmdline=test cmdline"))
        #expect(r.output.contains("pvh: modules=1 first_bytes=initrd-c"))
        #expect(r.output.contains("pvh: acpi ok"))
        // 64 MiB less the low-memory holes (EBDA and BIOS area): 65,151 KiB of RAM in the map.
        #expect(r.output.contains("pvh: ram_kib=65151"), "\(r.output)")
    }

    @Test func severalVCPUsStillExit() throws {
        let r = Harness.run(Harness.swiftlet, ["run", "--kernel", try Harness.pvhGuest("hello"), "--cpus", "4"], timeout: 60)
        #expect(r.status == 42, "\(r.output)")
    }

    @Test func consoleInputReachesTheGuest() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Harness.swiftlet)
        p.arguments = ["run", "--kernel", try Harness.pvhGuest("echo")]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = output
        try p.run()
        input.fileHandleForWriting.write(Data("hello\nworld\nquit\n".utf8))
        try input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(60)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus == 2, "\(text)")
        #expect(text.contains("got: hello") && text.contains("got: world"), "\(text)")
    }

    @Test(arguments: [SIGTERM, SIGINT])
    func signalStopsTheVM(signal: Int32) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Harness.swiftlet)
        p.arguments = ["run", "--kernel", try Harness.pvhGuest("spin"), "--cpus", "2"]
        let output = Pipe()
        p.standardOutput = output
        p.standardError = output
        p.standardInput = FileHandle.nullDevice
        try p.run()
        usleep(1_500_000)
        kill(p.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(20)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        let hung = p.isRunning
        if hung { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        #expect(!hung, "the VM must stop on signal \(signal)")
        #expect(p.terminationStatus == 128 + signal)
    }

    @Test func aSilentGuestIsPointedOutOnceAndRunsOn() throws {
        // No console output for 5 s: one warning on stderr, and the VM keeps running until stopped.
        let vm = try Harness.Background(Harness.swiftlet, ["run", "--kernel", try Harness.pvhGuest("spin"), "--cmdline", "silent"])
        #expect(vm.waitFor("the guest has written nothing to its console for 5 s", timeout: 30), "\(vm.output)")
        usleep(500_000)
        kill(vm.process.processIdentifier, SIGTERM)
        #expect(vm.finish(timeout: 20) == 128 + SIGTERM, "\(vm.output)")
        #expect(vm.output.components(separatedBy: "written nothing").count == 2, "once: \(vm.output)")
    }

    @Test func aGuestThatSpeaksGetsNoSilenceWarning() throws {
        let vm = try Harness.Background(Harness.swiftlet, ["run", "--kernel", try Harness.pvhGuest("spin")])
        #expect(vm.waitFor("spin: running"), "\(vm.output)")
        usleep(6_000_000)
        kill(vm.process.processIdentifier, SIGTERM)
        _ = vm.finish(timeout: 20)
        #expect(!vm.output.contains("written nothing"), "\(vm.output)")
    }

    @Test func elfWithoutPVHNoteIsRefused() throws {
        let r = Harness.run(Harness.swiftlet, ["run", "--kernel", "/bin/true"], timeout: 30)
        #expect(r.status == 1)
        #expect(r.output.contains("no PVH entry point"), "\(r.output)")
    }
}
