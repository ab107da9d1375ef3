import CoreDump
import Foundation
import Host
import Testing

/// The ELF core file's layout (as GDB and readelf read it) and its sparse writing.
@Suite struct ELFCoreFileTests {
    func le(_ b: [UInt8], _ at: Int, _ n: Int) -> UInt64 {
        (0..<n).reduce(UInt64(0)) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) }
    }

    @Test func headersAndRegisters() {
        var regs = CoreRegisters()
        regs.rip = 0x10105a; regs.rsp = 0x3fffc0; regs.r15 = 15; regs.gs = 0x10
        let memory = [UInt8](repeating: 0, count: 8192)
        memory.withUnsafeBytes { m in
            let core = ELFCoreFile(registers: regs, signal: 11, memory: m)
            let h = core.headers()
            #expect(Array(h[0..<4]) == [0x7F, 0x45, 0x4C, 0x46])
            #expect(h[4] == 2 && h[5] == 1 && h[7] == 255)                    // 64-bit, LE, standalone
            #expect(le(h, 16, 2) == 4 && le(h, 18, 2) == 62)                  // ET_CORE, EM_X86_64
            #expect(le(h, 32, 8) == 64 && le(h, 56, 2) == 2)                  // phoff, phnum
            // PT_NOTE then PT_LOAD (guest memory at address 0, page-aligned in the file).
            #expect(le(h, 64, 4) == 4 && le(h, 64 + 8, 8) == 176)
            #expect(le(h, 120, 4) == 1 && le(h, 120 + 4, 4) == 7 && le(h, 120 + 8, 8) == 4096)
            #expect(le(h, 120 + 32, 8) == 8192 && le(h, 120 + 40, 8) == 8192)
            // The note: "CORE", NT_PRSTATUS, 336 bytes; pr_cursig and pr_reg.
            #expect(le(h, 176, 4) == 5 && le(h, 180, 4) == 336 && le(h, 184, 4) == 1)
            #expect(String(decoding: h[188..<192], as: UTF8.self) == "CORE")
            let status = 196
            #expect(le(h, status + 12, 2) == 11)
            #expect(le(h, status + 112, 8) == 15)                             // r15 first
            #expect(le(h, status + 112 + 16 * 8, 8) == 0x10105a)              // rip
            #expect(le(h, status + 112 + 19 * 8, 8) == 0x3fffc0)              // rsp
            #expect(le(h, status + 112 + 26 * 8, 8) == 0x10)                  // gs last
            #expect(h.count == 196 + 336)
        }
    }

    @Test func zeroPagesBecomeHolesAndTheFileHasItsFullLength() throws {
        var memory = [UInt8](repeating: 0, count: 5 * 4096 + 100)
        memory[4096 + 7] = 0x42
        memory[5 * 4096 + 99] = 0x43
        let path = NSTemporaryDirectory() + "core-test-\(getpid())-\(UInt32.random(in: 0..<1_000_000))"
        defer { unlink(path) }
        let file = try FileDescriptor.open(path, flags: O_RDWR | O_CREAT | O_EXCL)
        let pages = try memory.withUnsafeBytes { m in
            try ELFCoreFile(registers: CoreRegisters(), signal: 6, memory: m).write(to: file)
        }
        #expect(pages.written == 2 && pages.total == 6)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(data.count == 4096 + memory.count)
        #expect(data[4096 + 4096 + 7] == 0x42 && data[4096 + 5 * 4096 + 99] == 0x43)
        #expect(Array(data[(4096 + memory.count - 200)...]).dropLast().allSatisfy { $0 == 0 })
    }
}
