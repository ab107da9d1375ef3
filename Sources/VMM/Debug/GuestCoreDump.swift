import CoreDump
import GuestMemory
import Host
import Hypervisor
#if canImport(Glibc)
import Glibc
#endif

/// `--dumpcore=DIR` (solo5-hvt-debug's module): the folder is checked before the guest runs;
/// when the guest aborts, DIR/core.solo5-hvt.PID is written as an ELF core file GDB opens with
/// the kernel image. The core is written under a temporary name and renamed when whole, so a
/// failed dump (a full disk) leaves nothing under the final name.
struct GuestCoreDump {
    let directory: String

    /// Checks that `directory` is a folder we can create files in (solo5-hvt-debug's checks,
    /// with its words).
    init(directory: String) throws(VMMError) {
        do { _ = try FileSystem.openDirectory(directory) } catch {
            throw VMMError(.configuration, "dumpcore: cannot open dir '\(directory)': \(HostError.text(errno: error.errno))")
        }
        do { try FileSystem.checkWritable(directory) } catch {
            throw VMMError(.configuration, "dumpcore: dir not writable '\(directory)': \(HostError.text(errno: error.errno))")
        }
        self.directory = directory
    }

    /// The core file's name, as solo5-hvt-debug names it (scripts look for it).
    static func fileName(pid: Int32 = CurrentProcess.id) -> String { "core.solo5-hvt.\(pid)" }

    /// Solo5's trap frame (`struct x86_trap_regs`), which a guest's PANIC passes as HALT's cookie:
    /// cr2, error code, then the CPU's interrupt frame rip, cs, rflags, rsp, ss.
    static let trapFrameSize: UInt64 = 56

    /// The registers for the core: the vCPU's, with rip, cs, rflags, rsp and ss taken from the
    /// guest's trap frame when it passed one (the state at the fault, not at the hypercall).
    static func registers(_ r: Registers, _ s: SpecialRegisters, trapFrame: [UInt64]?) -> CoreRegisters {
        var c = CoreRegisters()
        c.r15 = r.r15; c.r14 = r.r14; c.r13 = r.r13; c.r12 = r.r12
        c.rbp = r.rbp; c.rbx = r.rbx; c.r11 = r.r11; c.r10 = r.r10
        c.r9 = r.r9; c.r8 = r.r8; c.rax = r.rax; c.rcx = r.rcx
        c.rdx = r.rdx; c.rsi = r.rsi; c.rdi = r.rdi
        c.rip = r.rip; c.cs = UInt64(s.cs.selector); c.eflags = r.rflags; c.rsp = r.rsp; c.ss = UInt64(s.ss.selector)
        c.fsBase = s.fs.base; c.gsBase = s.gs.base
        c.ds = UInt64(s.ds.selector); c.es = UInt64(s.es.selector); c.fs = UInt64(s.fs.selector); c.gs = UInt64(s.gs.selector)
        if let f = trapFrame, f.count == 7 {
            c.rip = f[2]; c.cs = f[3]; c.eflags = f[4]; c.rsp = f[5]; c.ss = f[6]
        }
        return c
    }

    /// Writes the core of the stopped vCPU and `memory` (guest RAM from address 0). `cookie` is
    /// HALT's checked trap-frame address, if any. Prints solo5-hvt-debug's lines; false (after
    /// one error line) when the core could not be written whole.
    func write(vcpu: VCPU, memory: GuestMemory, cookie: UInt64?, signal: UInt16, log: VMMLog) -> Bool {
        let name = Self.fileName()
        let final = directory + "/" + name
        let temporary = directory + "/." + name + ".partial"
        guard let r = try? vcpu.registers(), let s = try? vcpu.specialRegisters() else {
            log.error("dumpcore: Could not retrieve guest state")
            return false
        }
        var frame: [UInt64]? = nil
        if let cookie, let bytes = try? memory.read(at: GuestAddress(cookie), count: Self.trapFrameSize) {
            frame = (0..<7).map { i in bytes[i * 8..<i * 8 + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        }
        guard let region = memory.regions.first else { return false }
        let core = ELFCoreFile(registers: Self.registers(r, s, trapFrame: frame), signal: signal,
                               memory: UnsafeRawBufferPointer(start: region.host, count: Int(region.size)))
        log.warn("dumpcore: dumping guest core to: \(final)")
        do {
            let file = try FileDescriptor.open(temporary, flags: O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600)
            do {
                let pages = try core.write(to: file)
                try file.syncData()
                try FileSystem.rename(temporary, to: final)
                log.warn("dumpcore: dumped \(pages.written) pages of total \(pages.total) pages")
                return true
            } catch {
                FileSystem.removeIfPresent([temporary])
                throw error
            }
        } catch {
            log.error("dumpcore: error dumping core, no core written: \(error)")
            return false
        }
    }
}
