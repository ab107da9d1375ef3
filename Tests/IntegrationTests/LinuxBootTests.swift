import Foundation
import Testing

/// Bad input to `swiftlet run` on this machine's /dev/kvm: one line, non-zero exit, no trap.
@Suite(.enabled(if: Harness.hasKVM, "needs a usable /dev/kvm"))
struct LinuxRunBadInputTests {
    func expectOneLineError(_ args: [String], contains text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let r = Harness.run(Harness.swiftlet, ["run"] + args, timeout: 30)
        #expect(r.status != 0, "status for \(args): \(r.output)", sourceLocation: sourceLocation)
        #expect(r.output.split(separator: "\n").count == 1, "one line: \(r.output)", sourceLocation: sourceLocation)
        #expect(r.output.contains(text), "'\(text)' in: \(r.output)", sourceLocation: sourceLocation)
    }

    static func file(_ name: String, _ bytes: [UInt8]) -> String {
        let path = Harness.scratch.appendingPathComponent(name).path
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    /// A bzImage-looking header cut short: passes the magic check, fails the size check.
    static var truncatedKernel: [UInt8] {
        var b = [UInt8](repeating: 0, count: 0x400)
        b[0x1F1] = 4
        b[0x201] = 0x6A
        b.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
        b[0x206] = 0x0F; b[0x207] = 0x02
        b[0x211] = 1
        b[0x236] = 1
        return b
    }

    /// A header-valid bzImage with a 4 KiB body: loads, but is not a real kernel.
    static var parsableKernel: [UInt8] {
        var b = truncatedKernel
        b[0x1F1] = 1
        b += [UInt8](repeating: 0, count: 1024 + 4096 - b.count)
        b[0x1F4] = 0 ; b[0x1F5] = 1 // syssize: 256 paragraphs = 4 KiB
        b[0x238] = 0; b[0x239] = 8 // cmdline_size 2048
        b[0x22C] = 0xFF; b[0x22D] = 0xFF; b[0x22E] = 0xFF; b[0x22F] = 0x7F
        return b
    }

    @Test func notAKernel() {
        expectOneLineError(["--kernel", Self.file("notakernel", Array("hello".utf8))], contains: "not a Linux bzImage")
    }

    @Test func truncatedKernel() {
        expectOneLineError(["--kernel", Self.file("truncated", Self.truncatedKernel)], contains: "truncated kernel image")
    }

    @Test func missingFiles() {
        expectOneLineError(["--kernel", "/nonexistent/vmlinuz"], contains: "No such file")
        expectOneLineError(["--kernel", Self.file("k1", Self.parsableKernel), "--initrd", "/nonexistent/initrd"], contains: "No such file")
    }

    @Test func badMemoryAndCPUs() {
        let k = Self.file("k2", Self.parsableKernel)
        expectOneLineError(["--kernel", k, "--memory", "lots"], contains: "is not a size")
        expectOneLineError(["--kernel", k, "--memory", "1M"], contains: "at least 32 MiB")
        expectOneLineError(["--kernel", k, "--memory", "100000G"], contains: "more than this host has")
        expectOneLineError(["--kernel", k, "--cpus", "0"], contains: "--cpus must be at least 1")
        expectOneLineError(["--kernel", k, "--cpus", "100000"], contains: "more than KVM allows")
        expectOneLineError(["--kernel", k, "--log-level", "loud"], contains: "--log-level: 'loud' is not quiet, error, warn, info or debug")
    }

    @Test func initrdTooLargeForMemory() {
        let big = Self.file("bigrd", [UInt8](repeating: 7, count: 40 << 20))
        expectOneLineError(["--kernel", Self.file("k3", Self.parsableKernel), "--initrd", big, "--memory", "32M"], contains: "does not fit")
    }

    @Test func commandLineTooLong() {
        expectOneLineError(["--kernel", Self.file("k4", Self.parsableKernel), "--cmdline", String(repeating: "x", count: 3000)],
                           contains: "the kernel accepts 2048")
    }

    /// A "kernel" whose 64-bit entry is UD2 with no IDT: #UD, #DF, then a triple fault. The run
    /// must end with a clear message and the registers, not hang.
    @Test func tripleFaultEndsTheRunWithRegisters() {
        var k = Self.parsableKernel
        k[1024 + 0x200] = 0x0F
        k[1024 + 0x201] = 0x0B
        let r = Harness.run(Harness.swiftlet, ["run", "--kernel", Self.file("ud2kernel", k)], timeout: 60)
        #expect(r.status == 1, "\(r.output)")
        #expect(r.output.contains("guest triple fault"), "\(r.output)")
        #expect(r.output.contains("rip=0x100200"), "\(r.output)")
    }

    @Test func unknownFlag() {
        expectOneLineError(["--kernel", "x", "--frobnicate"], contains: "Unknown option")
    }

    @Test func aUnikernelGivenToRunNamesSwiftletHvt() throws {
        let hello = try Harness.guest("hello")
        expectOneLineError(["--kernel", hello], contains: "is a Solo5 hvt unikernel, not a Linux kernel: run it with swiftlet hvt \(hello)")
    }

    @Test func memorySizesSayWhatIsWrong() {
        expectOneLineError(["--kernel", "x", "--memory", "0"], contains: "--memory '0' is zero")
        expectOneLineError(["--kernel", "x", "--memory", "256MB"], contains: "'MB' is not a unit: write K, M or G")
        expectOneLineError(["--kernel", "x", "--memory", "256MiB"], contains: "'MiB' is not a unit")
        expectOneLineError(["--kernel", "x", "--memory", "100T"], contains: "'T' is not a unit")
        expectOneLineError(["--kernel", "x", "--cpus", "-1"], contains: "--cpus must be at least 1")
    }

    @Test func versionNamesTheReleaseAndTheInterfaces() {
        let swiftletd = URL(fileURLWithPath: Harness.swiftlet).deletingLastPathComponent().appendingPathComponent("swiftletd").path
        for (binary, args) in [(Harness.swiftlet, ["--version"]), (swiftletd, ["--version"])] {
            let r = Harness.run(binary, args, timeout: 30)
            #expect(r.status == 0, "\(binary): \(r.output)")
            #expect(r.output.hasPrefix("swiftlet ") && r.output.contains("Solo5 v0.12.1, ABI versions supported: 1 2")
                    && r.output.contains("VM API (Firecracker-compatible): ") && r.output.contains("daemon API: "), "\(r.output)")
        }
    }

    @Test func usageErrorsExitOneAsTheREADMESays() {
        // ArgumentParser's own code would be 64 (EX_USAGE); bad input is 1 at every door.
        for args in [["--kernel", "x", "--frobnicate"], ["--memory", "0"], []] {
            let r = Harness.run(Harness.swiftlet, ["run"] + args, timeout: 30)
            #expect(r.status == 1, "\(args): \(r.output)")
        }
        let swiftletd = URL(fileURLWithPath: Harness.swiftlet).deletingLastPathComponent().appendingPathComponent("swiftletd").path
        let daemon = Harness.run(swiftletd, ["--frobnicate"], timeout: 30)
        #expect(daemon.status == 1 && daemon.output.hasPrefix("swiftletd: "), "\(daemon.output)")
    }
}

/// Boots Debian's stock cloud kernel (scripts/make-guest) under `swiftlet run` on a real KVM: an
/// L1 VM under QEMU/TCG with nested SVM (scripts/nested-kvm), since this machine's KVM cannot boot
/// Linux. Needs qemu-system-x86 (the script installs it as root) and network access to Debian's
/// archive for the packages; set SWIFTLET_NESTED=0 to skip.
@Suite(.enabled(if: Harness.isRoot && ProcessInfo.processInfo.environment["SWIFTLET_NESTED"] != "0",
                "needs root (nested KVM via QEMU); SWIFTLET_NESTED=0 skips"),
       .serialized)
struct LinuxNestedBootTests {
    static let guest: Result<URL, any Error> = {
        let out = Harness.scratch.appendingPathComponent("linux-guest")
        let r = Harness.run("/bin/bash", [Harness.root.appendingPathComponent("scripts/make-guest").path, out.path], timeout: 600)
        guard r.status == 0 else { return .failure(HarnessError("make-guest failed: \(r.output)")) }
        return .success(out)
    }()

    func nested(_ command: String, timeout: Int = 300) throws -> Harness.Outcome {
        let guest = try Self.guest.get()
        return Harness.run("/bin/bash", [Harness.root.appendingPathComponent("scripts/nested-kvm").path,
                                         "--timeout", "\(timeout)", "--share", guest.path,
                                         "--swiftlet", Harness.swiftlet, "--", command],
                           timeout: Double(timeout + 120))
    }

    @Test func oneVCPUExitStatusAndConsole() throws {
        let r = try nested("swiftlet run --kernel vmlinuz --initrd initrd.img --memory 128M --cmdline 'console=ttyS0 quiet -- echo hello-from-l2; exit 7'")
        #expect(r.status == 7, "\(r.output)")
        #expect(r.output.contains("hello-from-l2"), "\(r.output)")
    }

    @Test func twoVCPUsAndMemory() throws {
        let r = try nested("swiftlet run --kernel vmlinuz --initrd initrd.img --cpus 2 --memory 512M --cmdline 'console=ttyS0 quiet -- echo cpus=$(nproc); free -m | grep Mem:'")
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("cpus=2"), "\(r.output)")
        #expect(r.output.contains("Mem:"), "\(r.output)")
    }

    @Test func poweroffAndRebootEndTheVM() throws {
        let off = try nested("swiftlet run --kernel vmlinuz --initrd initrd.img --cmdline 'console=ttyS0 quiet -- poweroff -f'; echo status=$?")
        #expect(off.output.contains("status=0"), "\(off.output)")
        let reboot = try nested("swiftlet run --kernel vmlinuz --initrd initrd.img --cmdline 'console=ttyS0 quiet -- reboot -f'; echo status=$?")
        #expect(reboot.output.contains("status=0"), "\(reboot.output)")
    }
}
