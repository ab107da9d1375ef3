import CSwiftlet
import Hypervisor
import KVM

// The C structs of swiftlet.h to and from the Hypervisor's register types. A getter writes every
// field of version 1 and leaves `size` as the caller set it; a setter reads only version 1's
// fields. C booleans: 0 is false, anything else true (read), exactly 0 or 1 (written).

extension Registers {
    init(_ c: swiftlet_regs) {
        self.init()
        rax = c.rax; rbx = c.rbx; rcx = c.rcx; rdx = c.rdx; rsi = c.rsi; rdi = c.rdi; rsp = c.rsp; rbp = c.rbp
        r8 = c.r8; r9 = c.r9; r10 = c.r10; r11 = c.r11; r12 = c.r12; r13 = c.r13; r14 = c.r14; r15 = c.r15
        rip = c.rip; rflags = c.rflags
    }

    func store(into c: inout swiftlet_regs) {
        c.reserved = 0
        c.rax = rax; c.rbx = rbx; c.rcx = rcx; c.rdx = rdx; c.rsi = rsi; c.rdi = rdi; c.rsp = rsp; c.rbp = rbp
        c.r8 = r8; c.r9 = r9; c.r10 = r10; c.r11 = r11; c.r12 = r12; c.r13 = r13; c.r14 = r14; c.r15 = r15
        c.rip = rip; c.rflags = rflags
    }
}

extension Segment {
    init(_ c: swiftlet_segment) {
        self.init()
        base = c.base; limit = c.limit; selector = c.selector; type = c.type
        present = c.present != 0; dpl = c.dpl; db = c.db != 0; s = c.s != 0; l = c.l != 0; g = c.g != 0
        avl = c.avl != 0; unusable = c.unusable != 0
    }

    var c: swiftlet_segment {
        swiftlet_segment(base: base, limit: limit, selector: selector, type: type, present: present ? 1 : 0, dpl: dpl,
                         db: db ? 1 : 0, s: s ? 1 : 0, l: l ? 1 : 0, g: g ? 1 : 0, avl: avl ? 1 : 0,
                         unusable: unusable ? 1 : 0, reserved: 0)
    }
}

extension SpecialRegisters {
    init(_ c: swiftlet_sregs) {
        self.init()
        cs = Segment(c.cs); ds = Segment(c.ds); es = Segment(c.es); fs = Segment(c.fs)
        gs = Segment(c.gs); ss = Segment(c.ss); tr = Segment(c.tr); ldt = Segment(c.ldt)
        gdt = DescriptorTable(base: c.gdt.base, limit: c.gdt.limit)
        idt = DescriptorTable(base: c.idt.base, limit: c.idt.limit)
        cr0 = c.cr0; cr2 = c.cr2; cr3 = c.cr3; cr4 = c.cr4; cr8 = c.cr8; efer = c.efer; apicBase = c.apic_base
    }

    func store(into c: inout swiftlet_sregs) {
        c.reserved = 0
        c.cs = cs.c; c.ds = ds.c; c.es = es.c; c.fs = fs.c; c.gs = gs.c; c.ss = ss.c; c.tr = tr.c; c.ldt = ldt.c
        c.gdt = swiftlet_dtable(base: gdt.base, limit: gdt.limit, reserved: (0, 0, 0))
        c.idt = swiftlet_dtable(base: idt.base, limit: idt.limit, reserved: (0, 0, 0))
        c.cr0 = cr0; c.cr2 = cr2; c.cr3 = cr3; c.cr4 = cr4; c.cr8 = cr8; c.efer = efer; c.apic_base = apicBase
    }
}

extension X86FPUState {
    /// ST(i) is 10 bytes of the C struct's 16-byte slot i.
    init(_ c: swiftlet_fpu) {
        self.init()
        var c = c
        withUnsafeBytes(of: &c.st) { raw in
            for i in 0..<8 { st.replaceSubrange(i * 10..<i * 10 + 10, with: raw[i * 16..<i * 16 + 10]) }
        }
        withUnsafeBytes(of: &c.xmm) { xmm = Array($0) }
        fcw = c.fcw; fsw = c.fsw; ftwx = c.ftwx; lastOpcode = c.last_opcode
        lastIP = c.last_ip; lastDP = c.last_dp; mxcsr = c.mxcsr
    }

    func store(into c: inout swiftlet_fpu) {
        withUnsafeMutableBytes(of: &c.st) { raw in
            raw.initializeMemory(as: UInt8.self, repeating: 0)
            for i in 0..<8 { for j in 0..<10 { raw[i * 16 + j] = st[i * 10 + j] } }
        }
        withUnsafeMutableBytes(of: &c.xmm) { raw in
            for i in 0..<min(raw.count, xmm.count) { raw[i] = xmm[i] }
        }
        c.mxcsr = mxcsr; c.fcw = fcw; c.fsw = fsw; c.ftwx = ftwx; c.reserved = 0; c.last_opcode = lastOpcode
        c.last_ip = lastIP; c.last_dp = lastDP
    }
}

extension swiftlet_exit {
    /// Where the union starts: payloads are stored there directly, since assigning a member of
    /// an imported C union through Swift copies the whole 256-byte union (once per exit).
    private static let payloadOffset = MemoryLayout<swiftlet_exit>.offset(of: \swiftlet_exit.u)!

    /// Fills the reason and payload of `exit` into `out`; the I/O pointers point into the vCPU's
    /// run area. Writes only the reason and the union member it names.
    @inline(__always)
    static func record(_ exit: VMExit, of vcpu: VCPU, into out: UnsafeMutablePointer<swiftlet_exit>) {
        let payload = UnsafeMutableRawPointer(out) + payloadOffset
        func reason(_ code: Int32) { out.pointee.reason = UInt32(code) }
        switch exit {
        case .portIO(let io):
            reason(SWIFTLET_EXIT_IO)
            payload.storeBytes(of: swiftlet_exit_io(port: io.port, width: UInt8(truncatingIfNeeded: io.size), is_write: io.isWrite ? 1 : 0,
                                                    count: UInt32(truncatingIfNeeded: io.count),
                                                    data: vcpu.ioData.baseAddress?.assumingMemoryBound(to: UInt8.self)),
                               as: swiftlet_exit_io.self)
        case .mmio(let mmio):
            reason(SWIFTLET_EXIT_MMIO)
            payload.storeBytes(of: swiftlet_exit_mmio(gpa: mmio.address, width: UInt32(truncatingIfNeeded: mmio.size), is_write: mmio.isWrite ? 1 : 0,
                                                      data: vcpu.mmioData.baseAddress?.assumingMemoryBound(to: UInt8.self)),
                               as: swiftlet_exit_mmio.self)
        case .halted: reason(SWIFTLET_EXIT_HALT)
        case .shutdown: reason(SWIFTLET_EXIT_SHUTDOWN)
        case .failedEntry(let code):
            reason(SWIFTLET_EXIT_FAILED_ENTRY)
            payload.storeBytes(of: code, as: UInt64.self)
        case .internalError(let suberror):
            reason(SWIFTLET_EXIT_INTERNAL_ERROR)
            var detail = swiftlet_exit_internal()
            detail.suberror = suberror
            detail.ndata = UInt32(vcpu.internalErrorDataCount)
            withUnsafeMutableBytes(of: &detail.data) { raw in
                for i in 0..<16 { raw.storeBytes(of: vcpu.internalErrorData(i), toByteOffset: i * 8, as: UInt64.self) }
            }
            payload.storeBytes(of: detail, as: swiftlet_exit_internal.self)
        case .systemEvent(let type):
            reason(SWIFTLET_EXIT_SYSTEM_EVENT)
            payload.storeBytes(of: type, as: UInt32.self)
        case .kicked: reason(SWIFTLET_EXIT_INTERRUPTED)
        case .debug: reason(SWIFTLET_EXIT_DEBUG)
        case .unknown(let kvmReason):
            reason(SWIFTLET_EXIT_UNKNOWN)
            payload.storeBytes(of: kvmReason, as: UInt32.self)
        }
    }
}
