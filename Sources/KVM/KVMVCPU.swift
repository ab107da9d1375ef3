import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// A KVM vCPU descriptor and its shared `kvm_run` page. Not thread-safe: one thread runs it, and
/// other threads may only call `requestImmediateExit()`.
public final class KVMVCPU: @unchecked Sendable {
    /// Why KVM_RUN returned, decoded from `kvm_run.exit_reason`.
    public enum ExitReason: Equatable, Sendable {
        case io, mmio, hlt, shutdown, failEntry, internalError, systemEvent, interrupted, debug
        case other(UInt32)
    }

    public let fd: Int32
    public let id: UInt32
    // Internal but usable from inlinable code: the exit path (run and the exit details) is
    // inlined into the exit loops of other modules (VMM, the C ABI), where a call per field
    // showed in profiles.
    @usableFromInline let runPage: UnsafeMutablePointer<kvm_run>
    @usableFromInline let runSize: Int
    /// Keeps the VM descriptor open while this vCPU lives.
    private let vm: KVMVirtualMachine

    init(fd: Int32, run: UnsafeMutableRawPointer, runSize: Int, vm: KVMVirtualMachine, id: UInt32) {
        self.fd = fd
        self.runPage = run.assumingMemoryBound(to: kvm_run.self)
        self.runSize = runSize
        self.vm = vm
        self.id = id
    }

    deinit {
        munmap(UnsafeMutableRawPointer(runPage), runSize)
        close(fd)
    }

    /// Enters the guest until the next exit. A signal that arrives first (a kick) returns
    /// `.interrupted`: EINTR is not retried here, because it is how another thread stops the vCPU.
    @inlinable @inline(__always)
    public func run() throws(KVMError) -> ExitReason {
        let result = ckvmIoctlValue(fd, ckvm_KVM_RUN(), 0)
        if result < 0 {
            let code = errno
            if code == EINTR || code == EAGAIN {
                ckvm_run_set_immediate_exit(runPage, 0)
                return .interrupted
            }
            throw KVMError(operation: "KVM_RUN", errno: code)
        }
        switch ckvm_run_exit_reason(runPage) {
        case ckvm_KVM_EXIT_IO(): return .io
        case ckvm_KVM_EXIT_MMIO(): return .mmio
        case ckvm_KVM_EXIT_HLT(): return .hlt
        case ckvm_KVM_EXIT_SHUTDOWN(): return .shutdown
        case ckvm_KVM_EXIT_FAIL_ENTRY(): return .failEntry
        case ckvm_KVM_EXIT_INTERNAL_ERROR(): return .internalError
        case ckvm_KVM_EXIT_SYSTEM_EVENT(): return .systemEvent
        case ckvm_KVM_EXIT_INTR(): return .interrupted
        case ckvm_KVM_EXIT_DEBUG(): return .debug
        case let other: return .other(other)
        }
    }

    /// Whether `requestImmediateExit` is in force (a kick the next KVM_RUN will return for).
    public var immediateExitRequested: Bool { ckvm_run_immediate_exit(runPage) != 0 }

    /// Makes the current or next KVM_RUN return at once; safe from any thread or a signal handler.
    public func requestImmediateExit(_ on: Bool = true) {
        ckvm_run_set_immediate_exit(runPage, on ? 1 : 0)
    }

    // MARK: Exit details (valid right after run() returned the matching reason)

    @inlinable public var ioIsOut: Bool { ckvm_run_io_direction(runPage) == ckvm_KVM_EXIT_IO_OUT() }
    @inlinable public var ioPort: UInt16 { ckvm_run_io_port(runPage) }
    @inlinable public var ioSize: Int { Int(ckvm_run_io_size(runPage)) }
    @inlinable public var ioCount: Int { Int(ckvm_run_io_count(runPage)) }
    /// The I/O data area inside kvm_run: `ioSize * ioCount` bytes, bounded by the mapping.
    @inlinable public var ioData: UnsafeMutableRawBufferPointer {
        let offset = Int(truncatingIfNeeded: ckvm_run_io_data_offset(runPage))
        let length = ioSize * ioCount
        guard offset >= 0, offset <= runSize, length <= runSize - offset else {
            return UnsafeMutableRawBufferPointer(start: nil, count: 0)
        }
        return UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(runPage) + offset, count: length)
    }
    @inlinable public var mmioAddress: UInt64 { ckvm_run_mmio_phys_addr(runPage) }
    @inlinable public var mmioIsWrite: Bool { ckvm_run_mmio_is_write(runPage) != 0 }
    @inlinable public var mmioData: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: ckvm_run_mmio_data(runPage), count: min(Int(ckvm_run_mmio_len(runPage)), 8))
    }
    public var failEntryReason: UInt64 { ckvm_run_fail_entry_reason(runPage) }
    public var internalSuberror: UInt32 { ckvm_run_internal_suberror(runPage) }
    /// How many of `internalData`'s 16 words KVM filled at an internal-error exit.
    public var internalDataCount: Int { Int(min(ckvm_run_internal_ndata(runPage), 16)) }
    /// Word `index` (0..<16) of an internal-error exit's data; 0 past 16.
    public func internalData(_ index: Int) -> UInt64 { index >= 0 && index < 16 ? ckvm_run_internal_data(runPage, UInt32(index)) : 0 }
    public var systemEventType: UInt32 { ckvm_run_system_event_type(runPage) }
    /// The exception vector of a debug exit (1 = #DB, 3 = #BP).
    public var debugException: UInt32 { ckvm_run_debug_exception(runPage) }
    /// The guest's instruction pointer at a debug exit.
    public var debugPC: UInt64 { ckvm_run_debug_pc(runPage) }
    /// DR6 and DR7 at a debug exit: which breakpoint or step caused a #DB.
    public var debugDR6: UInt64 { ckvm_run_debug_dr6(runPage) }
    public var debugDR7: UInt64 { ckvm_run_debug_dr7(runPage) }

    // MARK: State

    public func registers() throws(KVMError) -> X86Registers {
        var r = kvm_regs()
        _ = try Syscall.ioctl(fd, ckvm_KVM_GET_REGS(), &r, "KVM_GET_REGS")
        return X86Registers(r)
    }

    public func setRegisters(_ regs: X86Registers) throws(KVMError) {
        var r = regs.kvm
        _ = try Syscall.ioctl(fd, ckvm_KVM_SET_REGS(), &r, "KVM_SET_REGS")
    }

    public func specialRegisters() throws(KVMError) -> X86SpecialRegisters {
        var s = kvm_sregs()
        _ = try Syscall.ioctl(fd, ckvm_KVM_GET_SREGS(), &s, "KVM_GET_SREGS")
        return X86SpecialRegisters(s)
    }

    public func setSpecialRegisters(_ sregs: X86SpecialRegisters) throws(KVMError) {
        var current = kvm_sregs()
        _ = try Syscall.ioctl(fd, ckvm_KVM_GET_SREGS(), &current, "KVM_GET_SREGS")
        var s = sregs.kvm(over: current)
        _ = try Syscall.ioctl(fd, ckvm_KVM_SET_SREGS(), &s, "KVM_SET_SREGS")
    }

    public func setCPUID(_ entries: [CPUIDEntry]) throws(KVMError) {
        let buffer = CPUIDBuffer(entries)
        _ = try Syscall.ioctl(fd, ckvm_KVM_SET_CPUID2(), buffer.raw, "KVM_SET_CPUID2")
    }

    /// Writes model-specific registers; throws unless KVM accepted every one.
    public func setMSRs(_ msrs: [(index: UInt32, value: UInt64)]) throws(KVMError) {
        let indices = msrs.map(\.index), values = msrs.map(\.value)
        let n = ckvm_set_msrs(fd, indices, values, UInt32(msrs.count))
        guard n == Int32(msrs.count) else {
            throw KVMError(operation: "KVM_SET_MSRS", errno: n < 0 ? errno : 0, detail: n < 0 ? nil : "KVM accepted \(n) of \(msrs.count) MSRs")
        }
    }

    /// Reads model-specific registers: `values[i]` becomes MSR `indices[i]` (at most 64 of them).
    /// Throws unless KVM read every one. Writes into the caller's buffer: nothing allocated.
    public func msrs(_ indices: UnsafeBufferPointer<UInt32>, into values: UnsafeMutableBufferPointer<UInt64>) throws(KVMError) {
        guard indices.count <= 64, values.count >= indices.count, let i = indices.baseAddress, let v = values.baseAddress else {
            if indices.isEmpty { return }
            throw KVMError(operation: "KVM_GET_MSRS", errno: EINVAL, detail: "\(indices.count) MSRs (at most 64)")
        }
        let n = ckvm_get_msrs(fd, i, v, UInt32(indices.count))
        guard n == Int32(indices.count) else {
            throw KVMError(operation: "KVM_GET_MSRS", errno: n < 0 ? errno : 0, detail: n < 0 ? nil : "KVM read \(n) of \(indices.count) MSRs")
        }
    }

    /// Queues external interrupt `vector` for the guest (KVM_INTERRUPT: no in-kernel irqchip).
    public func injectInterrupt(vector: UInt32) throws(KVMError) {
        guard ckvm_interrupt(fd, vector) >= 0 else { throw KVMError(operation: "KVM_INTERRUPT", errno: errno) }
    }

    public func fpuState() throws(KVMError) -> X86FPUState {
        var f = kvm_fpu()
        _ = try Syscall.ioctl(fd, ckvm_KVM_GET_FPU(), &f, "KVM_GET_FPU")
        return X86FPUState(f)
    }

    public func setFPUState(_ state: X86FPUState) throws(KVMError) {
        var f = state.kvm
        _ = try Syscall.ioctl(fd, ckvm_KVM_SET_FPU(), &f, "KVM_SET_FPU")
    }

    /// KVM_SET_GUEST_DEBUG: `control` is a set of KVM_GUESTDBG_* flags; `debugRegisters` DR0-DR3,
    /// (unused), (unused), DR6, DR7 as KVM takes them for hardware breakpoints.
    public func setGuestDebug(control: UInt32, debugRegisters: [UInt64]) throws(KVMError) {
        var regs = [UInt64](repeating: 0, count: 8)
        for (i, value) in debugRegisters.prefix(8).enumerated() { regs[i] = value }
        guard ckvm_set_guest_debug(fd, control, regs) >= 0 else {
            throw KVMError(operation: "KVM_SET_GUEST_DEBUG", errno: errno)
        }
    }

    /// The guest-physical address that guest-virtual `address` maps to now, or nil if unmapped.
    public func translate(_ address: UInt64) throws(KVMError) -> UInt64? {
        var physical: UInt64 = 0, writeable: UInt8 = 0
        switch ckvm_translate(fd, address, &physical, &writeable) {
        case 0: return physical
        case 1: return nil
        default: throw KVMError(operation: "KVM_TRANSLATE", errno: errno)
        }
    }

    /// Resets the FPU/SSE control words to their architectural defaults.
    public func initializeFPU() throws(KVMError) {
        guard ckvm_init_fpu(fd) >= 0 else { throw KVMError(operation: "KVM_SET_FPU", errno: errno) }
    }

    /// Wires the local APIC's LINT0 to the PIC (ExtINT) and LINT1 to NMI (needs the in-kernel irqchip).
    public func configureLocalInterrupts() throws(KVMError) {
        guard ckvm_set_lint(fd) >= 0 else { throw KVMError(operation: "KVM_SET_LAPIC", errno: errno) }
    }

    /// The guest TSC frequency in kHz (KVM_GET_TSC_KHZ).
    public func tscKHz() throws(KVMError) -> UInt32 {
        UInt32(try Syscall.ioctl(fd, ckvm_KVM_GET_TSC_KHZ(), value: 0, "KVM_GET_TSC_KHZ"))
    }
}
