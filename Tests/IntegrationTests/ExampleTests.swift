import Foundation
import Testing

/// The examples/ folder does what examples/README.md says: the PVH hello script boots its guest,
/// and the unikernel config file runs the demo unikernel through `swiftlet api --config-file`.
@Suite(.enabled(if: Harness.hasKVM, "needs a usable /dev/kvm"))
struct ExampleTests {
    static let examples = Harness.root.appendingPathComponent("examples")

    @Test func pvhHelloScriptBootsItsGuest() throws {
        let r = Harness.run("/bin/bash", [Self.examples.appendingPathComponent("pvh-hello/run.sh").path, Harness.swiftlet], timeout: 120)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("pvh: cmdline=hello from examples/pvh-hello"), "\(r.output)")
        #expect(r.output.contains("pvh: modules=1 first_bytes=initrd c"), "\(r.output)")
        #expect(r.output.contains("exited 42"), "\(r.output)")
    }

    @Test func unikernelConfigRunsTheDemo() throws {
        // The example names /tmp/swiftlet-examples/demo.hvt; point it at this run's build of it.
        let text = try String(contentsOf: Self.examples.appendingPathComponent("unikernel.json"), encoding: .utf8)
        let config = Harness.scratch.appendingPathComponent("unikernel-example.json").path
        try text.replacingOccurrences(of: "/tmp/swiftlet-examples/demo.hvt", with: try Harness.guest("demo"))
            .write(toFile: config, atomically: true, encoding: .utf8)
        let socket = Harness.scratch.appendingPathComponent("unikernel-example.sock").path
        let r = Harness.run(Harness.swiftlet, ["api", "--api-sock", socket, "--config-file", config], timeout: 60)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("Swiftlet demo unikernel") && r.output.contains("argv[1] = hello"), "\(r.output)")
        #expect(r.output.contains("memory:    32 MiB") || r.output.contains("memory:    31 MiB"), "\(r.output)")
    }
}
