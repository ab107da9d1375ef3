import Foundation
import Testing

/// Bad input from the user gets one line on stderr and exit status 1 — never a trap or backtrace.
@Suite(.enabled(if: Harness.hasKVM, "needs a usable /dev/kvm"))
struct HvtBadInputTests {
    func expectOneLineError(_ args: [String], contains text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let r = Harness.hvt(args)
        #expect(r.status == 1, "status for \(args): \(r.output)", sourceLocation: sourceLocation)
        let lines = r.output.split(separator: "\n")
        #expect(lines.count == 1, "one line: \(r.output)", sourceLocation: sourceLocation)
        #expect(r.output.hasPrefix("swiftlet: "), sourceLocation: sourceLocation)
        #expect(r.output.contains(text), "'\(text)' in: \(r.output)", sourceLocation: sourceLocation)
    }

    @Test func notAnELF() throws {
        let path = Harness.scratch.appendingPathComponent("script.hvt").path
        try "#!/bin/sh\necho hi\n".write(toFile: path, atomically: true, encoding: .utf8)
        expectOneLineError([path], contains: "not an ELF file")
    }

    @Test func elfWithoutSolo5Notes() {
        expectOneLineError(["/bin/true"], contains: "not")
    }

    @Test func missingKernel() {
        expectOneLineError(["/nonexistent/k.hvt"], contains: "No such file")
    }

    @Test func memMalformedOrTooLarge() throws {
        // solo5-hvt's words: malformed for junk and 0, and its limit of 4 GiB.
        expectOneLineError(["--mem=abc", try Harness.guest("hello")], contains: "Malformed argument to --mem")
        expectOneLineError(["--mem=0", try Harness.guest("hello")], contains: "Malformed argument to --mem")
        expectOneLineError(["--mem=-1", try Harness.guest("hello")], contains: "exceeds the max size 4294967296 bytes")
        expectOneLineError(["--mem=4098", try Harness.guest("hello")], contains: "guest memory size 4297064448 bytes exceeds the max size 4294967296 bytes")
        expectOneLineError(["--mem=1000000", try Harness.guest("hello")], contains: "exceeds the max size")
    }

    @Test func memTooSmallIsRoundedUpAndRuns() throws {
        // As solo5-hvt: 1 MB becomes 2 MiB with a warning, and the guest runs.
        let r = Harness.hvt(["--mem=1", try Harness.guest("hello")])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("swiftlet: adjusting memory to 2097152 bytes"))
    }

    @Test func versionAndHelpAsSolo5HvtGivesThem() throws {
        let v = Harness.hvt(["--version"])
        #expect(v.status == 0 && v.output.contains("ABI version 2") && v.output.contains("ABI versions supported: 1 2"), "\(v.output)")
        // `swiftlet hvt --help` is a help like every swiftlet command's: exit 0.
        let h = Harness.hvt(["--help"])
        #expect(h.status == 0 && h.output.hasPrefix("usage: swiftlet hvt"), "\(h.output)")
        #expect(h.output.contains("--net:NAME=IFACE | @NN") && h.output.contains("ABI 2") && h.output.contains("ring"))
        // --help wins wherever it is among the options, as in solo5-hvt.
        #expect(Harness.hvt(["--frobnicate", "--help"]).status == 0)
        #expect(Harness.hvt(["--mem=abc", "--version"]).status == 0)
    }

    @Test func installedAsSolo5HvtItsHelpExitsOneAsThePeersDoes() throws {
        // solo5-hvt v0.12.1 prints its usage on stderr and exits 1; a link by that name keeps that.
        let link = Harness.scratch.appendingPathComponent("bin-\(UUID().uuidString)/solo5-hvt").path
        try FileManager.default.createDirectory(atPath: (link as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: Harness.swiftlet)
        let h = Harness.run(link, ["--help"], timeout: 30)
        #expect(h.status == 1 && h.output.hasPrefix("usage: "), "\(h.output)")
        if let peer = Harness.peerTender {
            #expect(Harness.run(peer, ["--help"], timeout: 30).status == h.status)
        }
    }

    @Test func aDeviceGivenTwiceUsesTheLastOne() throws {
        // solo5-hvt takes the last one silently; we take it too, and say so.
        let first = Harness.disk("first.img", size: 4096), second = Harness.disk("second.img", size: 64 << 10)
        let r = Harness.hvt(["--block:storage=\(first)", "--block:storage=\(second)", try Harness.guest("blk")])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("--block:storage given twice; using \(second)"), "\(r.output)")
        #expect(r.output.contains("capacity=65536"), "\(r.output)")
    }

    @Test func sighupEndsTheRunAsItEndsSolo5Hvt() throws {
        let vm = try Harness.Background(Harness.swiftlet, ["hvt", try Harness.guest("idle")])
        #expect(vm.waitFor("idle: ready"))
        kill(vm.process.processIdentifier, SIGHUP)
        #expect(vm.finish(timeout: 10) == 129, "\(vm.output)")
        let term = try Harness.Background(Harness.swiftlet, ["hvt", try Harness.guest("idle")])
        #expect(term.waitFor("idle: ready"))
        kill(term.process.processIdentifier, SIGTERM)
        #expect(term.finish(timeout: 10) == 1)
        #expect(term.output.contains("swiftlet: Exiting on signal 15"), "\(term.output)")
    }

    /// A copy of the ABI-2 hello guest with `patch` applied at the ABI note's descriptor.
    func patchedHello(_ name: String, _ patch: (inout [UInt8], Int) -> Void) throws -> String {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try Harness.guest("hello"))))
        // The ABI note: namesz 6, descsz 16, type "ABI1", "Solo5\0\0\0", then the descriptor.
        let header: [UInt8] = [6, 0, 0, 0, 16, 0, 0, 0, 0x41, 0x42, 0x49, 0x31, 0x53, 0x6F, 0x6C, 0x6F, 0x35, 0]
        guard let at = (0..<(bytes.count - header.count)).first(where: { Array(bytes[$0..<$0 + header.count]) == header }) else {
            throw HarnessError("no ABI note in hello.hvt")
        }
        patch(&bytes, at)
        let path = Harness.scratch.appendingPathComponent("\(name).hvt").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test(arguments: [UInt8(0), 3, 255])
    func unknownABIVersions(version: UInt8) throws {
        let path = try patchedHello("abi\(version)") { b, at in b[at + 24] = version }
        expectOneLineError([path], contains: "Executable requests unsupported ABI version \(version) (swiftlet hvt runs hvt ABI 1 and 2)")
    }

    @Test func wrongTargetTruncatedAndOverlappingNotes() throws {
        let spt = try patchedHello("spt") { b, at in b[at + 20] = 2 }
        expectOneLineError([spt], contains: "Executable is not for the solo5-hvt target (built for 'spt')")
        // descsz 4: too short to hold target and version (the notes after it no longer parse).
        let short = try patchedHello("short") { b, at in b[at + 4] = 4 }
        expectOneLineError([short], contains: "short.hvt: ")
        // descsz past the end of its PT_NOTE.
        let long = try patchedHello("long") { b, at in b[at + 4] = 200 }
        expectOneLineError([long], contains: "invalid or unsupported executable")
        // The ABI note's PT_NOTE made to cover the manifest's too: the note areas overlap, refused
        // before any note is read (each area used to be parsed again per header naming it).
        let overlapping = try patchedHello("overlap") { b, at in
            // Program headers at e_phoff (u64 at 32), 56 bytes each, e_phnum (u16 at 56).
            let phoff = Int(b[32]) | Int(b[33]) << 8, count = Int(b[56])
            let notes = (0..<count).map { phoff + $0 * 56 }.filter { b[$0] == 4 }
            // Widen every PT_NOTE to span all three notes (offset of the first, size of all).
            let first = notes.map { Int(b[$0 + 8]) | Int(b[$0 + 9]) << 8 }.min()!
            for n in notes {
                b[n + 8] = UInt8(first & 0xFF); b[n + 9] = UInt8(first >> 8)
                b[n + 32] = 0xD0; b[n + 33] = 0
            }
            _ = at
        }
        expectOneLineError([overlapping], contains: "ELF note areas overlap")
    }

    /// A FIFO where a disk belongs: refused at once (it used to block in open() for a writer),
    /// by hvt block devices and virtio-blk alike (one `Host.DiskImage`).
    @Test func aFIFOAsADiskIsRefusedAtOnce() throws {
        let fifo = Harness.scratch.appendingPathComponent("disk-\(UUID().uuidString).fifo").path
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let hvt = Harness.hvt(["--block:storage=\(fifo)", try Harness.guest("blk")], timeout: 20)
        #expect(hvt.status == 1 && hvt.output.split(separator: "\n").count == 1, "\(hvt.output)")
        #expect(hvt.output.contains("block 'storage': disk \(fifo) is a FIFO, not a regular file or block device"), "\(hvt.output)")
        let run = Harness.run(Harness.swiftlet, ["run", "--kernel", try Harness.pvhGuest("blk"), "--disk", fifo], timeout: 20)
        #expect(run.status == 1 && run.output.contains("virtio-blk: disk \(fifo) is a FIFO, not a regular file or block device"), "\(run.output)")
    }

    @Test func missingBlockFile() throws {
        expectOneLineError(["--block:storage=/nonexistent/disk", try Harness.guest("blk")], contains: "No such file")
    }

    @Test func blockFileIsADirectory() throws {
        expectOneLineError(["--block:storage=/tmp", try Harness.guest("blk")], contains: "directory")
    }

    @Test func blockFileTooSmall() throws {
        let tiny = Harness.disk("tiny.img", size: 100)
        expectOneLineError(["--block:storage=\(tiny)", try Harness.guest("blk")], contains: "storage: Backing storage must be at least 1 block (512 bytes) in size")
        let odd = Harness.disk("odd.img", size: 1000)
        expectOneLineError(["--block:storage=\(odd)", try Harness.guest("blk")], contains: "storage: Backing storage size must be block aligned (512 bytes)")
        expectOneLineError(["--block:storage=\(odd)", "--block-sector-size:storage=100", try Harness.guest("blk")],
                           contains: "Block size must be a multiple of 2 greater than or equal 512")
    }

    @Test func declaredDeviceNotAttached() throws {
        expectOneLineError([try Harness.guest("blk")], contains: "'storage' declared by the unikernel is not attached")
    }

    @Test func undeclaredDevice() throws {
        let disk = Harness.disk("undeclared.img", size: 4096)
        expectOneLineError(["--block:other=\(disk)", try Harness.guest("hello")], contains: "not declared in the unikernel's manifest")
    }

    @Test func unknownOption() throws {
        expectOneLineError(["--frobnicate", try Harness.guest("hello")], contains: "Invalid option: `--frobnicate'")
    }

    @Test func missingTap() throws {
        expectOneLineError(["--net:service=nosuchtap0", try Harness.guest("net")], contains: "Could not attach interface: nosuchtap0: No such device")
    }

    @Test func commandLineTooLong() throws {
        expectOneLineError([try Harness.guest("hello"), String(repeating: "x", count: 9000)], contains: "Guest command line too long")
    }
}
