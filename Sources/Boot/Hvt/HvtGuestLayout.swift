import VMSpec
import GuestMemory

/// Lays out a Solo5 hvt guest in memory: segments, GDT, page tables with per-segment protections,
/// boot info, manifest copy and command line; and describes the initial 64-bit CPU state.
///
/// Low memory (all below 1 MiB, where no segment may load):
/// ```
/// 0x0000  zero page: NOT mapped, so a guest NULL dereference faults
/// 0x1000  GDT (null, code 0x08, data 0x10)
/// 0x2000  PML4      0x3000 PDPT      0x4000..0x7fff  four page directories (up to 4 GiB)
/// 0x8000  struct hvt_boot_info (40 bytes in ABI 1, 56 in ABI 2), then the manifest copy
/// 0xA000  command line (HVT_CMDLINE_SIZE = 8192)
/// 0xC000  4 KiB page tables for the image (one per 2 MiB up to the image end; up to 1 MiB)
/// ```
/// Memory from 0 up to the image end (rounded up to 2 MiB) is mapped with 4 KiB pages so text can
/// be read-only and data non-executable; the rest with 2 MiB read/write, no-execute pages.
///
/// With the ABI-2 network ring (as solo5-hvt v0.12.1 lays it out): guest RAM is what `--mem`
/// asked for, the 2 MiB after it hold the ring (`netRingArea`), and the boot info reports the
/// RAM alone as `mem_size`, so `net_ring == mem_size`. The page tables map the ring too.
public enum HvtGuestLayout {
    public static let gdtBase: UInt64 = 0x1000
    public static let pml4Base: UInt64 = 0x2000
    public static let pdptBase: UInt64 = 0x3000
    public static let pdBase: UInt64 = 0x4000
    public static let bootInfoBase: UInt64 = 0x8000
    /// Size of struct hvt_boot_info for each ABI.
    public static func bootInfoSize(_ abi: HvtABI) -> UInt64 { abi == .v1 ? 40 : 56 }
    /// The space reserved after guest RAM for the ring (its 49,280 bytes rounded up to 2 MiB, as
    /// solo5-hvt reserves it).
    public static let netRingArea: UInt64 = 2 << 20
    /// `host_features` bit: the tender serves network I/O through the ring (HVT_FEATURE_RING_IO).
    public static let featureRingIO: UInt32 = 1
    public static let cmdlineBase: UInt64 = 0xA000
    public static let cmdlineSize = 8192
    public static let pageTableBase: UInt64 = 0xC000
    public static let pageTableLimit: UInt64 = 0x10_0000
    /// Guest memory is a multiple of this (the large-page size) and at most `maximumMemory`.
    public static let memoryGranule: UInt64 = 2 << 20
    /// Hypercall arguments are 32-bit guest addresses, so memory beyond 4 GiB is unreachable for them.
    public static let maximumMemory: UInt64 = 4 << 30

    // Page-table entry bits.
    static let present: UInt64 = 1, writable: UInt64 = 2, largePage: UInt64 = 1 << 7, noExecute: UInt64 = 1 << 63

    // Control-register bits for the initial state.
    public static let cr0: UInt64 = 0x8001_0033 // PE MP ET NE WP PG
    public static let cr4: UInt64 = 0x620 // PAE OSFXSR OSXMMEXCPT
    public static let efer: UInt64 = 0xD00 // LME LMA NXE
    public static let gdtLimit: UInt16 = 3 * 8 - 1
    public static let codeSelector: UInt16 = 0x08, dataSelector: UInt16 = 0x10

    /// Where the vCPU starts: RIP at the entry point, RDI = boot info, RSP = top of memory - 8
    /// (the SysV ABI state right after a call).
    public struct BootState: Equatable, Sendable {
        public var entry: UInt64
        public var stackPointer: UInt64
        public var bootInfo: UInt64
    }

    /// Writes `image` and every boot structure into `memory` (zeroed, starting at 0). Guest RAM is
    /// its first `ramSize` bytes; with `netRing`, the ring's GPA (== `ramSize`, ABI 2 only), the
    /// boot info offers ring I/O. Like solo5-hvt, an image whose .bss reaches past RAM still runs
    /// (the guest's own allocator then says it has no memory); only its file contents must fit.
    public static func build(image: HvtImage, manifest: HvtManifest, arguments: [String],
                             cpuCycleFrequency: UInt64, ramSize: UInt64, netRing: UInt64? = nil,
                             into memory: GuestMemory) throws(BootError) -> BootState {
        guard ramSize % memoryGranule == 0, ramSize >= memoryGranule, ramSize <= memory.size, memory.size <= maximumMemory else {
            throw BootError("guest memory must be a multiple of 2 MiB between 2 MiB and 4 GiB")
        }
        guard netRing == nil || (image.abi >= .v2 && netRing == ramSize) else {
            throw BootError("the network ring needs hvt ABI 2 and must follow guest RAM")
        }
        let cmdline = arguments.joined(separator: " ")
        guard cmdline.utf8.count < cmdlineSize else {
            throw BootError("Guest command line too long (max=\(cmdlineSize - 1) characters)")
        }
        try BootError.layingOut {
            try loadSegments(image.segments, from: image.elf.bytes, ramSize: ramSize, into: memory)
            try FlatGDT.write(at: gdtBase, codeSelector: codeSelector, dataSelector: dataSelector, into: memory)
            try writePageTables(image: image, mappedSize: memory.size, memory: memory)
            let infoSize = bootInfoSize(image.abi)
            let mftBase = bootInfoBase + infoSize
            try memory.fill(at: GuestAddress(bootInfoBase), count: infoSize)
            try memory.store(ramSize, at: GuestAddress(bootInfoBase))
            try memory.store(min(image.kernelEnd, ramSize), at: GuestAddress(bootInfoBase + 8))
            try memory.store(cpuCycleFrequency, at: GuestAddress(bootInfoBase + 16))
            try memory.store(cmdlineBase, at: GuestAddress(bootInfoBase + 24))
            try memory.store(mftBase, at: GuestAddress(bootInfoBase + 32))
            if image.abi >= .v2 {
                // host_features, guest_features (the guest's to write; 0), net_ring.
                try memory.store(netRing == nil ? UInt32(0) : featureRingIO, at: GuestAddress(bootInfoBase + 40))
                try memory.store(netRing ?? 0, at: GuestAddress(bootInfoBase + 48))
            }
            guard mftBase + UInt64(manifest.raw.count) <= cmdlineBase else { throw BootError("manifest too large") }
            try memory.write(manifest.raw, at: GuestAddress(mftBase))
            try memory.write(Array(cmdline.utf8) + [0], at: GuestAddress(cmdlineBase))
        }
        return BootState(entry: image.entry, stackPointer: ramSize - 8, bootInfo: bootInfoBase)
    }

    /// Copies ELF load segments into guest memory, which must be zeroed (fresh from mmap): the
    /// .bss tails are then zero already. With `ramSize` (hvt), only file contents must fit in RAM
    /// and a .bss may reach past it; without (PVH), every segment must fit in `memory` whole.
    static func loadSegments(_ segments: [ELFFile.LoadSegment], from file: [UInt8], ramSize: UInt64? = nil, into memory: GuestMemory) throws {
        for s in segments {
            let fits = if let ramSize { s.guestAddress < ramSize && s.fileSize <= ramSize - s.guestAddress }
                       else { memory.contains(GuestAddress(s.guestAddress), count: s.memorySize) }
            guard fits else {
                throw BootError("image segment at \(s.guestAddress.hexString) does not fit in guest memory")
            }
            let inRAM = ramSize.map { min(s.memorySize, $0 - s.guestAddress) } ?? s.memorySize
            let dest = try memory.bytes(at: GuestAddress(s.guestAddress), count: inRAM)
            s.contents(in: file).withUnsafeBytes { src in
                if src.count > 0 { dest.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: src.count) }
            }
            // The .bss tail is left as it is: guest memory is a fresh anonymous mapping, already zero
            // (the callers' contract). Writing zeros would only fault in every .bss page: about
            // 2 MiB of host memory per hvt VM for nothing, and the time to touch it.
        }
    }

    /// Protection for the 4 KiB page at `address`: the union of the segments touching it, or
    /// read/write/no-execute when no segment does (heap, stack, boot structures).
    static func pageFlags(_ address: UInt64, image: HvtImage) -> UInt64 {
        var touched = false, write = false, exec = false
        for s in image.segments where address < s.guestAddress + s.memorySize && s.guestAddress < address + 0x1000 {
            touched = true
            write = write || s.writable
            exec = exec || s.executable
        }
        if !touched { return present | writable | noExecute }
        return present | (write ? writable : 0) | (exec ? 0 : noExecute)
    }

    /// Identity-maps `[0, mappedSize)`: guest RAM and, with a ring, the area after it.
    static func writePageTables(image: HvtImage, mappedSize memSize: UInt64, memory: GuestMemory) throws {
        let fineEnd = min((image.kernelEnd + memoryGranule - 1) / memoryGranule * memoryGranule, memSize)
        let pageTables = fineEnd / memoryGranule
        guard pageTableBase + pageTables * 0x1000 <= pageTableLimit else {
            throw BootError("image too large for hvt page tables (ends at \(image.kernelEnd) bytes)")
        }
        try memory.fill(at: GuestAddress(pml4Base), count: pageTableBase + pageTables * 0x1000 - pml4Base)
        try memory.store(pdptBase | present | writable, at: GuestAddress(pml4Base))
        let gigabytes = (memSize + (1 << 30) - 1) >> 30
        for gb in 0..<gigabytes {
            try memory.store((pdBase + gb * 0x1000) | present | writable, at: GuestAddress(pdptBase + gb * 8))
        }
        var chunk: UInt64 = 0
        while chunk * memoryGranule < memSize {
            let chunkBase = chunk * memoryGranule
            let pdEntry = GuestAddress(pdBase + chunk * 8) // PDs are contiguous: entry index = chunk
            if chunkBase < fineEnd {
                let table = pageTableBase + chunk * 0x1000
                try memory.store(table | present | writable, at: pdEntry)
                for page in UInt64(0)..<512 {
                    let address = chunkBase + page * 0x1000
                    let entry: UInt64 = address == 0 ? 0 : address | pageFlags(address, image: image)
                    try memory.store(entry, at: GuestAddress(table + page * 8))
                }
            } else {
                try memory.store(chunkBase | present | writable | largePage | noExecute, at: pdEntry)
            }
            chunk += 1
        }
    }
}
