import KVM

/// The x87/SSE register file of a vCPU.
public typealias FPUState = X86FPUState

/// What a debugger asks KVM to trap: single-stepping, the guest's INT3 (software breakpoints the
/// debugger wrote into guest memory) and up to four hardware breakpoints or watchpoints in the
/// debug registers. Off (the default) lets the guest run as without a debugger.
public struct GuestDebug: Equatable, Sendable {
    /// What a hardware breakpoint fires on (the DR7 R/W field).
    public enum Trigger: UInt64, Sendable {
        case execute = 0b00, write = 0b01, readWrite = 0b11
    }

    /// One debug-register breakpoint: `length` is 1, 2, 4 or 8 bytes (1 for `.execute`).
    public struct HardwareBreakpoint: Equatable, Sendable {
        public var address: UInt64
        public var trigger: Trigger
        public var length: Int
        public init(address: UInt64, trigger: Trigger, length: Int) {
            self.address = address; self.trigger = trigger; self.length = length
        }
    }

    /// x86 has four address debug registers (DR0-DR3).
    public static let hardwareSlots = 4

    public var singleStep = false
    public var softwareBreakpoints = false
    public var hardware: [HardwareBreakpoint] = []

    public init(singleStep: Bool = false, softwareBreakpoints: Bool = false, hardware: [HardwareBreakpoint] = []) {
        self.singleStep = singleStep; self.softwareBreakpoints = softwareBreakpoints; self.hardware = hardware
    }

    /// Whether `length` can be watched at `address` by one debug register: a power of two up to
    /// 8, with the address aligned to it (the CPU ignores the low address bits otherwise).
    public static func isValid(length: Int, at address: UInt64, trigger: Trigger) -> Bool {
        if trigger == .execute { return length == 1 || length == 0 }
        return [1, 2, 4, 8].contains(length) && address % UInt64(length) == 0
    }

    /// DR7 for `hardware`: each slot n enabled globally (bit 2n+1) with its R/W and LEN fields;
    /// bit 10 is reserved as one, bit 9 (GE) asks for exact data breakpoints.
    public var dr7: UInt64 {
        var value: UInt64 = 0x600
        for (n, bp) in hardware.prefix(Self.hardwareSlots).enumerated() {
            let len: UInt64 = switch bp.trigger == .execute ? 1 : bp.length {
            case 2: 0b01
            case 4: 0b11
            case 8: 0b10
            default: 0b00
            }
            value |= 1 << (2 * UInt64(n) + 1)
            value |= bp.trigger.rawValue << (16 + 4 * UInt64(n))
            value |= len << (18 + 4 * UInt64(n))
        }
        return value
    }

    var isOff: Bool { !singleStep && !softwareBreakpoints && hardware.isEmpty }

    /// The KVM_SET_GUEST_DEBUG control word and debug registers for this request.
    var kvmRequest: (control: UInt32, registers: [UInt64]) {
        guard !isOff else { return (0, []) }
        var control = KVMGuestDebugFlag.enable
        if singleStep { control |= KVMGuestDebugFlag.singleStep }
        if softwareBreakpoints { control |= KVMGuestDebugFlag.softwareBreakpoints }
        var registers = [UInt64](repeating: 0, count: 8)
        registers[7] = dr7
        if !hardware.isEmpty {
            control |= KVMGuestDebugFlag.hardwareBreakpoints
            for (n, bp) in hardware.prefix(Self.hardwareSlots).enumerated() { registers[n] = bp.address }
            registers[7] = dr7
        }
        return (control, registers)
    }
}

/// Why a debug exit happened, decoded from the exception and DR6.
public struct DebugExit: Equatable, Sendable {
    /// 1 (#DB: single step or hardware breakpoint) or 3 (#BP: INT3).
    public var exception: UInt32
    public var pc: UInt64
    public var dr6: UInt64
    public var dr7: UInt64

    public init(exception: UInt32, pc: UInt64, dr6: UInt64, dr7: UInt64) {
        self.exception = exception; self.pc = pc; self.dr6 = dr6; self.dr7 = dr7
    }

    /// An INT3 in guest memory (a software breakpoint).
    public var isSoftwareBreakpoint: Bool { exception == 3 }
    /// The hardware breakpoint slot (0-3) that fired, if any (DR6 B0-B3).
    public var hardwareSlot: Int? {
        guard exception == 1 else { return nil }
        return (0..<GuestDebug.hardwareSlots).first { dr6 & (1 << UInt64($0)) != 0 }
    }
    /// A single step finished (DR6 BS).
    public var isSingleStep: Bool { exception == 1 && dr6 & (1 << 14) != 0 }
}

extension VCPU {
    public func fpuState() throws(HypervisorError) -> FPUState {
        do { return try kvm.fpuState() } catch { throw HypervisorError(error) }
    }

    public func setFPUState(_ state: FPUState) throws(HypervisorError) {
        do { try kvm.setFPUState(state) } catch { throw HypervisorError(error) }
    }

    /// Arms (or, with an empty request, disarms) KVM's guest debugging for this vCPU.
    public func setGuestDebug(_ debug: GuestDebug) throws(HypervisorError) {
        let request = debug.kvmRequest
        do { try kvm.setGuestDebug(control: request.control, debugRegisters: request.registers) } catch {
            throw HypervisorError(error)
        }
    }

    /// The guest-physical address behind guest-virtual `address` under the vCPU's paging, or nil.
    public func translate(_ address: UInt64) throws(HypervisorError) -> UInt64? {
        do { return try kvm.translate(address) } catch { throw HypervisorError(error) }
    }
}
