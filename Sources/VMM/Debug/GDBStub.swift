import GDBRemote
import GuestMemory
import Host
import Hypervisor
import Synchronization

/// A GDB stub for one x86-64 vCPU (`swiftlet hvt --gdb`, as solo5-hvt-debug's): listens on
/// 127.0.0.1, serves GDB's remote protocol while the guest is stopped, arms KVM's guest debugging
/// for software breakpoints (INT3 written into guest memory), the four debug registers and
/// single steps, and watches for Ctrl-C while the guest runs. All calls except `requestStop`
/// come from the vCPU thread.
final class GDBStub: @unchecked Sendable {
    /// What the exit loop does after the debugger had its say.
    enum Outcome: Equatable {
        /// Run the guest (debugging on, or, after detach, off).
        case run
        /// The debugger killed the guest: end the VM.
        case kill
    }

    /// GDB's default port, and solo5-hvt-debug's.
    static let defaultPort: UInt16 = 1234
    /// Software breakpoints a session may hold (each is one byte of guest memory saved).
    static let maximumSoftwareBreakpoints = 4096

    let port: UInt16
    private let listener: LoopbackListener
    private let memory: GuestMemory
    private let vcpu: VCPU
    private let log: VMMLog
    private let kernelPath: String
    private var connection: StreamConnection?
    private var session: GDBSession?
    private var target: Target?
    /// Set by the Ctrl-C watcher (then it kicks the vCPU): the exit loop's next kick is ours.
    private let interruptPending = Atomic<Bool>(false)
    private let disconnected = Atomic<Bool>(false)
    private var watcher: VCPUThread?
    private var watcherCancel: EventFD?
    private let stopping: @Sendable () -> Bool

    /// Binds the port now, so a port in use is an error before the guest exists.
    init(port: UInt16, memory: GuestMemory, vcpu: VCPU, log: VMMLog, kernelPath: String,
         stopping: @escaping @Sendable () -> Bool) throws(VMMError) {
        do { listener = try LoopbackListener(port: port) } catch {
            throw VMMError(.configuration, "--gdb-port=\(port): \(error)")
        }
        self.port = port
        self.memory = memory
        self.vcpu = vcpu
        self.log = log
        self.kernelPath = kernelPath
        self.stopping = stopping
    }

    /// Whether a debugger is attached (false before it connects and after it detaches).
    var isAttached: Bool { session != nil }

    /// Waits for the debugger, then serves it with the guest stopped before its first
    /// instruction. False when the VM was stopped while waiting.
    func attachBeforeFirstInstruction() -> Outcome? {
        log.warn("Waiting for a debugger. Connect to it like this:")
        log.warn("\tgdb --ex=\"target remote localhost:\(port)\" KERNEL")
        let accepted: StreamConnection?
        do { accepted = try listener.accept(shouldStop: stopping) } catch {
            log.error("gdb: \(error)")
            return nil
        }
        guard let accepted else { return nil }
        log.warn("Connection from debugger at 127.0.0.1")
        connection = accepted
        let target = Target(memory: memory, vcpu: vcpu)
        self.target = target
        session = GDBSession(transport: Transport(connection: accepted, stopping: stopping), target: target)
        return serve(.signal(5), announce: false)
    }

    /// A debug exit: report why and serve until the debugger resumes.
    func stopped(by exit: DebugExit) -> Outcome {
        guard let target else { return .run }
        stopWatcher()
        if exit.isSoftwareBreakpoint {
            // KVM reports the INT3's own address (VMX and SVM alike); a KVM that reported the
            // address after it gets rip moved back onto the breakpoint, as GDB expects.
            if !target.hasSoftwareBreakpoint(at: exit.pc), exit.pc > 0, target.hasSoftwareBreakpoint(at: exit.pc - 1),
               var r = try? vcpu.registers() {
                r.rip = exit.pc - 1
                try? vcpu.setRegisters(r)
                return serve(.softwareBreakpoint)
            }
            if !target.hasSoftwareBreakpoint(at: exit.pc) {
                // The guest's own INT3, not ours: step past it as the CPU would have.
                if var r = try? vcpu.registers() { r.rip = exit.pc &+ 1; try? vcpu.setRegisters(r) }
                return serve(.signal(5))
            }
            return serve(.softwareBreakpoint)
        }
        if let slot = exit.hardwareSlot, let bp = target.hardware(slot) {
            if bp.trigger == .execute { return serve(.hardwareBreakpoint) }
            return serve(.watchpoint(bp.trigger == .write ? .writeWatch : .accessWatch, address: bp.address))
        }
        return serve(.signal(5))
    }

    /// An instruction KVM could not emulate: if it is one of our INT3s, a breakpoint hit (nil
    /// otherwise). A KVM that emulates guest code (kvm_pvm) fails to emulate INT3 in 64-bit mode
    /// instead of reporting the #BP as a debug exit; hardware KVM never gets here for INT3.
    func emulationFailed() -> Outcome? {
        guard let target, let r = try? vcpu.registers(), target.hasSoftwareBreakpoint(at: r.rip) else { return nil }
        stopWatcher()
        return serve(.softwareBreakpoint)
    }

    /// A stop the tender found (a triple fault): the debugger may look before the run ends.
    func stopped(at stop: GDBStop) -> Outcome {
        guard target != nil else { return .run }
        stopWatcher()
        return serve(stop)
    }

    /// The exit loop was kicked: true (and the stop served) if the kick was the debugger's
    /// Ctrl-C or its connection dropping; false if the kick was somebody else's.
    func takeKick(outcome: inout Outcome) -> Bool {
        if disconnected.exchange(false, ordering: .sequentiallyConsistent) {
            stopWatcher()
            detach(reason: "Debugger disconnected; the guest runs on")
            outcome = .run
            return true
        }
        guard interruptPending.exchange(false, ordering: .sequentiallyConsistent) else { return false }
        stopWatcher()
        outcome = serve(.signal(2))
        return true
    }

    /// The guest exited: GDB sees the status.
    func guestExited(status: Int32) {
        stopWatcher()
        session?.reportExit(status: status)
        session = nil
        connection = nil
    }

    /// The tender ended the guest for a fault: GDB sees it end with SIGSEGV-like termination.
    func guestTerminated(signal: UInt8) {
        stopWatcher()
        session?.reportTermination(signal: signal)
        session = nil
        connection = nil
    }

    // MARK: Serving

    private func serve(_ stop: GDBStop, announce: Bool = true) -> Outcome {
        guard let session, let target else { return .run }
        switch session.serve(stop: stop, announce: announce) {
        case .resume:
            return resume(step: false, target: target)
        case .step:
            return resume(step: true, target: target)
        case .detach:
            detach(reason: "Debugger detached; the guest runs on")
            return .run
        case .kill:
            log.warn("Debugger killed the guest")
            self.session = nil
            connection = nil
            return .kill
        case .disconnected:
            if stopping() { return .kill }
            detach(reason: "Debugger disconnected; the guest runs on")
            return .run
        }
    }

    private func resume(step: Bool, target: Target) -> Outcome {
        do { try vcpu.setGuestDebug(target.guestDebug(singleStep: step)) } catch {
            log.error("gdb: \(error.message)")
        }
        startWatcher()
        return .run
    }

    /// Takes every breakpoint out of the guest and lets it run without a debugger.
    private func detach(reason: String) {
        target?.removeAll()
        try? vcpu.setGuestDebug(GuestDebug())
        log.warn(reason)
        session = nil
        connection = nil
        target = nil
    }

    // MARK: Ctrl-C while the guest runs

    private func startWatcher() {
        guard let connection, let session, let cancel = try? EventFD() else { return }
        watcherCancel = cancel
        watcher = try? VCPUThread(name: "gdb-watch") { [self] in
            var byte = [UInt8](repeating: 0, count: 256)
            while true {
                let ready = connection.waitReadable(or: cancel.fd)
                if ready & 2 != 0 { return }
                guard ready & 1 != 0 else { continue }
                // Only end of stream (or an error) ends the wait; a signal is retried.
                let n = byte.withUnsafeMutableBytes { connection.read(into: $0, shouldStop: { false }) }
                guard let n else {
                    disconnected.store(true, ordering: .sequentiallyConsistent)
                    vcpu.kick()
                    return
                }
                if session.takeRunningInput(byte[0..<n]) {
                    interruptPending.store(true, ordering: .sequentiallyConsistent)
                    vcpu.kick()
                    return
                }
            }
        }
    }

    private func stopWatcher() {
        guard let watcher, let watcherCancel else { return }
        watcherCancel.signal()
        watcher.join()
        self.watcher = nil
        self.watcherCancel = nil
    }

    // MARK: Transport and target

    private final class Transport: GDBTransport {
        let connection: StreamConnection
        let stopping: () -> Bool
        init(connection: StreamConnection, stopping: @escaping () -> Bool) {
            self.connection = connection
            self.stopping = stopping
        }
        func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int? { connection.read(into: buffer, shouldStop: stopping) }
        func send(_ bytes: [UInt8]) -> Bool { connection.write(bytes) }
    }

    /// The vCPU and guest memory as GDB sees them: guest-virtual addresses go through the vCPU's
    /// page tables (KVM_TRANSLATE), every access is bounds-checked against guest memory.
    final class Target: GDBTarget {
        let memory: GuestMemory
        let vcpu: VCPU
        /// Guest-virtual address of each software breakpoint -> (guest-physical, saved byte).
        private var software: [UInt64: (physical: UInt64, saved: UInt8)] = [:]
        private var hardwareSlots: [GuestDebug.HardwareBreakpoint?] = Array(repeating: nil, count: GuestDebug.hardwareSlots)
        static let int3: UInt8 = 0xCC

        init(memory: GuestMemory, vcpu: VCPU) {
            self.memory = memory
            self.vcpu = vcpu
        }

        func hasSoftwareBreakpoint(at address: UInt64) -> Bool { software[address] != nil }
        func hardware(_ slot: Int) -> GuestDebug.HardwareBreakpoint? { hardwareSlots[slot] }

        func guestDebug(singleStep: Bool) -> GuestDebug {
            // INT3 is always trapped while a debugger is attached: GDB may also write its own
            // breakpoints with M packets.
            GuestDebug(singleStep: singleStep, softwareBreakpoints: true, hardware: hardwareSlots.compactMap { $0 })
        }

        func readRegisters() -> AMD64Registers? {
            guard let r = try? vcpu.registers(), let s = try? vcpu.specialRegisters(), let f = try? vcpu.fpuState() else { return nil }
            return GDBRegisterMapping.file(r, s, f)
        }

        func writeRegisters(_ registers: AMD64Registers) -> Bool {
            guard let r = try? vcpu.registers(), let s = try? vcpu.specialRegisters(), let f = try? vcpu.fpuState() else { return false }
            let (newR, newS, newF) = GDBRegisterMapping.apply(registers, to: r, s, f)
            do {
                if let newR { try vcpu.setRegisters(newR) }
                if let newS { try vcpu.setSpecialRegisters(newS) }
                if let newF { try vcpu.setFPUState(newF) }
            } catch { return false }
            return true
        }

        /// The guest-physical address of `address`, and how many bytes of its page follow it.
        private func physical(_ address: UInt64) -> (address: UInt64, run: UInt64)? {
            let pageOffset = address & 0xFFF
            let run = 0x1000 - pageOffset
            // KVM_TRANSLATE walks the vCPU's page tables; a KVM without it (or a guest not yet
            // paging) gets the identity mapping hvt guests use.
            do {
                guard let translated = try vcpu.translate(address) else { return nil }
                return (translated, run)
            } catch {
                return (address, run)
            }
        }

        func readMemory(at address: UInt64, count: Int) -> [UInt8] {
            var out: [UInt8] = []
            var at = address, left = UInt64(count)
            while left > 0 {
                guard let (gpa, run) = physical(at) else { break }
                let n = min(run, left)
                guard let bytes = try? memory.read(at: GuestAddress(gpa), count: n) else { break }
                out += bytes
                left -= n
                guard at <= UInt64.max - n else { break }
                at += n
            }
            return out
        }

        func writeMemory(at address: UInt64, bytes: [UInt8]) -> Bool {
            // Resolve every page first, so a write is whole or not at all.
            var pieces: [(gpa: UInt64, range: Range<Int>)] = []
            var at = address, done = 0
            while done < bytes.count {
                guard let (gpa, run) = physical(at) else { return false }
                let n = Int(min(run, UInt64(bytes.count - done)))
                guard memory.contains(GuestAddress(gpa), count: UInt64(n)) else { return false }
                pieces.append((gpa, done..<done + n))
                done += n
                guard at <= UInt64.max - UInt64(n) else { return done == bytes.count }
                at += UInt64(n)
            }
            for piece in pieces {
                do { try memory.write(Array(bytes[piece.range]), at: GuestAddress(piece.gpa)) } catch { return false }
            }
            return true
        }

        func insertBreakpoint(_ kind: GDBRequest.BreakpointKind, address: UInt64, length: UInt64) -> GDBBreakpointResult {
            switch kind {
            case .software:
                if software[address] != nil { return .done }
                guard software.count < GDBStub.maximumSoftwareBreakpoints, let (gpa, _) = physical(address),
                      let saved = try? memory.load(UInt8.self, at: GuestAddress(gpa)),
                      (try? memory.store(Self.int3, at: GuestAddress(gpa))) != nil else { return .failed }
                software[address] = (gpa, saved)
                return .done
            case .hardware, .writeWatch, .accessWatch:
                let trigger: GuestDebug.Trigger = kind == .hardware ? .execute : kind == .writeWatch ? .write : .readWrite
                let bp = GuestDebug.HardwareBreakpoint(address: address, trigger: trigger, length: Int(min(length, 8)))
                if hardwareSlots.contains(bp) { return .done }
                guard length <= 8, GuestDebug.isValid(length: Int(length), at: address, trigger: trigger),
                      let free = hardwareSlots.firstIndex(of: nil) else { return .failed }
                hardwareSlots[free] = bp
                return applyHardware()
            case .readWatch:
                // x86 debug registers cannot fire on reads alone.
                return .unsupported
            }
        }

        func removeBreakpoint(_ kind: GDBRequest.BreakpointKind, address: UInt64, length: UInt64) -> GDBBreakpointResult {
            switch kind {
            case .software:
                guard let bp = software.removeValue(forKey: address) else { return .done }
                return (try? memory.store(bp.saved, at: GuestAddress(bp.physical))) != nil ? .done : .failed
            case .hardware, .writeWatch, .accessWatch:
                for i in hardwareSlots.indices where hardwareSlots[i]?.address == address {
                    let t = hardwareSlots[i]!.trigger
                    if (kind == .hardware) == (t == .execute) && (kind != .writeWatch || t == .write) { hardwareSlots[i] = nil }
                }
                return applyHardware()
            case .readWatch:
                return .unsupported
            }
        }

        /// Arms the debug registers at once (GDB may insert one while the guest is stopped and
        /// read the registers before resuming).
        private func applyHardware() -> GDBBreakpointResult {
            (try? vcpu.setGuestDebug(guestDebug(singleStep: false))) != nil ? .done : .failed
        }

        /// Restores every byte a software breakpoint replaced and clears the debug registers.
        func removeAll() {
            for (_, bp) in software { try? memory.store(bp.saved, at: GuestAddress(bp.physical)) }
            software.removeAll()
            hardwareSlots = Array(repeating: nil, count: GuestDebug.hardwareSlots)
        }
    }
}
