import CKVM

/// The x86-64 general-purpose registers, instruction pointer and flags of one vCPU (kvm_regs).
public struct X86Registers: Equatable, Sendable {
    public var rax: UInt64 = 0, rbx: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0
    public var rsi: UInt64 = 0, rdi: UInt64 = 0, rsp: UInt64 = 0, rbp: UInt64 = 0
    public var r8: UInt64 = 0, r9: UInt64 = 0, r10: UInt64 = 0, r11: UInt64 = 0
    public var r12: UInt64 = 0, r13: UInt64 = 0, r14: UInt64 = 0, r15: UInt64 = 0
    public var rip: UInt64 = 0
    /// Bit 1 is reserved and must be set.
    public var rflags: UInt64 = 0x2

    public init() {}

    /// General-purpose register by its x86 encoding number (0 = RAX ... 15 = R15).
    public subscript(gpr index: Int) -> UInt64 {
        get {
            switch index & 15 {
            case 0: rax
            case 1: rcx
            case 2: rdx
            case 3: rbx
            case 4: rsp
            case 5: rbp
            case 6: rsi
            case 7: rdi
            case 8: r8
            case 9: r9
            case 10: r10
            case 11: r11
            case 12: r12
            case 13: r13
            case 14: r14
            default: r15
            }
        }
        set {
            switch index & 15 {
            case 0: rax = newValue
            case 1: rcx = newValue
            case 2: rdx = newValue
            case 3: rbx = newValue
            case 4: rsp = newValue
            case 5: rbp = newValue
            case 6: rsi = newValue
            case 7: rdi = newValue
            case 8: r8 = newValue
            case 9: r9 = newValue
            case 10: r10 = newValue
            case 11: r11 = newValue
            case 12: r12 = newValue
            case 13: r13 = newValue
            case 14: r14 = newValue
            default: r15 = newValue
            }
        }
    }

    init(_ r: kvm_regs) {
        rax = r.rax; rbx = r.rbx; rcx = r.rcx; rdx = r.rdx
        rsi = r.rsi; rdi = r.rdi; rsp = r.rsp; rbp = r.rbp
        r8 = r.r8; r9 = r.r9; r10 = r.r10; r11 = r.r11
        r12 = r.r12; r13 = r.r13; r14 = r.r14; r15 = r.r15
        rip = r.rip; rflags = r.rflags
    }

    var kvm: kvm_regs {
        var r = kvm_regs()
        r.rax = rax; r.rbx = rbx; r.rcx = rcx; r.rdx = rdx
        r.rsi = rsi; r.rdi = rdi; r.rsp = rsp; r.rbp = rbp
        r.r8 = r8; r.r9 = r9; r.r10 = r10; r.r11 = r11
        r.r12 = r12; r.r13 = r13; r.r14 = r14; r.r15 = r15
        r.rip = rip; r.rflags = rflags
        return r
    }
}

/// A segment register with its hidden descriptor-cache part (kvm_segment).
public struct X86Segment: Equatable, Sendable {
    public var base: UInt64 = 0
    /// In bytes, whatever the granularity bit says.
    public var limit: UInt32 = 0
    public var selector: UInt16 = 0
    public var type: UInt8 = 0
    public var present = false, dpl: UInt8 = 0, db = false, s = false, l = false, g = false, avl = false
    public var unusable = false

    public init() {}

    public init(selector: UInt16, base: UInt64 = 0, limit: UInt32, type: UInt8, present: Bool = true,
                dpl: UInt8 = 0, db: Bool = false, s: Bool = true, l: Bool = false, g: Bool = true) {
        self.selector = selector; self.base = base; self.limit = limit; self.type = type
        self.present = present; self.dpl = dpl; self.db = db; self.s = s; self.l = l; self.g = g
    }

    init(_ k: kvm_segment) {
        base = k.base; limit = k.limit; selector = k.selector; type = k.type
        present = k.present != 0; dpl = k.dpl; db = k.db != 0; s = k.s != 0; l = k.l != 0
        g = k.g != 0; avl = k.avl != 0; unusable = k.unusable != 0
    }

    var kvm: kvm_segment {
        var k = kvm_segment()
        k.base = base; k.limit = limit; k.selector = selector; k.type = type
        k.present = present ? 1 : 0; k.dpl = dpl; k.db = db ? 1 : 0; k.s = s ? 1 : 0
        k.l = l ? 1 : 0; k.g = g ? 1 : 0; k.avl = avl ? 1 : 0; k.unusable = unusable ? 1 : 0
        return k
    }
}

/// A descriptor-table register (GDTR/IDTR).
public struct X86DescriptorTable: Equatable, Sendable {
    public var base: UInt64 = 0
    public var limit: UInt16 = 0
    public init(base: UInt64 = 0, limit: UInt16 = 0) { self.base = base; self.limit = limit }
}

/// Segment, control and descriptor-table registers of one vCPU (kvm_sregs).
public struct X86SpecialRegisters: Equatable, Sendable {
    public var cs = X86Segment(), ds = X86Segment(), es = X86Segment(), fs = X86Segment()
    public var gs = X86Segment(), ss = X86Segment(), tr = X86Segment(), ldt = X86Segment()
    public var gdt = X86DescriptorTable(), idt = X86DescriptorTable()
    public var cr0: UInt64 = 0, cr2: UInt64 = 0, cr3: UInt64 = 0, cr4: UInt64 = 0, cr8: UInt64 = 0
    public var efer: UInt64 = 0
    public var apicBase: UInt64 = 0

    public init() {}

    init(_ k: kvm_sregs) {
        cs = X86Segment(k.cs); ds = X86Segment(k.ds); es = X86Segment(k.es); fs = X86Segment(k.fs)
        gs = X86Segment(k.gs); ss = X86Segment(k.ss); tr = X86Segment(k.tr); ldt = X86Segment(k.ldt)
        gdt = X86DescriptorTable(base: k.gdt.base, limit: k.gdt.limit)
        idt = X86DescriptorTable(base: k.idt.base, limit: k.idt.limit)
        cr0 = k.cr0; cr2 = k.cr2; cr3 = k.cr3; cr4 = k.cr4; cr8 = k.cr8; efer = k.efer; apicBase = k.apic_base
    }

    /// Applies our fields over `base`, keeping what we do not model (the pending-interrupt bitmap).
    func kvm(over base: kvm_sregs) -> kvm_sregs {
        var k = base
        k.cs = cs.kvm; k.ds = ds.kvm; k.es = es.kvm; k.fs = fs.kvm
        k.gs = gs.kvm; k.ss = ss.kvm; k.tr = tr.kvm; k.ldt = ldt.kvm
        k.gdt.base = gdt.base; k.gdt.limit = gdt.limit
        k.idt.base = idt.base; k.idt.limit = idt.limit
        k.cr0 = cr0; k.cr2 = cr2; k.cr3 = cr3; k.cr4 = cr4; k.cr8 = cr8; k.efer = efer; k.apic_base = apicBase
        return k
    }
}

/// One CPUID leaf/subleaf result (kvm_cpuid_entry2).
public struct CPUIDEntry: Equatable, Sendable {
    public var function: UInt32, index: UInt32, flags: UInt32
    public var eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32

    public init(function: UInt32, index: UInt32 = 0, flags: UInt32 = 0,
                eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) {
        self.function = function; self.index = index; self.flags = flags
        self.eax = eax; self.ebx = ebx; self.ecx = ecx; self.edx = edx
    }
}

/// The x87 and SSE state of one vCPU (kvm_fpu, the FXSAVE image's fields).
public struct X86FPUState: Equatable, Sendable {
    /// ST0-ST7 as 80-bit values, 10 bytes each (little-endian), 80 bytes in all.
    public var st: [UInt8] = Array(repeating: 0, count: 80)
    public var fcw: UInt16 = 0x37F
    public var fsw: UInt16 = 0
    /// The abridged tag word of FXSAVE: bit i set means ST(i)'s physical register is in use.
    public var ftwx: UInt8 = 0
    public var lastOpcode: UInt16 = 0
    public var lastIP: UInt64 = 0
    public var lastDP: UInt64 = 0
    /// XMM0-XMM15, 16 bytes each, 256 bytes in all.
    public var xmm: [UInt8] = Array(repeating: 0, count: 256)
    public var mxcsr: UInt32 = 0x1F80

    public init() {}

    init(_ f: kvm_fpu) {
        var f = f
        withUnsafeBytes(of: &f.fpr) { raw in
            for i in 0..<8 { st.replaceSubrange(i * 10..<i * 10 + 10, with: raw[i * 16..<i * 16 + 10]) }
        }
        fcw = f.fcw; fsw = f.fsw; ftwx = f.ftwx; lastOpcode = f.last_opcode
        lastIP = f.last_ip; lastDP = f.last_dp
        withUnsafeBytes(of: &f.xmm) { xmm = Array($0) }
        mxcsr = f.mxcsr
    }

    var kvm: kvm_fpu {
        var f = kvm_fpu()
        withUnsafeMutableBytes(of: &f.fpr) { raw in
            for i in 0..<8 { for j in 0..<10 { raw[i * 16 + j] = st[i * 10 + j] } }
        }
        f.fcw = fcw; f.fsw = fsw; f.ftwx = ftwx; f.last_opcode = lastOpcode
        f.last_ip = lastIP; f.last_dp = lastDP
        withUnsafeMutableBytes(of: &f.xmm) { raw in for i in 0..<min(raw.count, xmm.count) { raw[i] = xmm[i] } }
        f.mxcsr = mxcsr
        return f
    }
}

/// The KVM_GUESTDBG_* control flags.
public enum KVMGuestDebugFlag {
    public static var enable: UInt32 { ckvm_GUESTDBG_ENABLE() }
    public static var singleStep: UInt32 { ckvm_GUESTDBG_SINGLESTEP() }
    public static var softwareBreakpoints: UInt32 { ckvm_GUESTDBG_USE_SW_BP() }
    public static var hardwareBreakpoints: UInt32 { ckvm_GUESTDBG_USE_HW_BP() }
}
