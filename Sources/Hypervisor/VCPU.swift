import Host
import KVM
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One virtual CPU. `run()` is called from the vCPU's own thread; `kick()` from any thread.
public final class VCPU: @unchecked Sendable {
    public let index: Int
    @usableFromInline let kvm: KVMVCPU
    /// The thread that runs this vCPU, recorded by `attachToCurrentThread()`, for kicks.
    private let thread = Mutex<ThreadHandle?>(nil)

    init(_ kvm: KVMVCPU, index: Int) {
        self.kvm = kvm
        self.index = index
    }

    /// Runs the guest until the next exit. Allocation-free: the exit is a value enum.
    @inlinable @inline(__always)
    public func run() throws(HypervisorError) -> VMExit {
        let reason: KVMVCPU.ExitReason
        do { reason = try kvm.run() } catch {
            if error.errno == EFAULT {
                throw HypervisorError(.guestFault, "guest access faulted in the host (KVM_RUN: EFAULT)")
            }
            throw HypervisorError(error)
        }
        switch reason {
        case .io:
            return .portIO(PortIOExit(port: kvm.ioPort, size: kvm.ioSize, count: kvm.ioCount, isWrite: kvm.ioIsOut))
        case .mmio:
            return .mmio(MMIOExit(address: kvm.mmioAddress, size: kvm.mmioData.count, isWrite: kvm.mmioIsWrite))
        case .hlt: return .halted
        case .shutdown: return .shutdown
        case .failEntry: return .failedEntry(reason: kvm.failEntryReason)
        case .internalError: return .internalError(suberror: kvm.internalSuberror)
        case .systemEvent: return .systemEvent(type: kvm.systemEventType)
        case .interrupted: return .kicked
        case .debug:
            return .debug(DebugExit(exception: kvm.debugException, pc: kvm.debugPC, dr6: kvm.debugDR6, dr7: kvm.debugDR7))
        case .other(let r): return .unknown(reason: r)
        }
    }

    /// Data of the last port-I/O exit: `size * count` bytes; write into it to answer an IN.
    @inlinable @inline(__always)
    public var ioData: UnsafeMutableRawBufferPointer { kvm.ioData }

    /// Data of the last MMIO exit (up to 8 bytes); write into it to answer a read.
    @inlinable @inline(__always)
    public var mmioData: UnsafeMutableRawBufferPointer { kvm.mmioData }

    public func registers() throws(HypervisorError) -> Registers {
        do { return try kvm.registers() } catch { throw HypervisorError(error) }
    }

    public func setRegisters(_ r: Registers) throws(HypervisorError) {
        do { try kvm.setRegisters(r) } catch { throw HypervisorError(error) }
    }

    public func specialRegisters() throws(HypervisorError) -> SpecialRegisters {
        do { return try kvm.specialRegisters() } catch { throw HypervisorError(error) }
    }

    public func setSpecialRegisters(_ s: SpecialRegisters) throws(HypervisorError) {
        do { try kvm.setSpecialRegisters(s) } catch { throw HypervisorError(error) }
    }

    /// Reads model-specific registers into `values` (index i of `indices` into `values[i]`).
    public func msrs(_ indices: UnsafeBufferPointer<UInt32>, into values: UnsafeMutableBufferPointer<UInt64>) throws(HypervisorError) {
        do { try kvm.msrs(indices, into: values) } catch { throw HypervisorError(error) }
    }

    /// Queues external interrupt `vector` (for machines without the in-kernel irqchip).
    public func injectInterrupt(vector: UInt32) throws(HypervisorError) {
        do { try kvm.injectInterrupt(vector: vector) } catch { throw HypervisorError(error) }
    }

    /// How many data words KVM gave with the last internal-error exit (at most 16).
    public var internalErrorDataCount: Int { kvm.internalDataCount }

    /// Data word `index` of the last internal-error exit (0 outside 0..<16).
    public func internalErrorData(_ index: Int) -> UInt64 { kvm.internalData(index) }

    public func setCPUID(_ leaves: [CPUIDLeaf]) throws(HypervisorError) {
        do { try kvm.setCPUID(leaves) } catch { throw HypervisorError(error) }
    }

    /// Writes model-specific registers (index, value).
    public func setMSRs(_ msrs: [(index: UInt32, value: UInt64)]) throws(HypervisorError) {
        do { try kvm.setMSRs(msrs) } catch { throw HypervisorError(error) }
    }

    /// FPU/SSE control words to their reset values (FCW 0x37F, MXCSR 0x1F80).
    public func initializeFPU() throws(HypervisorError) {
        do { try kvm.initializeFPU() } catch { throw HypervisorError(error) }
    }

    /// LINT0 = ExtINT, LINT1 = NMI on this vCPU's in-kernel local APIC.
    public func configureLocalInterrupts() throws(HypervisorError) {
        do { try kvm.configureLocalInterrupts() } catch { throw HypervisorError(error) }
    }

    /// Guest TSC frequency in Hz.
    public func tscFrequency() throws(HypervisorError) -> UInt64 {
        do { return UInt64(try kvm.tscKHz()) * 1000 } catch {
            if error.errno == EIO { throw HypervisorError(.unsupported, "host TSC is unstable") }
            throw HypervisorError(error)
        }
    }

    /// Records the calling thread as this vCPU's runner, so `kick()` can interrupt KVM_RUN.
    public func attachToCurrentThread() {
        VCPUKick.installHandler()
        // A parent process may have left the kick signal blocked; a blocked kick never interrupts
        // KVM_RUN, so unblock it for this thread whatever mask we inherited.
        Signals.unblock([VCPUKick.signal])
        thread.withLock { $0 = .current }
    }

    /// Forgets the thread `attachToCurrentThread` recorded: call it last on the vCPU thread, so a
    /// later `kick` from another thread signals no thread that has ended.
    public func detachFromCurrentThread() {
        thread.withLock { $0 = nil }
    }

    /// Stops the vCPU: its current or next `run()` returns `.kicked`. Safe from any thread.
    /// immediate_exit covers the window before KVM_RUN; the signal covers a vCPU inside the guest.
    public func kick() {
        kvm.requestImmediateExit()
        thread.withLock { $0?.send(VCPUKick.signal) }
    }

    /// Clears a kick that arrived after the last exit (the loop decided to keep running).
    public func clearKick() { kvm.requestImmediateExit(false) }

    /// Whether a kick is waiting for the next `run()`. `kick()` sets it before it signals, so a
    /// blocking wait on the vCPU thread looks at it with `kickSignal` blocked, then waits with the
    /// signal unblocked (`Poller.wait(timeoutNanoseconds:interruptibleBy:unless:_:)`).
    public var isKickPending: Bool { kvm.immediateExitRequested }

    /// The signal `kick()` sends the vCPU's thread.
    public static var kickSignal: Int32 { VCPUKick.signal }
}

/// The signal used to interrupt KVM_RUN. Its handler does nothing; installed without SA_RESTART
/// so the ioctl returns EINTR.
enum VCPUKick {
    static let signal = SIGUSR2
    private static let once: Void = Signals.installInterruptingNoOp(signal)

    static func installHandler() { _ = once }
}
