import GuestMemory
import Testing
@testable import Boot

@Suite struct HvtImageTests {
    func load(_ elf: TestELF) throws -> HvtImage { try HvtImage(bytes: elf.bytes, name: "k.hvt") }

    func message(_ elf: TestELF) -> String {
        do { _ = try load(elf); return "" } catch let e as BootError { return e.message } catch { return "\(error)" }
    }

    @Test func minimalImageLoads() throws {
        let image = try load(TestELF())
        #expect(image.entry == 0x10_0000)
        #expect(image.kernelEnd == 0x10_1000)
        #expect(image.manifest.entries == [.init(name: "", type: .reserved(1 << 30))])
        #expect(image.abi == .v1)
    }

    @Test func manifestEntriesAreParsed() throws {
        var elf = TestELF()
        elf.notes[1] = TestELF.manifestNote([("storage", 1), ("service", 2), ("", 1 << 30)])
        let m = try load(elf).manifest
        #expect(m.entries.map(\.name) == ["", "storage", "service", ""])
        #expect(m.index(of: "service", type: .net) == 2)
        #expect(m.index(of: "service", type: .block) == nil)
    }

    @Test func badInputGetsOneLineErrors() {
        #expect(message(TestELF()) == "")
        #expect(HvtImageTests.errorFor(bytes: Array("#!/bin/sh\necho hi\n".utf8)) == "k.hvt: invalid or unsupported executable (not an ELF file)")
        #expect(HvtImageTests.errorFor(bytes: Array(TestELF().bytes.prefix(40))) == "k.hvt: invalid or unsupported executable (not an ELF file)")
        #expect(message({ var e = TestELF(); e.machine = 183; return e }()) == "k.hvt: invalid or unsupported executable (not an x86-64 ELF file)")
        #expect(message({ var e = TestELF(); e.notes = [TestELF.manifestNote([])]; return e }()).contains("No Solo5 ABI information found in executable"))
        #expect(message({ var e = TestELF(); e.notes[0] = TestELF.abiNote(target: 2); return e }())
            == "k.hvt: Executable is not for the solo5-hvt target (built for 'spt')")
        for version: UInt32 in [0, 3, 9, 255] {
            #expect(message({ var e = TestELF(); e.notes[0] = TestELF.abiNote(version: version); return e }())
                == "k.hvt: Executable requests unsupported ABI version \(version) (swiftlet hvt runs hvt ABI 1 and 2)")
        }
        #expect(message({ var e = TestELF(); e.notes = [TestELF.abiNote()]; return e }()).contains("No Solo5 manifest found in executable"))
        #expect(message({ var e = TestELF(); e.notes.append(TestELF.abiNote()); return e }()).contains("ABI note appears 2 times"))
        #expect(message({ var e = TestELF(); e.notes[1] = TestELF.manifestNote([], declaredCount: 65); return e }())
            .contains("Solo5 manifest is invalid (65 entries, at most 64"))
        #expect(message({ var e = TestELF(); e.notes[1] = TestELF.manifestNote([], reservedFirst: false); return e }())
            .contains("Solo5 manifest is invalid (Solo5 manifest has no entries"))
        #expect(message({ var e = TestELF(); e.notes[1] = TestELF.manifestNote([("storage", 1)], reservedFirst: false); return e }())
            .contains("entry 0 is not the reserved entry"))
        #expect(message({ var e = TestELF(); e.segments[0].flags = 7; return e }()).contains("invalid executable: segment at 0x100000 requests WRITE and EXEC permissions"))
        let tooMany = (0..<64).map { ("d\($0)", UInt32(1)) }
        #expect(message({ var e = TestELF(); e.notes[1] = TestELF.manifestNote(tooMany); return e }()).contains("at most 64"))
        let longName = String(repeating: "a", count: 68)
        #expect(message({ var e = TestELF(); e.notes[1] = TestELF.manifestNote([(longName, 1)]); return e }()).contains("longer than 67"))
        #expect(message({ var e = TestELF(); e.notes[1] = TestELF.manifestNote([("a", 1), ("a", 2)]); return e }()).contains("twice"))
        #expect(message({ var e = TestELF(); e.notes[1] = TestELF.manifestNote([("bad-name", 1)]); return e }()).contains("invalid device name"))
        #expect(message({ var e = TestELF(); e.notes[1] = TestELF.manifestNote([("x", 7)]); return e }()).contains("unknown device type"))
        #expect(message({ var e = TestELF(); e.segments[0].address = 0x8000; e.entry = 0x8000; return e }()).contains("below 1 MiB"))
        #expect(message({ var e = TestELF(); e.entry = 0x20_0000; return e }()).contains("entry point"))
        #expect(message({ var e = TestELF(); e.segments[0].memorySize = 1; return e }()).contains("file size exceeds"))
        #expect(message({ var e = TestELF(); e.segments[0].memorySize = UInt64.max; return e }()).contains("overflows"))
        #expect(message({ var e = TestELF(); e.segments.append(e.segments[0]); return e }()).contains("overlap"))
        #expect(message({ var e = TestELF(); e.type = 3; return e }()).contains("not an executable"))
    }

    @Test func abi2ImagesLoadWithSolo5sLayout() throws {
        // As Solo5 v0.12.1's toolchain emits: the ABI-2 note, an empty PT_LOAD at address 0, a
        // PT_INTERP and a PT_TLS (neither loaded), and an OpenBSD note beside Solo5's.
        var elf = TestELF()
        elf.notes[0] = TestELF.abiNote(version: 2)
        elf.notes.append(.init(name: "OpenBSD", type: 1, descriptor: [0, 0, 0, 0]))
        elf.segments.append(.init(address: 0, data: [], memorySize: 0, flags: 4))
        elf.extraHeaders = [(type: 3, address: 0x10_0000, size: 20), (type: 7, address: 0x10_0000, size: 8)]
        let image = try load(elf)
        #expect(image.abi == .v2)
        #expect(image.segments.count == 1)
        #expect(image.kernelEnd == 0x10_1000)
    }

    /// A device name with control or non-ASCII bytes is quoted with \x escapes: the error stays
    /// one line (fuzz target hvt-loader: a CR in a manifest name broke the line).
    @Test func invalidDeviceNamesAreQuotedOnOneLine() {
        let error = message({ var e = TestELF(); e.notes[1] = TestELF.manifestNote([("a\rb\nc\u{2028}\\", 1)]); return e }())
        #expect(error == #"k.hvt: Solo5 manifest is invalid (Solo5 manifest entry 1: invalid device name 'a\x0Db\x0Ac\u{2028}\\')"#)
        #expect(!error.contains { $0.isNewline })
    }

    static func errorFor(bytes: [UInt8]) -> String {
        do { _ = try HvtImage(bytes: bytes, name: "k.hvt"); return "" } catch { return error.message }
    }

    @Test func truncatedImagesNeverTrap() {
        let full = TestELF().bytes
        for length in stride(from: 0, to: full.count, by: 7) {
            _ = HvtImageTests.errorFor(bytes: Array(full.prefix(length)))
        }
        var corrupt = full
        for i in stride(from: 16, to: 64, by: 1) {
            corrupt[i] = 0xFF
            _ = HvtImageTests.errorFor(bytes: corrupt)
        }
    }
}

@Suite struct HvtGuestLayoutTests {
    /// Image: text (R+X) at 1 MiB, rodata (R) at +4K, data (RW) at +8K.
    func image() throws -> HvtImage {
        var elf = TestELF()
        elf.segments = [
            .init(address: 0x10_0000, data: [0x90, 0xF4], memorySize: 0x1000, flags: 5),
            .init(address: 0x10_1000, data: [1, 2, 3], memorySize: 0x1000, flags: 4),
            .init(address: 0x10_2000, data: [4, 5], memorySize: 0x3000, flags: 6),
        ]
        elf.notes[1] = TestELF.manifestNote([("storage", 1)])
        return try HvtImage(bytes: elf.bytes, name: "k")
    }

    func pte(_ memory: GuestMemory, _ address: UInt64) throws -> UInt64 {
        // Walk PML4 -> PDPT -> PD -> PT like the CPU does.
        let pml4e: UInt64 = try memory.load(at: GuestAddress(HvtGuestLayout.pml4Base + ((address >> 39) & 511) * 8))
        let pdpte: UInt64 = try memory.load(at: GuestAddress((pml4e & ~0xFFF & ((1 << 52) - 1)) + ((address >> 30) & 511) * 8))
        let pde: UInt64 = try memory.load(at: GuestAddress((pdpte & 0x000F_FFFF_FFFF_F000) + ((address >> 21) & 511) * 8))
        if pde & 0x80 != 0 { return pde }
        return try memory.load(at: GuestAddress((pde & 0x000F_FFFF_FFFF_F000) + ((address >> 12) & 511) * 8))
    }

    @Test func protectionsFollowSegments() throws {
        let memory = try GuestMemory(size: 8 << 20)
        var manifest = try image().manifest
        manifest.attachBlock(at: 1, capacity: 4096, blockSize: 512)
        let boot = try HvtGuestLayout.build(image: try image(), manifest: manifest, arguments: ["a", "bc"],
                                            cpuCycleFrequency: 1_000_000, ramSize: 8 << 20, into: memory)
        #expect(boot.entry == 0x10_0000)
        #expect(boot.stackPointer == (8 << 20) - 8)
        let nx: UInt64 = 1 << 63
        #expect(try pte(memory, 0) & 1 == 0, "zero page unmapped")
        let text = try pte(memory, 0x10_0000)
        #expect(text & 1 == 1 && text & 2 == 0 && text & nx == 0, "text: present, read-only, executable")
        let rodata = try pte(memory, 0x10_1000)
        #expect(rodata & 2 == 0 && rodata & nx != 0, "rodata: read-only, no-execute")
        let data = try pte(memory, 0x10_4000)
        #expect(data & 2 != 0 && data & nx != 0, "data/bss: writable, no-execute")
        let heap = try pte(memory, 0x20_0000 + 0x5000)
        #expect(heap & 0x80 != 0 && heap & 2 != 0 && heap & nx != 0, "heap: 2 MiB, writable, no-execute")
        #expect(try memory.load(UInt8.self, at: GuestAddress(0x10_1002)) == 3)
        #expect(try memory.load(UInt8.self, at: GuestAddress(0x10_2002)) == 0, "bss zeroed")
        // Boot info.
        let bi = HvtGuestLayout.bootInfoBase
        #expect(try memory.load(UInt64.self, at: GuestAddress(bi)) == 8 << 20)
        #expect(try memory.load(UInt64.self, at: GuestAddress(bi + 8)) == 0x10_5000)
        #expect(try memory.load(UInt64.self, at: GuestAddress(bi + 16)) == 1_000_000)
        let cmdline: UInt64 = try memory.load(at: GuestAddress(bi + 24))
        #expect(try memory.readCString(at: GuestAddress(cmdline), maxLength: 8192) == "a bc")
        let mft: UInt64 = try memory.load(at: GuestAddress(bi + 32))
        #expect(mft == bi + 40, "ABI 1: a 40-byte boot info")
        #expect(try memory.load(UInt32.self, at: GuestAddress(mft + 4)) == 2)
        #expect(try memory.load(UInt64.self, at: GuestAddress(mft + 8 + 104 + 72)) == 4096, "capacity filled in")
        #expect(try memory.load(UInt8.self, at: GuestAddress(mft + 8 + 104 + 96)) == 1, "attached")
    }

    @Test func abi2BootInfoOffersTheRingAfterRAM() throws {
        var elf = TestELF()
        elf.notes[0] = TestELF.abiNote(version: 2)
        let img = try HvtImage(bytes: elf.bytes, name: "k")
        // 4 MiB of RAM and the 2 MiB ring area after it, as solo5-hvt lays them out.
        let ram = try GuestMemoryRegion(base: GuestAddress(0), size: 4 << 20)
        let ringArea = try GuestMemoryRegion(base: GuestAddress(4 << 20), size: HvtGuestLayout.netRingArea)
        let memory = try GuestMemory(regions: [ram, ringArea])
        let boot = try HvtGuestLayout.build(image: img, manifest: img.manifest, arguments: [], cpuCycleFrequency: 1,
                                            ramSize: 4 << 20, netRing: 4 << 20, into: memory)
        #expect(boot.stackPointer == (4 << 20) - 8, "the stack is below the ring")
        let bi = HvtGuestLayout.bootInfoBase
        #expect(try memory.load(UInt64.self, at: GuestAddress(bi)) == 4 << 20, "mem_size excludes the ring")
        #expect(try memory.load(UInt64.self, at: GuestAddress(bi + 32)) == bi + 56, "ABI 2: a 56-byte boot info")
        #expect(try memory.load(UInt32.self, at: GuestAddress(bi + 40)) == 1, "host_features: HVT_FEATURE_RING_IO")
        #expect(try memory.load(UInt32.self, at: GuestAddress(bi + 44)) == 0, "guest_features")
        #expect(try memory.load(UInt64.self, at: GuestAddress(bi + 48)) == 4 << 20, "net_ring == mem_size")
        #expect(try pte(memory, 4 << 20) & 3 == 3, "the ring is mapped, writable")
        // Without a ring: no feature, no address.
        let plain = try GuestMemory(size: 4 << 20)
        _ = try HvtGuestLayout.build(image: img, manifest: img.manifest, arguments: [], cpuCycleFrequency: 1, ramSize: 4 << 20, into: plain)
        #expect(try plain.load(UInt32.self, at: GuestAddress(bi + 40)) == 0)
        #expect(try plain.load(UInt64.self, at: GuestAddress(bi + 48)) == 0)
        // A ring is ABI 2's alone.
        let old = try image()
        #expect(throws: BootError.self) {
            _ = try HvtGuestLayout.build(image: old, manifest: old.manifest, arguments: [], cpuCycleFrequency: 1,
                                         ramSize: 4 << 20, netRing: 4 << 20, into: memory)
        }
    }

    @Test func tooSmallMemoryAndLongCommandLinesAreRefused() throws {
        let img = try image()
        #expect(throws: BootError.self) {
            _ = try HvtGuestLayout.build(image: img, manifest: img.manifest, arguments: [String(repeating: "x", count: 8192)],
                                         cpuCycleFrequency: 1, ramSize: 2 << 20, into: try GuestMemory(size: 2 << 20))
        }
        // File contents past RAM: refused. A .bss past RAM: loaded as far as RAM goes (solo5-hvt
        // runs such an image and the guest's allocator reports the shortage).
        var elf = TestELF()
        elf.segments[0].data = [UInt8](repeating: 0x90, count: 0x20_0000)
        elf.segments[0].memorySize = 0x20_0000
        let big = try HvtImage(bytes: elf.bytes, name: "big")
        #expect(throws: BootError.self) {
            _ = try HvtGuestLayout.build(image: big, manifest: big.manifest, arguments: [], cpuCycleFrequency: 1,
                                         ramSize: 2 << 20, into: try GuestMemory(size: 2 << 20))
        }
        var bss = TestELF()
        bss.segments[0].memorySize = 0x30_0000
        let wide = try HvtImage(bytes: bss.bytes, name: "wide")
        _ = try HvtGuestLayout.build(image: wide, manifest: wide.manifest, arguments: [], cpuCycleFrequency: 1,
                                     ramSize: 2 << 20, into: try GuestMemory(size: 2 << 20))
    }
}

/// Header tables placed at the top of the 64-bit offset space: an error, never an overflow trap.
@Suite struct ELFOffsetOverflowTests {
    @Test func sectionHeadersAtTheEndOfTheOffsetSpace() {
        var bytes = TestELF().bytes
        withUnsafeBytes(of: (UInt64.max - 1).littleEndian) { for i in 0..<8 { bytes[40 + i] = $0[i] } } // e_shoff
        bytes[58] = 64; bytes[59] = 0                                                                      // e_shentsize
        bytes[60] = 1; bytes[61] = 0                                                                       // e_shnum
        #expect(HvtImageTests.errorFor(bytes: bytes).contains("section headers overflow"))
    }

    @Test func programHeadersAtTheEndOfTheOffsetSpace() {
        var bytes = TestELF().bytes
        withUnsafeBytes(of: (UInt64.max - 1).littleEndian) { for i in 0..<8 { bytes[32 + i] = $0[i] } } // e_phoff
        #expect(!HvtImageTests.errorFor(bytes: bytes).isEmpty)
    }
}

/// Names from a unikernel's manifest reach the user's terminal in messages: escaped, never raw.
@Suite struct HvtManifestNameTests {
    func message(_ name: String) -> String {
        var elf = TestELF()
        elf.notes[1] = TestELF.manifestNote([(name, 1)])
        do { _ = try HvtImage(bytes: elf.bytes, name: "k.hvt"); return "" } catch { return error.message }
    }

    @Test func controlBytesInADeviceNameAreEscaped() {
        let m = message("disk\u{1B}]0;pwned\u{7}\u{1B}[2J\u{7F}\u{9B}")
        #expect(m.contains(#"invalid device name 'disk\x1B]0;pwned\x07\x1B[2J\x7F\u{9B}'"#), "\(m)")
        #expect(!m.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }, "\(m.debugDescription)")
    }
}

/// Note areas (PT_NOTE segments, or SHT_NOTE sections) that overlap: refused before parsing, since
/// each header naming an area had its notes parsed again (fuzz target hvt-loader: 580 headers over
/// one 32 KB area of empty notes took 36 s and 400 MB; a few MiB of file exhausted the host).
@Suite struct ELFNoteAreaTests {
    /// TestELF's image with `copies` more PT_NOTE headers naming its note area.
    static func repeatedNoteArea(copies: Int) -> [UInt8] {
        var elf = TestELF()
        elf.extraHeaders = Array(repeating: (type: 4, address: 0, size: 0), count: copies)
        var bytes = elf.bytes
        let noteHeader = Array(bytes[64..<120]) // program header 0 is the PT_NOTE
        for i in 0..<copies {
            let base = 64 + 56 * (elf.segments.count + 1 + i)
            bytes.replaceSubrange(base..<base + 56, with: noteHeader)
        }
        return bytes
    }

    @Test func overlappingNoteAreasAreRefused() throws {
        let elf = try ELFFile(bytes: Self.repeatedNoteArea(copies: 1000))
        let noteArea = 64 + 56 * 1002 // after the ELF header and 1 + 1 + 1000 program headers
        #expect(throws: BootError("ELF note areas overlap at offset \(noteArea)")) { _ = try elf.notes() }
        let message = HvtImageTests.errorFor(bytes: Self.repeatedNoteArea(copies: 1000))
        #expect(message.contains("ELF note areas overlap") && !message.contains("\n"))
        let twice = Self.repeatedNoteArea(copies: 1)
        #expect(!HvtImage.isSolo5(twice), "one area named by two headers is an overlap too")
    }

    @Test func disjointAndEmptyNoteAreasStillParse() throws {
        var elf = TestELF()
        elf.extraHeaders = [(type: 4, address: 0, size: 0)] // a PT_NOTE of no bytes at offset 0
        #expect(try ELFFile(bytes: elf.bytes).notes().count == 2)
        #expect(HvtImage.isSolo5(elf.bytes))
    }
}
