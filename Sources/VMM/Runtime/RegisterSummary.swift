import VMSpec
import Hypervisor

/// Registers in one-line error messages (triple faults, KVM failures), written once for every
/// guest kind; a kind chooses only which control registers follow the general ones.
enum RegisterSummary {
    /// The control registers a dump can show after the general ones, always in this order.
    struct ControlRegisters: OptionSet {
        let rawValue: UInt8
        static let cr0 = ControlRegisters(rawValue: 1 << 0)
        static let cr2 = ControlRegisters(rawValue: 1 << 1)
        static let cr3 = ControlRegisters(rawValue: 1 << 2)
        static let cr4 = ControlRegisters(rawValue: 1 << 3)
        static let efer = ControlRegisters(rawValue: 1 << 4)
        static let all: ControlRegisters = [.cr0, .cr2, .cr3, .cr4, .efer]
    }

    /// `rip=0x… rsp=0x… rax=… rflags=0x…`.
    static func general(_ r: Registers) -> String {
        "rip=\(r.rip.hexString) rsp=\(r.rsp.hexString) rax=\(r.rax.hexString) rbx=\(r.rbx.hexString) rcx=\(r.rcx.hexString) rdx=\(r.rdx.hexString) rsi=\(r.rsi.hexString) rdi=\(r.rdi.hexString) rflags=\(r.rflags.hexString)"
    }

    /// `: rip=0x… rflags=0x… cr2=0x…`, to append to a fatal exit's message: the general registers,
    /// then the chosen control registers. Empty when the vCPU's registers cannot be read (the
    /// message is still worth printing); the control registers are left out when only they fail.
    static func dump(_ vcpu: VCPU, control: ControlRegisters) -> String {
        guard let r = try? vcpu.registers() else { return "" }
        var text = ": " + general(r)
        guard !control.isEmpty, let s = try? vcpu.specialRegisters() else { return text }
        if control.contains(.cr0) { text += " cr0=\(s.cr0.hexString)" }
        if control.contains(.cr2) { text += " cr2=\(s.cr2.hexString)" }
        if control.contains(.cr3) { text += " cr3=\(s.cr3.hexString)" }
        if control.contains(.cr4) { text += " cr4=\(s.cr4.hexString)" }
        if control.contains(.efer) { text += " efer=\(s.efer.hexString)" }
        return text
    }
}
