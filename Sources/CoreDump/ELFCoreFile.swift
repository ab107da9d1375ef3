import Host
#if canImport(Glibc)
import Glibc
#endif

/// The general registers of an x86-64 core file, in the order of Linux's `user_regs_struct`
/// (the `pr_reg` of NT_PRSTATUS), which is what GDB reads from a core's registers note.
public struct CoreRegisters: Equatable, Sendable {
    public var r15: UInt64 = 0, r14: UInt64 = 0, r13: UInt64 = 0, r12: UInt64 = 0
    public var rbp: UInt64 = 0, rbx: UInt64 = 0, r11: UInt64 = 0, r10: UInt64 = 0
    public var r9: UInt64 = 0, r8: UInt64 = 0, rax: UInt64 = 0, rcx: UInt64 = 0
    public var rdx: UInt64 = 0, rsi: UInt64 = 0, rdi: UInt64 = 0, origRax: UInt64 = 0
    public var rip: UInt64 = 0, cs: UInt64 = 0, eflags: UInt64 = 0, rsp: UInt64 = 0
    public var ss: UInt64 = 0, fsBase: UInt64 = 0, gsBase: UInt64 = 0
    public var ds: UInt64 = 0, es: UInt64 = 0, fs: UInt64 = 0, gs: UInt64 = 0

    public init() {}

    var inOrder: [UInt64] {
        [r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, origRax,
         rip, cs, eflags, rsp, ss, fsBase, gsBase, ds, es, fs, gs]
    }
}

/// An x86-64 ELF core file of a guest, as `solo5-hvt-debug --dumpcore` writes one: an ELF header
/// (ET_CORE, EM_X86_64, OSABI "standalone"), a PT_NOTE with one NT_PRSTATUS, and guest memory
/// as one loadable segment at address 0. Unlike the peer, the segment is page-aligned in the file
/// and written sparsely (zero pages become holes), and the file has its full length, so GDB
/// reads every byte of guest memory back.
public struct ELFCoreFile {
    public static let pageSize = 4096
    static let headerSize = 64, programHeaderSize = 56
    static let noteType: UInt32 = 1       // NT_PRSTATUS
    static let prstatusSize = 336         // struct elf_prstatus on x86-64
    static let prstatusRegisters = 112    // offset of pr_reg in it

    public var registers: CoreRegisters
    /// The signal GDB reports the core "terminated with" (pr_cursig): SIGABRT, SIGSEGV...
    public var signal: UInt16
    /// Guest memory from guest-physical (and, for hvt, virtual) address 0.
    public var memory: UnsafeRawBufferPointer

    public init(registers: CoreRegisters, signal: UInt16, memory: UnsafeRawBufferPointer) {
        self.registers = registers
        self.signal = signal
        self.memory = memory
    }

    /// Where guest memory starts in the file: after the headers and the note, page-aligned.
    var memoryOffset: UInt64 { UInt64(Self.pageSize) }

    /// The headers and the note (everything before guest memory).
    public func headers() -> [UInt8] {
        var out: [UInt8] = []
        // ELF header.
        out += [0x7F, 0x45, 0x4C, 0x46, 2 /* 64-bit */, 1 /* little-endian */, 1 /* EV_CURRENT */,
                255 /* ELFOSABI_STANDALONE, as solo5-hvt-debug */, 0] + [UInt8](repeating: 0, count: 7)
        out += le(4, 2) + le(62, 2) + le(1, 4)       // ET_CORE, EM_X86_64, EV_CURRENT
        out += le(0, 8) + le(UInt64(Self.headerSize), 8) + le(0, 8)   // entry, phoff, shoff
        out += le(0, 4) + le(UInt64(Self.headerSize), 2) + le(UInt64(Self.programHeaderSize), 2)
        out += le(2, 2) + le(0, 2) + le(0, 2) + le(0, 2)               // phnum 2, no sections
        // PT_NOTE.
        let noteOffset = UInt64(Self.headerSize + 2 * Self.programHeaderSize)
        let note = prstatusNote()
        out += programHeader(type: 4, flags: 0, offset: noteOffset, address: 0, size: UInt64(note.count), align: 4)
        // PT_LOAD: all of guest memory, readable, writable and executable (the guest's view).
        out += programHeader(type: 1, flags: 7, offset: memoryOffset, address: 0, size: UInt64(memory.count),
                             align: UInt64(Self.pageSize))
        out += note
        return out
    }

    /// NT_PRSTATUS named "CORE": zero except the signal and the registers.
    func prstatusNote() -> [UInt8] {
        var status = [UInt8](repeating: 0, count: Self.prstatusSize)
        status[12] = UInt8(truncatingIfNeeded: signal)          // pr_cursig
        status[13] = UInt8(truncatingIfNeeded: signal >> 8)
        status[0] = UInt8(truncatingIfNeeded: signal)           // pr_info.si_signo
        for (i, value) in registers.inOrder.enumerated() {
            let bytes = le(value, 8)
            for j in 0..<8 { status[Self.prstatusRegisters + 8 * i + j] = bytes[j] }
        }
        var note = le(5, 4) + le(UInt64(Self.prstatusSize), 4) + le(UInt64(Self.noteType), 4)
        note += Array("CORE".utf8) + [0, 0, 0, 0]                // name and padding to 4 bytes
        return note + status
    }

    /// Writes the core to `file`: headers, then each non-zero page of guest memory, then the
    /// full length. Returns the pages written and the pages in all.
    public func write(to file: FileDescriptor) throws(HostError) -> (written: Int, total: Int) {
        let head = headers()
        precondition(head.count <= Self.pageSize)
        var failure: HostError? = nil
        head.withUnsafeBytes { buffer in
            do throws(HostError) { try file.pwrite(buffer, at: 0) } catch { failure = error }
        }
        if let failure { throw failure }
        let total = (memory.count + Self.pageSize - 1) / Self.pageSize
        // Pages the guest never touched are not resident (mincore): skip them without reading,
        // as solo5-hvt-debug does; a 512 MiB guest then costs what it used, not 512 MiB of reads.
        let resident = Self.residentPages(memory, count: total)
        var written = 0
        for page in 0..<total where resident?[page] ?? true {
            let start = page * Self.pageSize
            let slice = UnsafeRawBufferPointer(rebasing: memory[start..<min(start + Self.pageSize, memory.count)])
            guard !Self.isZero(slice) else { continue }
            try file.pwrite(slice, at: memoryOffset + UInt64(start))
            written += 1
        }
        try file.truncate(to: memoryOffset + UInt64(memory.count))
        return (written, total)
    }

    /// One flag per page: resident in host memory. Nil when the kernel cannot say (then every
    /// page is read).
    static func residentPages(_ memory: UnsafeRawBufferPointer, count: Int) -> [Bool]? {
        guard let base = memory.baseAddress, Int(bitPattern: base) % pageSize == 0, count > 0 else { return nil }
        return Memory.residentPages(base, memory.count)
    }

    static func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let words = bytes.count / 8
        while i < words {
            if bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) != 0 { return false }
            i += 1
        }
        for j in words * 8..<bytes.count where bytes[j] != 0 { return false }
        return true
    }

    private func programHeader(type: UInt32, flags: UInt32, offset: UInt64, address: UInt64, size: UInt64, align: UInt64) -> [UInt8] {
        le(UInt64(type), 4) + le(UInt64(flags), 4) + le(offset, 8) + le(address, 8) + le(address, 8)
            + le(size, 8) + le(size, 8) + le(align, 8)
    }

    private func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
}
