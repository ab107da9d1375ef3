import VMSpec
import Boot
import GuestMemory
import Host
import Hypervisor
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The hvt tender: runs one unmodified Solo5 hvt unikernel on one vCPU, as `solo5-hvt` v0.12.1
/// does, for images of hvt ABI 2 (Solo5 0.8.0 to v0.12.1) and ABI 1 (0.7 and older), chosen by the
/// image's note. `init` validates everything (image, manifest, devices) before the guest runs;
/// `run` enters the guest on a named vCPU thread (and, with the ABI-2 network ring, serves the
/// ring on an I/O thread) and returns the unikernel's exit status.
public final class HvtTender: @unchecked Sendable {
    public let config: HvtConfig
    let memory: GuestMemory
    let machine: Machine
    let vcpu: VCPU
    let hypercalls: HvtHypercalls
    /// The network ring and its kick, when offered to the guest (ABI 2 with a net device).
    private let netRing: (ring: HvtNetRing, kick: EventFD, stop: EventFD)?
    /// Set by the ring's I/O thread when the guest broke the ring: the run ends with this line.
    private let ringFault = Mutex<String?>(nil)
    private let ringStopping = Atomic<Bool>(false)
    /// Set (after `ringFault`) before the ring thread kicks the vCPU, so no kick-clearing race
    /// can hide the fault from the exit loop.
    private let ringFaulted = Atomic<Bool>(false)
    private let deviceNames: [(index: Int, name: String, kind: String)]
    /// The lifecycle every guest kind shares: state, run sequence, pause gate, counters.
    let lifecycle: VMLifecycle
    var pauseGate: PauseGate { lifecycle.pauseGate }
    /// vCPU exits by reason (each hypercall is a port-I/O exit), for metrics.
    public var exitCounters: ExitCounters { lifecycle.exitCounters }
    /// Where the VM is in its life.
    public var state: VMState { lifecycle.state }
    private let log: VMMLog
    /// Guest RAM (without the ring), what a core dump holds.
    private let ram: GuestMemory
    /// `--gdb`: the debugger's stub (bound at init, so a port in use is a configuration error).
    private var gdbStub: GDBStub?
    /// `--dumpcore=DIR`, checked at init.
    private let coreDump: GuestCoreDump?

    /// - Parameters:
    ///   - console: where the unikernel's console output goes (stdout by default).
    ///   - kernelBytes: the image's contents when the caller has read it already.
    ///   - logSink: where messages go instead of stderr (the API process's log).
    public init(config: HvtConfig, console: VMConsole = .stdio, kernelBytes: [UInt8]? = nil, logSink: VMMLogSink? = nil) throws(VMMError) {
        self.config = config
        log = VMMLog(level: config.logLevel, sink: logSink)

        coreDump = try config.dumpCoreDirectory.map { dir throws(VMMError) in try GuestCoreDump(directory: dir) }

        // 1. The image and its manifest.
        var bytes = kernelBytes ?? []
        if kernelBytes == nil {
            // No bigger than the guest's RAM (--mem, checked first as solo5-hvt does): a larger
            // file could not be loaded anyway, and /dev/zero is refused for not being a file.
            let ram = try Self.ramSize(requestedMiB: config.memoryMiB)
            do { bytes = try ImageFile.read(config.kernelPath, for: "kernel", limit: ram) } catch {
                throw VMMError(.configuration, error.description)
            }
        }
        // The image (and the file's bytes it holds) lives only through set-up: a MirageOS unikernel
        // is megabytes that the running VM never reads again.
        let image: HvtImage
        do { image = try HvtImage(bytes: bytes, name: config.kernelPath) } catch {
            throw VMMError(.configuration, error.message)
        }
        var manifest = image.manifest

        // 2. Devices: every declared device attached, nothing undeclared, no name twice.
        var devices = [HvtDevice?](repeating: nil, count: manifest.entries.count)
        var named = Set<String>()
        for block in config.blocks {
            guard named.insert(block.name).inserted else { throw VMMError(.configuration, "device '\(block.name.printable)' given more than once") }
            guard let index = manifest.index(of: block.name, type: .block) else {
                throw VMMError(.configuration, "block device '\(block.name.printable)' is not declared in the unikernel's manifest")
            }
            let disk = try HvtBlockDevice(block)
            manifest.attachBlock(at: index, capacity: disk.capacity, blockSize: UInt16(disk.sectorSize))
            devices[index] = .block(disk)
        }
        // One descriptor adopted twice would be closed twice: refuse before opening anything.
        var descriptors: [Int32: String] = [:]
        for net in config.nets {
            guard let fd = HvtConfig.descriptor(of: net.interface) else { continue }
            if let other = descriptors[fd] {
                throw VMMError(.configuration, "net '\(net.name.printable)': tap descriptor @\(fd) is already attached as '\(other.printable)'")
            }
            descriptors[fd] = net.name
        }
        for net in config.nets {
            guard named.insert(net.name).inserted else { throw VMMError(.configuration, "device '\(net.name.printable)' given more than once") }
            guard let index = manifest.index(of: net.name, type: .net) else {
                throw VMMError(.configuration, "network device '\(net.name.printable)' is not declared in the unikernel's manifest")
            }
            let nic = try HvtNetDevice(net)
            manifest.attachNet(at: index, mac: nic.mac, mtu: nic.mtu)
            devices[index] = .net(nic)
        }
        for (index, entry) in manifest.entries.enumerated() where devices[index] == nil {
            switch entry.type {
            case .block: throw VMMError(.configuration, "block device '\(entry.name.printable)' declared by the unikernel is not attached (use --block:\(entry.name.printable)=PATH)")
            case .net: throw VMMError(.configuration, "network device '\(entry.name.printable)' declared by the unikernel is not attached (use --net:\(entry.name.printable)=IFACE)")
            case .reserved: continue
            }
        }

        // 3. Memory (solo5-hvt's rules), machine, vCPU. With ABI 2 and a network device, 2 MiB
        //    after guest RAM hold the ring, as solo5-hvt v0.12.1 places it.
        let wantsRing = image.abi >= .v2 && devices.contains { if case .net? = $0 { true } else { false } }
        let sizes = try Self.memoryLayout(requestedMiB: config.memoryMiB, ring: wantsRing, log: log)
        var regions = [(base: UInt64(0), size: sizes.ram)]
        if wantsRing { regions.append((sizes.ram, HvtGuestLayout.netRingArea)) }
        let builder = try MachineBuilder(regions: regions, hugePages: false, kvmDevice: config.kvmDevice, log: log,
                                         allocationContext: "Error allocating guest memory: ")
        memory = builder.memory
        machine = builder.machine
        lifecycle = builder.lifecycle
        // Hypercalls, the ring's entries and core dumps see RAM alone, not the ring's area.
        do { ram = wantsRing ? try GuestMemory(regions: [memory.regions[0]]) : memory } catch {
            throw VMMError(.host, "Error allocating guest memory: \(error)")
        }
        let counters = devices.map { _ in DeviceCounters() }
        var ringOffer: (ring: HvtNetRing, kick: EventFD, stop: EventFD)? = nil
        do {
            vcpu = try builder.createVCPUs(1)[0]
            let frequency = try vcpu.tscFrequency()
            if wantsRing, let ringRegion = memory.regions.last {
                ringOffer = Self.offerRing(machine: machine, host: ringRegion.host, ram: ram, devices: devices,
                                           counters: counters, log: log)
            }
            let boot = try HvtGuestLayout.build(image: image, manifest: manifest, arguments: config.arguments,
                                                cpuCycleFrequency: frequency, ramSize: sizes.ram,
                                                netRing: ringOffer == nil ? nil : sizes.ram, into: memory)
            try Self.setInitialState(vcpu, boot)
        } catch let error as HypervisorError {
            throw VMMError(.hypervisor, error.message)
        } catch let error as BootError {
            throw VMMError(.configuration, error.message)
        } catch {
            throw VMMError(.hypervisor, "\(error)")
        }
        netRing = ringOffer
        hypercalls = try HvtHypercalls(memory: ram, devices: devices, counters: counters, console: console.sink)
        hypercalls.kickPending = { [vcpu] in vcpu.isKickPending }
        deviceNames = manifest.entries.enumerated().compactMap { index, entry in
            switch devices[index] {
            case .block?: (index, entry.name, "block")
            case .net?: (index, entry.name, "net")
            case nil: nil
            }
        }
        if config.gdb {
            gdbStub = try GDBStub(port: config.gdbPort, memory: ram, vcpu: vcpu, log: log, kernelPath: config.kernelPath) { [lifecycle] in
                lifecycle.isEnding
            }
        }
        log.info("\(config.kernelPath): \(sizes.ram >> 20) MiB, entry \(image.entry.hexString), \(devices.compactMap { $0 }.count) device(s)")
        log.debug("\(config.kernelPath): Solo5 hvt ABI \(image.abi.rawValue); network I/O: "
                  + (netRing != nil ? "ring at \(sizes.ram.hexString) (HVT_FEATURE_RING_IO, kick port 0x600) and hypercalls"
                     : "hypercalls"))
    }

    /// Guest RAM for `--mem` MiB by solo5-hvt's rules: rounded down to 2 MiB steps (at least
    /// one), at most 4 GiB.
    static func ramSize(requestedMiB: UInt64) throws(VMMError) -> UInt64 {
        let granule = HvtGuestLayout.memoryGranule, maximum = HvtGuestLayout.maximumMemory
        guard requestedMiB > 0, requestedMiB <= 1 << 40 else {
            throw VMMError(.configuration, "Malformed argument to --mem: \(requestedMiB)")
        }
        var size = (requestedMiB << 20) & ~(granule - 1)
        if size == 0 { size = granule }
        guard size <= maximum else {
            throw VMMError(.configuration, "guest memory size \(size) bytes exceeds the max size \(maximum) bytes")
        }
        return size
    }

    /// guest RAM and the whole allocation for `--mem=requestedMiB`, as solo5-hvt v0.12.1 computes
    /// them: rounded down to 2 MiB (at least 2 MiB, with a warning when changed), at most 4 GiB;
    /// with a ring, 2 MiB more, the total again at most 4 GiB.
    static func memoryLayout(requestedMiB: UInt64, ring: Bool, log: VMMLog) throws(VMMError) -> (ram: UInt64, total: UInt64) {
        let maximum = HvtGuestLayout.maximumMemory
        let size = try ramSize(requestedMiB: requestedMiB)
        if size != requestedMiB << 20 { log.warn("adjusting memory to \(size) bytes") }
        guard ring else { return (size, size) }
        let total = min(size + HvtGuestLayout.netRingArea, maximum)
        return (total - HvtGuestLayout.netRingArea, total)
    }

    /// Sets up the ring's kick (an ioeventfd on port 0x600) and engine. Nil, with a warning, when
    /// KVM or the host cannot: the guest then uses hypercalls, as with solo5-hvt.
    private static func offerRing(machine: Machine, host: UnsafeMutableRawPointer, ram: GuestMemory,
                                  devices: [HvtDevice?], counters: [DeviceCounters], log: VMMLog) -> (ring: HvtNetRing, kick: EventFD, stop: EventFD)? {
        let kick: EventFD, stop: EventFD
        do {
            kick = try EventFD()
            stop = try EventFD()
        } catch {
            log.warn("eventfd() failed, falling back to hypercalls: \(error)")
            return nil
        }
        do {
            try machine.attachIONotifier(kick.fd, address: HvtNetRing.kickPort, length: 4, space: .pio)
        } catch {
            log.warn("KVM_IOEVENTFD failed, falling back to hypercalls: \(error.message)")
            return nil
        }
        let ports: [HvtNetRing.Port?] = devices.enumerated().map { index, device in
            guard case .net(let nic)? = device else { return nil }
            return HvtNetRing.Port(io: nic.tap, maxFrame: nic.maxFrame, counters: counters[index])
        }
        // Write the ring's pages now (zeroes, as solo5-hvt does): they are then real pages before
        // the guest runs, not the shared zero page that the guest's first write must replace
        // while the I/O thread reads them.
        host.initializeMemory(as: UInt8.self, repeating: 0, count: HvtNetRing.byteCount)
        let ring = HvtNetRing(ring: host, ram: ram, ports: ports, log: log)
        return (ring, kick, stop)
    }

    static func setInitialState(_ vcpu: VCPU, _ boot: HvtGuestLayout.BootState) throws(HypervisorError) {
        var s = try vcpu.specialRegisters()
        let code = Segment(selector: HvtGuestLayout.codeSelector, limit: 0xFFFF_FFFF, type: 0xB, l: true)
        let data = Segment(selector: HvtGuestLayout.dataSelector, limit: 0xFFFF_FFFF, type: 0x3, db: true)
        s.cs = code
        s.ds = data; s.es = data; s.fs = data; s.gs = data; s.ss = data
        s.tr = Segment(selector: 0, limit: 0xFFFF, type: 0xB, s: false, g: false)
        var ldt = Segment()
        ldt.unusable = true
        s.ldt = ldt
        s.gdt = DescriptorTable(base: HvtGuestLayout.gdtBase, limit: HvtGuestLayout.gdtLimit)
        s.idt = DescriptorTable(base: 0, limit: 0)
        s.cr0 = HvtGuestLayout.cr0
        s.cr3 = HvtGuestLayout.pml4Base
        s.cr4 = HvtGuestLayout.cr4
        s.efer = HvtGuestLayout.efer
        try vcpu.setSpecialRegisters(s)
        var r = Registers()
        r.rip = boot.entry
        r.rsp = boot.stackPointer
        r.rdi = boot.bootInfo
        r.rflags = 0x2
        try vcpu.setRegisters(r)
    }

    /// Runs the unikernel to completion. Returns its exit status (HALT's status, 255 on abort),
    /// or 1 when the guest broke the ABI, the hypervisor failed, or SIGINT/SIGTERM arrived (as
    /// solo5-hvt: "Exiting on signal N"); 129 on SIGHUP, the status solo5-hvt dies with.
    public func run() -> Int32 {
        switch runToOutcome() {
        case .exited(let status): status
        case .stopped(let signal): signal == SIGHUP ? 128 + SIGHUP : 1
        case .failed, .poweredOff, .rebooted: 1
        }
    }

    /// Runs the unikernel (`VMLifecycle.run`; the ring's I/O thread, when offered, starts first
    /// and ends after the vCPU) and returns how the run ended.
    public func runToOutcome() -> VMOutcome {
        var ioThread: VCPUThread?
        defer { stopRingThread(ioThread) }
        let outcome = lifecycle.run([vcpu], setUp: {
            do throws(HypervisorError) { ioThread = try startRingThread() } catch {
                lifecycle.finish(.failed(error.message))
            }
        }, exitLoop: { [self] _ in debuggedRun() })
        if case .stopped(let signal) = outcome { log.error("Exiting on signal \(signal)") }
        return outcome
    }

    /// Starts the ring's I/O thread when the ring is offered. A fault it finds ends the run: the
    /// message is kept and the vCPU kicked, so the exit loop reports it and returns 1.
    private func startRingThread() throws(HypervisorError) -> VCPUThread? {
        guard let netRing else { return nil }
        return try VCPUThread(name: "hvt-net-ring", role: .device) { [self] in
            do {
                try netRing.ring.serve(kick: netRing.kick, stop: netRing.stop) {
                    ringStopping.load(ordering: .relaxed)
                }
            } catch {
                let message = (error as? HvtNetRing.Fault)?.message ?? "net ring: \(error)"
                ringFault.withLock { $0 = message }
                ringFaulted.store(true, ordering: .sequentiallyConsistent)
                vcpu.kick()
            }
        }
    }

    private func stopRingThread(_ thread: VCPUThread?) {
        guard let thread, let netRing else { return }
        ringStopping.store(true, ordering: .relaxed)
        netRing.stop.signal()
        thread.join()
    }

    /// Ends the run from another thread as signal `signal` would (`run` returns 1, like
    /// solo5-hvt on a signal; `runToOutcome` `.stopped(signal:)`).
    public func requestStop(signal: Int32) { lifecycle.requestStop(signal: signal) }

    /// The signal a stop was requested with, or nil.
    public var requestedStopSignal: Int32? {
        if case .stopped(let signal)? = lifecycle.outcome { return signal }
        return nil
    }

    /// Parks the vCPU outside the guest; returns once it runs no guest code.
    public func pause() throws(VMMError) { try lifecycle.pause([vcpu]) }

    /// Lets the vCPU run again.
    public func resume() { lifecycle.resume() }

    /// Per-device counters, in manifest order.
    public var deviceStatistics: [DeviceStatistics] {
        deviceNames.map { hypercalls.counters[$0.index].statistics(id: $0.name, kind: $0.kind) }
    }

    /// The exit loop, after the debugger (with --gdb) had the guest stopped before its first
    /// instruction; a debugger still attached at the end hears how the run ended.
    private func debuggedRun() -> VMOutcome? {
        guard let gdbStub else { return exitLoop() }
        switch gdbStub.attachBeforeFirstInstruction() {
        case nil, .kill?: return .exited(1)
        case .run?: break
        }
        let status = exitLoop()
        // Still attached: the run ended for a fault or a signal, not a guest exit (that reports
        // its status itself). solo5-hvt-debug sends the same X09 at every exit.
        if gdbStub.isAttached { gdbStub.guestTerminated(signal: 9) }
        return status
    }

    /// Writes the core file when --dumpcore asked for one; false when writing it failed.
    private func dumpCore(cookie: UInt64?, signal: UInt16) -> Bool {
        guard let coreDump else { return true }
        return coreDump.write(vcpu: vcpu, memory: ram, cookie: cookie, signal: signal, log: log)
    }

    /// The vCPU exit loop: the hot path. It allocates nothing per exit. Returns how the run
    /// ended, or nil when told to stop.
    func exitLoop() -> VMOutcome? {
        while true {
            let exit: VMExit
            do { exit = try vcpu.run() } catch {
                return fatal("KVM: \(error.message)", registers: true)
            }
            switch exit {
            case .portIO(let io):
                guard io.isWrite, io.size == 4, io.count == 1, io.port > HvtHypercalls.portBase,
                      let number = HvtHypercalls.Number(rawValue: io.port &- HvtHypercalls.portBase) else {
                    return fatal("invalid guest port access: port=\(io.port.hexString)", registers: true)
                }
                exitCounters.portIO.add(1, ordering: .relaxed)
                let address = UInt64(PortIOAssist.value(of: vcpu.ioData))
                do {
                    if number == .halt {
                        let (status, cookie) = try hypercalls.halt(argument: address)
                        // SOLO5_EXIT_ABORT: solo5_abort, a failed assert, a fatal trap (whose
                        // frame is the cookie). A core that could not be written ends with 1.
                        if status == 255, !dumpCore(cookie: cookie, signal: cookie == nil ? 6 : 11) { return .exited(1) }
                        gdbStub?.guestExited(status: status)
                        return .exited(status)
                    }
                    try hypercalls.handle(number, argument: address)
                } catch {
                    return fatal(error.message, registers: false)
                }
            case .kicked:
                exitCounters.kick.add(1, ordering: .relaxed)
                // The debugger's Ctrl-C (or its connection dropping) kicks too; stops and pauses
                // are still decided below.
                var outcome = GDBStub.Outcome.run
                if let gdbStub, gdbStub.takeKick(outcome: &outcome), outcome == .kill { return .exited(1) }
                guard pauseGate.continueAfterKick(vcpu, stopping: {
                    lifecycle.isEnding || ringFaulted.load(ordering: .sequentiallyConsistent)
                }) else {
                    if let fault = ringFault.withLock({ $0 }) { return fatal(fault, registers: false) }
                    return nil
                }
            case .shutdown:
                // With a debugger, stop there first: the registers are the guest's last state.
                if let gdbStub, gdbStub.isAttached { _ = gdbStub.stopped(at: .signal(11)) }
                let status = fatal("guest triple fault (CPU reset)", registers: true)
                _ = dumpCore(cookie: nil, signal: 11)
                return status
            case .halted:
                return fatal("guest halted the CPU with interrupts it cannot receive", registers: true)
            case .mmio(let m):
                return fatal("invalid guest memory access: \(m.isWrite ? "write" : "read") at \(m.address.hexString) (outside guest memory)", registers: true)
            case .failedEntry(let reason):
                return fatal("KVM: entry failure: hardware_entry_failure_reason=\(reason.hexString)", registers: true)
            case .internalError(let suberror):
                if let gdbStub, let outcome = gdbStub.emulationFailed() {
                    if outcome == .kill { return .exited(1) }
                    continue
                }
                return fatal("KVM: internal error exit: suberror=\(suberror.hexString)", registers: true)
            case .systemEvent(let type):
                return fatal("guest system event \(type)", registers: false)
            case .debug(let event):
                if let gdbStub, gdbStub.stopped(by: event) == .kill { return .exited(1) }
            case .unknown(let reason):
                return fatal("KVM: unhandled exit: exit_reason=\(reason.hexString)", registers: true)
            }
        }
    }

    /// Ends the run as crashed with `message` (and, for a fault the guest caused, its last
    /// registers: solo5-hvt shows cr2, the faulting address, of the control registers). Recorded
    /// at once, so the line is logged before a core dump's.
    private func fatal(_ message: String, registers: Bool) -> VMOutcome {
        let outcome = VMOutcome.failed(registers ? message + RegisterSummary.dump(vcpu, control: [.cr2]) : message)
        lifecycle.finish(outcome)
        return outcome
    }
}

extension HvtTender: VirtualMachine {
    public func sendCtrlAltDel() throws(VMMError) {
        throw VMMError(.configuration, "SendCtrlAltDel needs a keyboard; a Solo5 unikernel has none")
    }
}
