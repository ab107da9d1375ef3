import VMSpec
import Boot
import Backends
import Devices
import GuestMemory
import Host
import Hypervisor
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How a Linux VM run ended (the outcome every guest kind shares); `exitStatus` is what
/// `swiftlet run` exits with.
public typealias LinuxVMOutcome = VMOutcome

/// An in-kernel irqchip line, as a device sees it.
struct KVMInterruptLine: InterruptLine {
    let machine: Machine
    let line: UInt32
    func setLevel(_ high: Bool) { try? machine.setInterruptLine(line, high: high) }
}

/// A Linux microVM: boots a bzImage on 1..N vCPUs with ACPI, the in-kernel irqchip and PIT, and
/// the legacy devices a PC kernel expects (COM1, i8042, CMOS RTC, ACPI PM, a debug-exit port).
public final class LinuxVM: @unchecked Sendable {
    public let config: LinuxConfig
    let memory: GuestMemory
    let machine: Machine
    let vcpus: [VCPU]
    let bus = IOBus()
    let mmio = MMIOBus()
    let serial: Serial16550
    let serialInput: SerialInput
    let virtio: VirtioHub
    /// The lifecycle every guest kind shares: state, pause gate, counters, stop signalling.
    let lifecycle: VMLifecycle
    var pauseGate: PauseGate { lifecycle.pauseGate }
    let i8042: I8042
    /// vCPU exits by reason, for metrics.
    public var exitCounters: ExitCounters { lifecycle.exitCounters }
    /// Where the VM is in its life.
    public var state: VMState { lifecycle.state }
    private let console: VMConsole
    private var devices: [(id: String, device: any VirtioDevice)] = []
    /// Extension processes (`--extension`), in order.
    private var extensions: [ExtensionDevice] = []
    /// The extension processes this VMM started (a jail puts them in the VM's cgroup).
    public var extensionProcesses: [Int32] { extensions.compactMap(\.startedProcess) }
    private let log: VMMLog

    static let debugExitPort: UInt16 = 0xF4
    static let acpiBase: UInt64 = LinuxBootLayout.biosStart
    static let pm1EventPort: UInt16 = 0x600, pm1ControlPort: UInt16 = 0x604
    static let s5SleepType = ACPIPM1ControlBlock.defaultS5SleepType

    /// - Parameters:
    ///   - console: where the serial console goes (stdio, or a socket for `swiftlet api`).
    ///   - kernelBytes: the kernel file's contents when the caller has read it already.
    public init(config: LinuxConfig, logLevel: HvtConfig.LogLevel = .warn, console: VMConsole = .stdio,
                kernelBytes: [UInt8]? = nil, logSink: VMMLogSink? = nil) throws(VMMError) {
        self.config = config
        self.console = console
        log = VMMLog(level: logLevel, sink: logSink)
        guard config.cpus >= 1 else { throw VMMError(.configuration, "\(config.source.cpus(config.cpus)): must be at least 1") }
        guard config.memoryBytes >= LinuxConfig.minimumMemory else {
            throw VMMError(.configuration, "guest memory must be at least \(LinuxConfig.minimumMemory >> 20) MiB for a Linux or PVH kernel (unikernels can use less)")
        }
        let hostMemory = Self.hostMemoryBytes()
        guard hostMemory == 0 || config.memoryBytes <= hostMemory else {
            throw VMMError(.configuration, "guest memory of \(config.memoryBytes >> 20) MiB is more than this host has (\(hostMemory >> 20) MiB)")
        }

        let kernel: KernelImage
        let initrd: [UInt8]?
        do {
            let bytes = try kernelBytes ?? Self.read(config.kernelPath, what: "kernel", limit: config.memoryBytes)
            guard !bytes.isEmpty else { throw VMMError(.configuration, "\(config.kernelPath): kernel is empty") }
            // `swiftlet run` boots Linux; a unikernel there is a mix-up of commands, so name the right one.
            // (The API process and swiftletd tell the kinds apart before they get here.)
            if HvtImage.isSolo5(bytes) {
                throw VMMError(.configuration, "\(config.kernelPath) is a Solo5 hvt unikernel, not a Linux kernel: run it with swiftlet hvt \(config.kernelPath)")
            }
            // An ELF file is a PVH kernel (vmlinux or a freestanding guest); anything else a bzImage.
            if bytes.starts(with: [0x7F, 0x45, 0x4C, 0x46]) {
                kernel = .pvh(try PVHImage(bytes: bytes, name: config.kernelPath))
            } else {
                kernel = .bzImage(try LinuxKernelImage(bytes: bytes, name: config.kernelPath))
            }
            initrd = try config.initrdPath.map { (path) throws(VMMError) in try Self.read(path, what: "initrd", limit: config.memoryBytes) }
        } catch let error as BootError {
            throw VMMError(.configuration, error.message)
        } catch let error as VMMError {
            throw error
        } catch { throw VMMError(.configuration, "\(error)") }

        // Memory, machine and lifecycle as for every kind; RAM on 2 MiB pages where the host has them.
        let builder = try MachineBuilder(regions: LinuxBootLayout.ramRegions(memorySize: config.memoryBytes),
                                         hugePages: true, kvmDevice: config.kvmDevice, log: log)
        memory = builder.memory
        machine = builder.machine
        let lifecycle = builder.lifecycle
        self.lifecycle = lifecycle

        do {
            guard config.cpus <= min(machine.limits.maximumVCPUs, 255) else {
                throw VMMError(.configuration, "\(config.source.cpus(config.cpus)) is more than KVM allows here (\(min(machine.limits.maximumVCPUs, 255)))")
            }
            try machine.createPlatformInterruptControllers()
        } catch let error as HypervisorError {
            throw VMMError(.hypervisor, error.message)
        } catch let error as VMMError {
            throw error
        } catch { throw VMMError(.hypervisor, "\(error)") }

        // Devices on the port-I/O bus.
        let sink = console.sink
        do {
            serialInput = try SerialInput(interrupt: KVMInterruptLine(machine: machine, line: 4)) { [lifecycle] byte in
                lifecycle.consoleBytes.add(1, ordering: .relaxed)
                var b = byte
                withUnsafeBytes(of: &b) { sink.write($0) }
            }
        } catch { throw VMMError(.host, "serial console: \(error)") }
        serial = serialInput.serial
        i8042 = I8042(keyboardInterrupt: KVMInterruptLine(machine: machine, line: 1), onReset: { [lifecycle] in lifecycle.finish(.rebooted) })
        do {
            try bus.register(serial, base: 0x3F8, length: 8)
            try bus.register(i8042, base: I8042.basePort, length: 5)
            try bus.register(CMOSRTC(), base: 0x70, length: 2)
            try bus.register(DebugExitPort { [lifecycle] status in lifecycle.finish(.exited(Int32(status))) }, base: Self.debugExitPort, length: 1)
            try bus.register(ACPIPM1EventBlock(), base: Self.pm1EventPort, length: 4)
            try bus.register(ACPIPM1ControlBlock(s5SleepType: Self.s5SleepType) { [lifecycle] in lifecycle.finish(.poweredOff) },
                             base: Self.pm1ControlPort, length: ACPIPM1ControlBlock.portCount)
        } catch { throw VMMError(.hypervisor, "device setup: \(error)") }

        // PCI: host bridge, config ports, virtio devices (disks in order, network devices, then entropy).
        virtio = try VirtioHub(machine: machine, log: log)
        let hub = virtio
        do {
            let pci = try PCIBus(mmioBus: mmio, onBARMove: { _ in hub.refreshNotifiers() })
            try pci.registerECAM(on: mmio)
            try bus.register(pci.configurationPorts, base: PCIConfigurationPorts.basePort, length: PCIConfigurationPorts.portCount)
            for (index, disk) in config.disks.enumerated() {
                let device: VirtioBlock
                do { device = try VirtioBlock(path: disk.path, readOnly: disk.readOnly) } catch {
                    throw VMMError(.configuration, "\(config.source.disk(disk)): \(error.message)")
                }
                try virtio.attach(device, to: pci, memory: memory)
                devices.append((disk.id ?? "vd" + String(UnicodeScalar(UInt8(ascii: "a") &+ UInt8(truncatingIfNeeded: index))), device))
            }
            for (index, net) in config.nets.enumerated() {
                let device: VirtioNet
                do { device = try VirtioNet(tap: net.tap, mac: net.mac) } catch {
                    throw VMMError(.configuration, "\(config.source.net(net)): \(error.message)")
                }
                try virtio.attach(device, to: pci, memory: memory)
                devices.append((net.id ?? "eth\(index)", device))
            }
            if config.entropy {
                let device = VirtioEntropy()
                try virtio.attach(device, to: pci, memory: memory)
                devices.append(("rng0", device))
            }
            if let vsock = config.vsock {
                let device: VirtioVsock
                do { device = try VirtioVsock(guestCID: vsock.cid, udsPath: vsock.uds) } catch {
                    throw VMMError(.configuration, "\(config.source.vsock(vsock)): \(error.message)")
                }
                try virtio.attach(device, to: pci, memory: memory)
                devices.append(("vsock0", device))
            }
        } catch let error as VMMError {
            throw error
        } catch { throw VMMError(.hypervisor, "PCI setup: \(error)") }

        // Firmware tables and the boot protocol.
        do {
            var acpi = ACPIConfiguration(cpuCount: config.cpus)
            acpi.pm1aEventPort = Self.pm1EventPort
            acpi.pm1aControlPort = Self.pm1ControlPort
            acpi.s5SleepType = Self.s5SleepType
            let pciLayout = PCIBusConfiguration()
            acpi.pciHostBridgeWindow = (UInt32(pciLayout.mmio32.base), UInt32(pciLayout.mmio32.size))
            acpi.pcieECAM = (base: pciLayout.ecamBase, busCount: PCIBusConfiguration.busCount)
            let reserved = pciLayout.e820Reserved.map { (base: $0.base, size: $0.size) }
            let tables = try ACPITables.build(acpi, at: Self.acpiBase)
            try memory.write(tables, at: GuestAddress(Self.acpiBase))
            let boot: LinuxBootLayout.BootState
            switch kernel {
            case .bzImage(let image):
                boot = try LinuxBootLayout.build(kernel: image, initrd: initrd, commandLine: config.commandLine,
                                                 rsdp: Self.acpiBase, reserved: reserved, into: memory)
            case .pvh(let image):
                boot = try LinuxBootLayout.buildPVH(kernel: image, initrd: initrd, commandLine: config.commandLine,
                                                    rsdp: Self.acpiBase, reserved: reserved, into: memory)
            }
            let tscDeadline = machine.hasTSCDeadlineTimer
            let cpus = try builder.createVCPUs(config.cpus) { supported, index in
                LinuxCPUID.leaves(from: supported, vcpuIndex: index, vcpuCount: config.cpus, tscDeadline: tscDeadline)
            }
            for vcpu in cpus {
                try vcpu.setMSRs(LinuxCPUID.initialMSRs)
                try vcpu.initializeFPU()
                try vcpu.configureLocalInterrupts()
            }
            try Self.setBootState(cpus[0], boot)
            vcpus = cpus
        } catch let error as BootError {
            throw VMMError(.configuration, error.message)
        } catch let error as HypervisorError {
            throw VMMError(.hypervisor, error.message)
        } catch let error as GuestMemoryError {
            throw VMMError(.configuration, "\(error)")
        } catch { throw VMMError(.hypervisor, "\(error)") }

        // Extension processes last, so no VM that failed to build leaves one running; their
        // ranges join the buses before any vCPU runs.
        for spec in config.extensions.specs {
            let line = spec.irq.map { KVMInterruptLine(machine: machine, line: $0) }
            do throws(VMMError) {
                extensions.append(try ExtensionDevice(spec, confinement: config.extensions, ports: bus, mmio: mmio, memory: memory,
                                                      line: line, log: log))
            } catch {
                for started in extensions { started.stop() }
                throw error
            }
        }
    }

    deinit { for device in extensions { device.stop() } }

    /// The kernel or initrd file, whole: a regular file no larger than guest memory (`limit`).
    static func read(_ path: String, what: String, limit: UInt64) throws(VMMError) -> [UInt8] {
        let bytes: [UInt8]
        do { bytes = try ImageFile.read(path, for: what, limit: limit) } catch {
            throw VMMError(.configuration, error.description)
        }
        guard !bytes.isEmpty else { throw VMMError(.configuration, "\(path): \(what) is empty") }
        return bytes
    }

    /// MemTotal from /proc/meminfo, or 0 when unknown.
    static func hostMemoryBytes() -> UInt64 {
        guard let text = try? readWholeFile("/proc/meminfo") else { return 0 }
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") where line.hasPrefix("MemTotal:") {
            let kb = line.split(separator: " ").dropFirst().first.flatMap { UInt64($0) } ?? 0
            return kb << 10
        }
        return 0
    }

    /// The two kernel formats `swiftlet run` boots.
    enum KernelImage {
        case bzImage(LinuxKernelImage)
        case pvh(PVHImage)
    }

    static func setBootState(_ vcpu: VCPU, _ boot: LinuxBootLayout.BootState) throws(HypervisorError) {
        var s = try vcpu.specialRegisters()
        let longMode = boot.mode == .longMode
        let code = Segment(selector: LinuxBootLayout.codeSelector, limit: 0xFFFF_FFFF, type: 0xB, db: !longMode, l: longMode)
        let data = Segment(selector: LinuxBootLayout.dataSelector, limit: 0xFFFF_FFFF, type: 0x3, db: true)
        s.cs = code
        s.ds = data; s.es = data; s.fs = data; s.gs = data; s.ss = data
        s.tr = Segment(selector: 0, limit: 0x67, type: 0xB, s: false, g: false)
        s.gdt = DescriptorTable(base: LinuxBootLayout.gdtBase, limit: 0x1F)
        s.idt = DescriptorTable(base: 0, limit: 0)
        var r = Registers()
        r.rip = boot.entry
        r.rflags = 0x2
        if longMode {
            s.cr0 = LinuxBootLayout.cr0
            s.cr3 = LinuxBootLayout.pml4
            s.cr4 = LinuxBootLayout.cr4
            s.efer = LinuxBootLayout.efer
            r.rsi = boot.zeroPage
            r.rsp = boot.stackPointer
            r.rbp = boot.stackPointer
        } else {
            // PVH: protected mode, paging off (PE | ET), EBX = hvm_start_info.
            s.cr0 = 0x11
            s.cr3 = 0
            s.cr4 = 0
            s.efer = 0
            r.rbx = boot.zeroPage
        }
        try vcpu.setSpecialRegisters(s)
        try vcpu.setRegisters(r)
    }

    /// Runs the VM until it powers off, reboots, fails, or a signal arrives (`VMLifecycle.run`);
    /// the console and the virtio devices start first, in the run's thread.
    public func run() -> LinuxVMOutcome {
        var input: ConsoleInput?
        defer { input?.restoreTerminal() }
        defer { for device in extensions { device.stop() } }
        return lifecycle.run(vcpus, setUp: {
            switch console {
            case .stdio:
                input = ConsoleInput(input: serialInput) { [lifecycle] in lifecycle.finish(.stopped(signal: SIGINT)) }
                input?.start()
            case .socket(let socket):
                socket.startInput { [serialInput] bytes in serialInput.feed(bytes) }
            case .stream(let stream):
                stream.startInput { [serialInput] bytes in serialInput.feed(bytes) }
            }
            do throws(VMMError) { try virtio.start() } catch {
                lifecycle.finish(.failed(error.message))
            }
            lifecycle.watchForSilence(seconds: Self.silenceWarningSeconds) { [log] in log.warn(Self.silenceWarning()) }
        }, exitLoop: { [self] vcpu in exitLoop(vcpu) })
    }

    /// Whether this host's KVM is kvm_pvm (a paravirtual software KVM that cannot boot Linux).
    static var onKVMPVM: Bool { FileSystem.kind(of: "/sys/module/kvm_pvm") == .directory }

    /// How long a guest may say nothing on its console before we say so.
    static let silenceWarningSeconds = 5

    /// What a silent guest may mean; on kvm_pvm (a software KVM) it is almost certainly that.
    static func silenceWarning() -> String {
        var text = "the guest has written nothing to its console for \(silenceWarningSeconds) s"
        if onKVMPVM {
            text += "; this host's KVM is kvm_pvm, a software KVM on which Linux does not boot (use a host with VMX or SVM)"
        } else {
            text += " (is console=ttyS0 on its command line? the run goes on)"
        }
        return text
    }

    private var stopping: Bool { lifecycle.isEnding }

    // MARK: Control from another thread (the API)

    /// Ends the run as if signal `signal` had arrived; `run()` returns `.stopped(signal:)`.
    public func requestStop(signal: Int32) { lifecycle.requestStop(signal: signal) }

    /// Parks every vCPU outside the guest; returns once none runs guest code (`VMLifecycle.pause`).
    public func pause() throws(VMMError) {
        try lifecycle.pause(vcpus)
    }

    /// Lets the vCPUs run again.
    public func resume() { lifecycle.resume() }

    /// Presses Ctrl+Alt+Del on the i8042 keyboard: a Linux guest reboots (and the VM ends).
    /// One scan code at a time, each with its own IRQ 1, waiting for the guest to read it before
    /// the next, as a real keyboard's bytes arrive. A byte still unread after 50 ms gets IRQ 1
    /// again: an edge raised while the guest was busy (a nested KVM, an idle guest waking) was
    /// seen to get lost, and a spare one is harmless (the guest's handler finds the buffer empty).
    /// A byte unread after 2 s (a guest with no keyboard driver), or a paused VM, ends the
    /// waiting: the remaining bytes are queued at once for the guest to read when it can.
    public func sendCtrlAltDel() {
        var waiting = !pauseGate.isPaused
        for code in i8042.ctrlAltDelScanCodes() {
            guard i8042.sendKeyboardByte(code) else { return }
            if waiting { waiting = waitUntilKeyboardRead() }
        }
    }

    /// Waits up to 2 s for the guest to read the keyboard's bytes, raising IRQ 1 again every
    /// 50 ms. False when it gave up.
    private func waitUntilKeyboardRead() -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(2)
        var retry = clock.now + .milliseconds(50)
        while !i8042.isOutputEmpty && !lifecycle.isEnding {
            let now = clock.now
            if now >= deadline { return false }
            if now >= retry {
                i8042.repeatKeyboardInterrupt()
                retry = now + .milliseconds(50)
            }
            Clock.sleep(milliseconds: 1)
        }
        return true
    }

    /// Per-device counters, in bus order.
    public var deviceStatistics: [DeviceStatistics] {
        devices.map { entry in
            switch entry.device {
            case let blk as VirtioBlock:
                DeviceStatistics(id: entry.id, kind: "block", requests: blk.requests, bytesIn: blk.bytesRead, bytesOut: blk.bytesWritten)
            case let net as VirtioNet:
                DeviceStatistics(id: entry.id, kind: "net", requests: net.rxFrames + net.txFrames, bytesIn: net.rxBytes, bytesOut: net.txBytes)
            case let rng as VirtioEntropy:
                DeviceStatistics(id: entry.id, kind: "rng", requests: rng.requests, bytesIn: rng.bytesProvided, bytesOut: 0)
            default:
                DeviceStatistics(id: entry.id, kind: "vsock", requests: 0, bytesIn: 0, bytesOut: 0)
            }
        }
    }

    /// One vCPU's exit loop. Returns an outcome to end the VM, or nil when told to stop.
    func exitLoop(_ vcpu: VCPU) -> LinuxVMOutcome? {
        while true {
            let exit: VMExit
            do { exit = try vcpu.run() } catch {
                return .failed("vCPU \(vcpu.index): KVM: \(error.message)")
            }
            switch exit {
            case .portIO(let io):
                exitCounters.portIO.add(1, ordering: .relaxed)
                let data = vcpu.ioData
                PortIOAssist.forEachItem(of: io, data: data) { _, item in
                    if io.isWrite {
                        _ = bus.write(port: io.port, size: io.size, value: PortIOAssist.value(of: item))
                    } else {
                        PortIOAssist.store(bus.read(port: io.port, size: io.size), into: item)
                    }
                }
            case .mmio(let m):
                // Unclaimed addresses read as all ones and drop writes, as a PC's bus does.
                exitCounters.mmio.add(1, ordering: .relaxed)
                let d = vcpu.mmioData
                if m.isWrite {
                    _ = mmio.write(address: m.address, data: UnsafeRawBufferPointer(d))
                } else {
                    _ = mmio.read(address: m.address, into: d)
                }
            case .kicked:
                exitCounters.kick.add(1, ordering: .relaxed)
                guard pauseGate.continueAfterKick(vcpu, stopping: { stopping }) else { return nil }
            case .halted:
                exitCounters.halt.add(1, ordering: .relaxed)
                continue
            case .shutdown:
                if stopping { return nil }
                return .failed("guest triple fault (vCPU \(vcpu.index))" + RegisterSummary.dump(vcpu, control: .all))
            case .systemEvent(let type):
                // KVM_SYSTEM_EVENT_SHUTDOWN = 1, RESET = 2, CRASH = 3.
                return type == 2 ? .rebooted : type == 1 ? .poweredOff : .failed("guest crashed (system event \(type))")
            case .failedEntry(let reason):
                return .failed("KVM: entry failure \(reason.hexString) on vCPU \(vcpu.index)" + RegisterSummary.dump(vcpu, control: .all))
            case .internalError(let sub):
                return .failed("KVM: internal error \(sub) on vCPU \(vcpu.index)" + (sub == 1 ? " (instruction emulation failed" + (Self.onKVMPVM ? "; this host's KVM is kvm_pvm, a software KVM on which Linux does not boot)" : ")") : "") + RegisterSummary.dump(vcpu, control: .all))
            case .debug:
                exitCounters.other.add(1, ordering: .relaxed)
                continue
            case .unknown(let reason):
                return .failed("KVM: unhandled exit \(reason) on vCPU \(vcpu.index)" + RegisterSummary.dump(vcpu, control: .all))
            }
        }
    }
}

extension LinuxVM: VirtualMachine {
    public func runToOutcome() -> VMOutcome { run() }
}
