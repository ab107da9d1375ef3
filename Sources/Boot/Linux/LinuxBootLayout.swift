import VMSpec
import GuestMemory

/// Places a bzImage, its command line, initrd, zero page (boot_params), e820 map, GDT and
/// identity page tables in guest memory for the 64-bit boot protocol entry.
///
/// Low memory:
/// ```
/// 0x0500  GDT: null, null, code64 (0x10, __BOOT_CS), data (0x18, __BOOT_DS)
/// 0x7000  zero page (struct boot_params)
/// 0x8FF0  initial stack
/// 0x9000  PML4   0xA000 PDPT   0xB000..0xEFFF  page directories (identity map of the low 4 GiB, 2 MiB pages)
/// 0x20000 command line
/// 0x9FC00..0xA0000 reserved (EBDA); 0xE0000..0x100000 reserved (ACPI tables live here)
/// 0x100000 protected-mode kernel; the initrd goes as high as the kernel allows
/// ```
public enum LinuxBootLayout {
    public static let gdtBase: UInt64 = 0x500
    public static let zeroPage: UInt64 = 0x7000
    public static let stackPointer: UInt64 = 0x8FF0
    public static let pml4: UInt64 = 0x9000
    public static let pdpt: UInt64 = 0xA000
    public static let pageDirectories: UInt64 = 0xB000
    public static let commandLine: UInt64 = 0x2_0000
    public static let commandLineMax = 0x1_0000
    public static let ebdaStart: UInt64 = 0x9_FC00
    public static let biosStart: UInt64 = 0xE_0000
    public static let kernelLoad: UInt64 = 0x10_0000
    public static let codeSelector: UInt16 = 0x10
    public static let dataSelector: UInt16 = 0x18
    public static let cr0: UInt64 = 0x8000_0033 // PE MP ET NE PG
    public static let cr4: UInt64 = 0x20 // PAE
    public static let efer: UInt64 = 0x500 // LME LMA

    /// What the vCPU needs to start.
    public struct BootState: Equatable, Sendable {
        /// 64-bit boot protocol (bzImage: RSI = zero page, paging on) or PVH (32-bit protected
        /// mode, paging off, EBX = hvm_start_info).
        public enum Mode: Equatable, Sendable { case longMode, pvh }
        public var mode: Mode = .longMode
        public var entry: UInt64
        /// Zero page (long mode) or hvm_start_info (PVH).
        public var zeroPage: UInt64
        public var stackPointer: UInt64
    }

    /// hvm_start_info and its tables for PVH (xen/include/public/arch-x86/hvm/start_info.h).
    public static let startInfo: UInt64 = 0x6000
    static let startInfoMemmap: UInt64 = 0x6040
    static let startInfoModules: UInt64 = 0x6F00
    static let pvhMagic: UInt32 = 0x336E_C578

    /// One e820 entry (type 1 RAM, 2 reserved).
    public struct E820Entry: Equatable, Sendable {
        public var address: UInt64, size: UInt64, type: UInt32
    }

    /// Guest RAM layout for `memorySize` bytes: below 3 GiB, then above 4 GiB past the MMIO hole.
    public static func ramRegions(memorySize: UInt64) -> [(base: UInt64, size: UInt64)] {
        let holeStart: UInt64 = 3 << 30
        if memorySize <= holeStart { return [(0, memorySize)] }
        return [(0, holeStart), (4 << 30, memorySize - holeStart)]
    }

    /// The e820 map for `memory` (regions as from `ramRegions`), plus `reserved` ranges outside
    /// RAM that firmware must announce (the PCIe ECAM window, for Linux to trust ACPI's MCFG).
    public static func e820(for memory: GuestMemory, reserved: [(base: UInt64, size: UInt64)] = []) -> [E820Entry] {
        var map: [E820Entry] = [E820Entry(address: 0, size: ebdaStart, type: 1),
                                E820Entry(address: ebdaStart, size: 0xA_0000 - ebdaStart, type: 2),
                                E820Entry(address: biosStart, size: kernelLoad - biosStart, type: 2)]
        for r in memory.regions {
            let start = max(r.base.rawValue, kernelLoad)
            if r.end > start { map.append(E820Entry(address: start, size: r.end - start, type: 1)) }
        }
        for r in reserved { map.append(E820Entry(address: r.base, size: r.size, type: 2)) }
        return map.sorted { $0.address < $1.address }
    }

    /// Copies `initrd` as high as possible below `top`, page aligned, not below `floor`.
    static func placeInitrd(_ initrd: [UInt8], below top: UInt64, above floor: UInt64, into memory: GuestMemory) throws -> UInt64 {
        let size = UInt64(initrd.count)
        guard size <= top, (top - size) & ~0xFFF >= floor else {
            throw BootError("initrd (\(initrd.count) bytes) does not fit below the kernel's limit of \(top.hexString) (give the VM more memory)")
        }
        let address = (top - size) & ~0xFFF
        try memory.write(initrd, at: GuestAddress(address))
        return address
    }

    /// Loads a PVH ELF kernel: segments, command line, initrd as module 0, memory map, and the
    /// hvm_start_info the entry receives in EBX; a flat 32-bit GDT for the protected-mode entry.
    public static func buildPVH(kernel: PVHImage, initrd: [UInt8]?, commandLine cmdline: String,
                                rsdp: UInt64, reserved: [(base: UInt64, size: UInt64)] = [],
                                into memory: GuestMemory) throws(BootError) -> BootState {
        let cmd = Array(cmdline.utf8)
        guard cmd.count < commandLineMax else { throw BootError("kernel command line is \(cmd.count) bytes, at most \(commandLineMax - 1) fit") }
        guard !cmd.contains(0) else { throw BootError("kernel command line contains a NUL byte") }
        let lowRAM = memory.regions.first.map { $0.end } ?? 0
        guard kernel.end <= lowRAM else {
            throw BootError("guest memory (\(memory.size >> 20) MiB) is too small for the kernel (ends at \(kernel.end) bytes)")
        }
        try BootError.layingOut {
            try HvtGuestLayout.loadSegments(kernel.segments, from: kernel.elf.bytes, into: memory)
            try memory.write(cmd + [0], at: GuestAddress(commandLine))
            try memory.fill(at: GuestAddress(startInfo), count: 0x1000)
            var modules: UInt32 = 0
            if let initrd, !initrd.isEmpty {
                let address = try placeInitrd(initrd, below: min(lowRAM, 1 << 32), above: (kernel.end + 0xFFF) & ~0xFFF, into: memory)
                try memory.store(address, at: GuestAddress(startInfoModules))
                try memory.store(UInt64(initrd.count), at: GuestAddress(startInfoModules + 8))
                modules = 1
            }
            let map = e820(for: memory, reserved: reserved)
            for (i, e) in map.enumerated() {
                let at = startInfoMemmap + UInt64(i) * 24
                try memory.store(e.address, at: GuestAddress(at))
                try memory.store(e.size, at: GuestAddress(at + 8))
                try memory.store(e.type, at: GuestAddress(at + 16))
            }
            try memory.store(pvhMagic, at: GuestAddress(startInfo))
            try memory.store(UInt32(1), at: GuestAddress(startInfo + 4)) // version 1: has the memmap
            try memory.store(modules, at: GuestAddress(startInfo + 12))
            try memory.store(modules > 0 ? startInfoModules : 0, at: GuestAddress(startInfo + 16))
            try memory.store(commandLine, at: GuestAddress(startInfo + 24))
            try memory.store(rsdp, at: GuestAddress(startInfo + 32))
            try memory.store(startInfoMemmap, at: GuestAddress(startInfo + 40))
            try memory.store(UInt32(map.count), at: GuestAddress(startInfo + 48))
            try FlatGDT.write(at: gdtBase, codeSelector: codeSelector, dataSelector: dataSelector, code: FlatGDT.code32, into: memory)
        }
        return BootState(mode: .pvh, entry: UInt64(kernel.entry), zeroPage: startInfo, stackPointer: 0)
    }

    /// Writes everything; `rsdp` is the ACPI RSDP address for boot_params.acpi_rsdp_addr (0 = none).
    public static func build(kernel: LinuxKernelImage, initrd: [UInt8]?, commandLine cmdline: String,
                             rsdp: UInt64, reserved: [(base: UInt64, size: UInt64)] = [],
                             into memory: GuestMemory) throws(BootError) -> BootState {
        let cmd = Array(cmdline.utf8)
        let limit = min(kernel.commandLineLimit, commandLineMax - 1)
        guard cmd.count <= limit else { throw BootError("kernel command line is \(cmd.count) bytes, the kernel accepts \(limit)") }
        guard !cmd.contains(0) else { throw BootError("kernel command line contains a NUL byte") }
        let lowRAM = memory.regions.first.map { $0.end } ?? 0
        let kernelEnd = kernelLoad + max(kernel.initSize, UInt64(kernel.protectedModeKernel.count))
        guard kernelEnd <= lowRAM else {
            throw BootError("guest memory (\(memory.size >> 20) MiB) is too small for the kernel (needs \((kernelEnd + 0xFFFFF) >> 20) MiB)")
        }
        try BootError.layingOut {
            // Kernel.
            try memory.write(Array(kernel.protectedModeKernel), at: GuestAddress(kernelLoad))
            // Command line.
            try memory.write(cmd + [0], at: GuestAddress(commandLine))
            // Zero page: setup header copied in, then our fields.
            try memory.fill(at: GuestAddress(zeroPage), count: 4096)
            try memory.write(Array(kernel.setupHeader), at: GuestAddress(zeroPage + UInt64(LinuxKernelImage.setupHeaderOffset)))
            try memory.store(UInt8(0xFF), at: GuestAddress(zeroPage + 0x210)) // type_of_loader: undefined
            let loadflags: UInt8 = try memory.load(at: GuestAddress(zeroPage + 0x211))
            try memory.store(loadflags | 0x80, at: GuestAddress(zeroPage + 0x211)) // CAN_USE_HEAP
            try memory.store(UInt16(0xFE00), at: GuestAddress(zeroPage + 0x224)) // heap_end_ptr
            try memory.store(UInt32(commandLine), at: GuestAddress(zeroPage + 0x228)) // cmd_line_ptr
            try memory.store(UInt32(0), at: GuestAddress(zeroPage + 0x0C8)) // ext_cmd_line_ptr
            try memory.store(UInt32(cmd.count), at: GuestAddress(zeroPage + 0x238))
            try memory.store(rsdp, at: GuestAddress(zeroPage + 0x070)) // acpi_rsdp_addr
            // Initrd: as high as allowed, page aligned, clear of the kernel.
            if let initrd, !initrd.isEmpty {
                let address = try placeInitrd(initrd, below: min(kernel.initrdLimit, lowRAM), above: kernelEnd, into: memory)
                let size = UInt64(initrd.count)
                try memory.store(UInt32(truncatingIfNeeded: address), at: GuestAddress(zeroPage + 0x218))
                try memory.store(UInt32(truncatingIfNeeded: size), at: GuestAddress(zeroPage + 0x21C))
                try memory.store(UInt32(truncatingIfNeeded: address >> 32), at: GuestAddress(zeroPage + 0x0C0))
                try memory.store(UInt32(truncatingIfNeeded: size >> 32), at: GuestAddress(zeroPage + 0x0C4))
            }
            // e820.
            let map = e820(for: memory, reserved: reserved)
            try memory.store(UInt8(map.count), at: GuestAddress(zeroPage + 0x1E8))
            for (i, e) in map.enumerated() {
                let at = zeroPage + 0x2D0 + UInt64(i) * 20
                try memory.store(e.address, at: GuestAddress(at))
                try memory.store(e.size, at: GuestAddress(at + 8))
                try memory.store(e.type, at: GuestAddress(at + 16))
            }
            // GDT: the 64-bit boot protocol wants __BOOT_CS = 0x10 and __BOOT_DS = 0x18.
            try FlatGDT.write(at: gdtBase, codeSelector: codeSelector, dataSelector: dataSelector, into: memory)
            // Identity map of the first 4 GiB with 2 MiB pages (the kernel builds its own soon after).
            try memory.fill(at: GuestAddress(pml4), count: 0x6000)
            try memory.store(pdpt | 3, at: GuestAddress(pml4))
            for gb in UInt64(0)..<4 {
                let pd = pageDirectories + gb * 0x1000
                try memory.store(pd | 3, at: GuestAddress(pdpt + gb * 8))
                for i in UInt64(0)..<512 {
                    try memory.store(((gb << 30) + (i << 21)) | 0x83, at: GuestAddress(pd + i * 8))
                }
            }
        }
        return BootState(mode: .longMode, entry: kernelLoad + 0x200, zeroPage: zeroPage, stackPointer: stackPointer)
    }
}
