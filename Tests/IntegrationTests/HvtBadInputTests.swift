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

    @Test func memTooSmallOrMalformed() throws {
        expectOneLineError(["--mem=abc", try Harness.guest("hello")], contains: "malformed argument to --mem")
        expectOneLineError(["--mem=1", try Harness.guest("hello")], contains: "--mem")
        expectOneLineError(["--mem=999999", try Harness.guest("hello")], contains: "--mem")
    }

    @Test func missingBlockFile() throws {
        expectOneLineError(["--block:storage=/nonexistent/disk", try Harness.guest("blk")], contains: "No such file")
    }

    @Test func blockFileIsADirectory() throws {
        expectOneLineError(["--block:storage=/tmp", try Harness.guest("blk")], contains: "directory")
    }

    @Test func blockFileTooSmall() throws {
        let tiny = Harness.disk("tiny.img", size: 100)
        expectOneLineError(["--block:storage=\(tiny)", try Harness.guest("blk")], contains: "multiple of the 512-byte")
    }

    @Test func declaredDeviceNotAttached() throws {
        expectOneLineError([try Harness.guest("blk")], contains: "'storage' declared by the unikernel is not attached")
    }

    @Test func undeclaredDevice() throws {
        let disk = Harness.disk("undeclared.img", size: 4096)
        expectOneLineError(["--block:other=\(disk)", try Harness.guest("hello")], contains: "not declared in the unikernel's manifest")
    }

    @Test func deviceGivenTwice() throws {
        let disk = Harness.disk("twice.img", size: 4096)
        expectOneLineError(["--block:storage=\(disk)", "--block:storage=\(disk)", try Harness.guest("blk")], contains: "more than once")
    }

    @Test func unknownOption() throws {
        expectOneLineError(["--frobnicate", try Harness.guest("hello")], contains: "invalid option")
    }

    @Test func missingTap() throws {
        expectOneLineError(["--net:service=nosuchtap0", try Harness.guest("net")], contains: "could not attach interface nosuchtap0")
    }

    @Test func commandLineTooLong() throws {
        expectOneLineError([try Harness.guest("hello"), String(repeating: "x", count: 9000)], contains: "command line too long")
    }
}
