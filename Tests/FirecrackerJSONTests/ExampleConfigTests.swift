import FirecrackerJSON
import VMSpec
import Foundation
import Testing

/// The Firecracker config files in examples/ parse, strictly, to what examples/README.md says they are.
@Suite struct ExampleConfigTests {
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("examples")

    @Test func linuxVMExample() throws {
        let config = try FirecrackerConfig.load(path: Self.examples.appendingPathComponent("linux-vm.json").path)
        #expect(config.bootSource.kernelImagePath == "/tmp/swiftlet-examples/vmlinuz")
        #expect(config.bootSource.initrdPath == "/tmp/swiftlet-examples/initrd.img")
        #expect(config.bootSource.bootArgs?.hasPrefix("console=ttyS0") == true)
        #expect(config.machineConfig?.vcpuCount == 2)
        #expect(config.machineConfig?.memSizeMib == 256)
    }

    @Test func unikernelExample() throws {
        let config = try FirecrackerConfig.load(path: Self.examples.appendingPathComponent("unikernel.json").path)
        #expect(config.bootSource.kernelImagePath == "/tmp/swiftlet-examples/demo.hvt")
        #expect(config.bootSource.bootArgs == "hello from a config file")
        #expect(config.machineConfig?.memSizeMib == 32)
        #expect(config.drives.isEmpty && config.networkInterfaces.isEmpty)
    }
}
