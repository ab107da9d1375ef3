import VMSpec
import Boot
import Host
import Hypervisor
#if canImport(Glibc)
import Glibc
#endif

/// One VM described in Firecracker's terms, whatever it boots: a Linux kernel (bzImage or PVH
/// ELF) runs as a ``LinuxVM``, a Solo5 hvt unikernel under the ``HvtTender``. The API process
/// builds one at InstanceStart, runs it on a thread of its own and pauses, resumes or stops it
/// from the API thread.
public final class MicroVM: @unchecked Sendable {
    /// What runs underneath.
    public enum Engine: Sendable {
        case linux(LinuxVM)
        case hvt(HvtTender)
    }

    public let engine: Engine
    public let vcpuCount: Int
    public let memoryMiB: UInt64

    /// Reads the kernel once, tells the kind from it, then builds the VM (every file opened, every check done).
    public init(_ config: FirecrackerConfig, console: VMConsole = .stdio, logLevel: HvtConfig.LogLevel = .warn,
                logSink: VMMLogSink? = nil) throws(VMMError) {
        let path = config.bootSource.kernelImagePath
        let kernel: [UInt8]
        do { kernel = try readWholeFile(path) } catch {
            throw VMMError(.configuration, "\(path): \(HostError.text(errno: error.errno))")
        }
        if HvtImage.isSolo5(kernel) {
            var hvt = try config.hvtConfig()
            hvt.logLevel = logLevel
            engine = .hvt(try HvtTender(config: hvt, console: console, kernelBytes: kernel, logSink: logSink))
            vcpuCount = 1
            memoryMiB = hvt.memoryMiB
        } else {
            let linux = try config.linuxConfig()
            engine = .linux(try LinuxVM(config: linux, logLevel: logLevel, console: console, kernelBytes: kernel, logSink: logSink))
            vcpuCount = linux.cpus
            memoryMiB = linux.memoryBytes >> 20
        }
    }

    public var isUnikernel: Bool { if case .hvt = engine { true } else { false } }

    /// Runs until the guest ends or `requestStop`; returns the process exit status (as
    /// `swiftlet run` / `swiftlet hvt` would: 128+N after a stop requested with signal N).
    public func run() -> Int32 {
        switch engine {
        case .linux(let vm):
            return vm.run().exitStatus
        case .hvt(let tender):
            let status = tender.run()
            if let signal = tender.requestedStopSignal { return 128 + signal }
            return status
        }
    }

    /// Runs the VM on a thread of its own (named `vmm`); `onExit` gets `run()`'s status there.
    public func start(onExit: @escaping @Sendable (Int32) -> Void) throws(VMMError) {
        do {
            _ = try VCPUThread(name: "vmm") { [self] in onExit(run()) }
        } catch { throw VMMError(.host, error.message) }
    }

    public func requestStop(signal: Int32) {
        switch engine {
        case .linux(let vm): vm.requestStop(signal: signal)
        case .hvt(let tender): tender.requestStop(signal: signal)
        }
    }

    public func pause() throws(VMMError) {
        switch engine {
        case .linux(let vm): try vm.pause()
        case .hvt(let tender): try tender.pause()
        }
    }

    public func resume() {
        switch engine {
        case .linux(let vm): vm.resume()
        case .hvt(let tender): tender.resume()
        }
    }

    /// Ctrl+Alt+Del on the keyboard (Linux guests; a unikernel has no keyboard).
    public func sendCtrlAltDel() throws(VMMError) {
        switch engine {
        case .linux(let vm): vm.sendCtrlAltDel()
        case .hvt: throw VMMError(.configuration, "SendCtrlAltDel needs a keyboard; a Solo5 unikernel has none")
        }
    }

    public var exitCounters: ExitCounters {
        switch engine {
        case .linux(let vm): vm.exitCounters
        case .hvt(let tender): tender.exitCounters
        }
    }

    public var deviceStatistics: [DeviceStatistics] {
        switch engine {
        case .linux(let vm): vm.deviceStatistics
        case .hvt(let tender): tender.deviceStatistics
        }
    }
}
