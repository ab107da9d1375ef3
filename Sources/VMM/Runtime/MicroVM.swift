import VMSpec
import Boot
import Host
import Hypervisor
#if canImport(Glibc)
import Glibc
#endif

/// One VM described in Firecracker's terms, whatever it boots: a Linux kernel (bzImage or PVH
/// ELF) runs as a ``LinuxVM``, a Solo5 hvt unikernel under the ``HvtTender``; both are a
/// ``VirtualMachine`` with one lifecycle. The API process builds one at InstanceStart, runs it on
/// a thread of its own and pauses, resumes or stops it from the API thread.
public final class MicroVM: @unchecked Sendable {
    /// The machine, of either kind.
    public let vm: any VirtualMachine
    public let isUnikernel: Bool
    public let vcpuCount: Int
    public let memoryMiB: UInt64

    /// Reads the kernel once, tells the kind from it, then builds the VM (every file opened, every check done).
    /// `extensions`: extension processes (`--extension`) for a Linux or PVH guest; a unikernel
    /// has no port or MMIO devices for them to serve.
    public init(_ config: FirecrackerConfig, console: VMConsole = .stdio, logLevel: HvtConfig.LogLevel = .warn,
                logSink: VMMLogSink? = nil, extensions: ExtensionSet = ExtensionSet()) throws(VMMError) {
        let path = config.bootSource.kernelImagePath
        let kernel: [UInt8]
        // The kind is not known yet, but either kind's image has to fit the guest's memory.
        do { kernel = try ImageFile.read(path, for: "kernel", limit: config.memoryBytes) } catch {
            throw VMMError(.configuration, error.description)
        }
        isUnikernel = HvtImage.isSolo5(kernel)
        if isUnikernel {
            guard extensions.specs.isEmpty else {
                throw VMMError(.configuration, "--extension serves Linux and PVH guests; \(path) is a Solo5 unikernel")
            }
            var hvt = try config.hvtConfig()
            hvt.logLevel = logLevel
            vm = try HvtTender(config: hvt, console: console, kernelBytes: kernel, logSink: logSink)
            vcpuCount = 1
            memoryMiB = hvt.memoryMiB
        } else {
            var linux = try config.linuxConfig()
            linux.extensions = extensions
            vm = try LinuxVM(config: linux, logLevel: logLevel, console: console, kernelBytes: kernel, logSink: logSink)
            vcpuCount = linux.cpus
            memoryMiB = linux.memoryBytes >> 20
        }
    }

    /// Runs until the guest ends or `requestStop`; returns the process exit status (as
    /// `swiftlet run` / `swiftlet hvt` would: 128+N after a stop requested with signal N).
    public func run() -> Int32 { vm.runToExitStatus() }

    /// Runs the VM on a thread of its own (named `vmm`); `onExit` gets `run()`'s status there.
    public func start(onExit: @escaping @Sendable (Int32) -> Void) throws(VMMError) {
        do {
            _ = try VCPUThread(name: "vmm") { [self] in onExit(run()) }
        } catch { throw VMMError(.host, error.message) }
    }

    public func requestStop(signal: Int32) { vm.requestStop(signal: signal) }

    public func pause() throws(VMMError) { try vm.pause() }

    public func resume() { vm.resume() }

    /// Ctrl+Alt+Del on the keyboard (Linux guests; a unikernel has no keyboard).
    public func sendCtrlAltDel() throws(VMMError) { try vm.sendCtrlAltDel() }

    /// Where the VM is in its life.
    public var state: VMState { vm.state }

    public var exitCounters: ExitCounters { vm.exitCounters }

    public var deviceStatistics: [DeviceStatistics] { vm.deviceStatistics }

    /// The extension processes the VM started (`--extension PROGRAM`), for its jail's cgroup.
    public var extensionProcesses: [Int32] { (vm as? LinuxVM)?.extensionProcesses ?? [] }
}
