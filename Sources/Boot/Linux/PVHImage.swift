/// An ELF kernel with a PVH entry point (Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY): an uncompressed
/// Linux vmlinux built with CONFIG_PVH, or our own freestanding test guests. The entry runs in
/// 32-bit protected mode, paging off, with EBX pointing at a `struct hvm_start_info`.
public struct PVHImage: Sendable {
    /// One loadable segment, validated against the file.
    public struct Segment: Equatable, Sendable {
        public var address: UInt64, fileOffset: UInt64, fileSize: UInt64, memorySize: UInt64
    }

    static let xenNoteName = "Xen"
    static let phys32EntryNote: UInt32 = 18
    /// Segments must load at or above 1 MiB, clear of our boot structures.
    public static let minimumLoadAddress: UInt64 = 0x10_0000

    public let elf: ELFFile
    public let entry: UInt32
    public let segments: [Segment]
    /// First byte past the highest segment.
    public let end: UInt64

    public init(bytes: [UInt8], name: String) throws(BootError) {
        let elf = try ELFFile(bytes: bytes, name: name)
        guard elf.machine == ELFFile.machineX86_64 else { throw BootError("\(name): not an x86-64 ELF file") }
        guard let note = try elf.notes().first(where: { $0.name == Self.xenNoteName && $0.type == Self.phys32EntryNote }) else {
            throw BootError("\(name): ELF kernel has no PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY); build it with CONFIG_PVH or use a bzImage")
        }
        guard note.descriptor.count >= 4 else { throw BootError("\(name): PVH entry note is truncated") }
        let r = ByteReader(bytes: Array(note.descriptor), what: "\(name): PVH note")
        let entry = try r.u32(0)
        var segments: [Segment] = []
        var end: UInt64 = 0
        for ph in elf.programHeaders where ph.type == ELFFile.ProgramHeader.load && ph.memorySize > 0 {
            guard ph.fileSize <= ph.memorySize else { throw BootError("\(name): segment file size exceeds memory size") }
            let (fileEnd, o1) = ph.offset.addingReportingOverflow(ph.fileSize)
            guard !o1, fileEnd <= UInt64(bytes.count) else { throw BootError("\(name): segment extends past the end of the file") }
            guard ph.physicalAddress >= Self.minimumLoadAddress else {
                throw BootError("\(name): segment at 0x\(String(ph.physicalAddress, radix: 16)) is below 1 MiB")
            }
            let (segEnd, o2) = ph.physicalAddress.addingReportingOverflow(ph.memorySize)
            guard !o2, segEnd <= 1 << 32 else { throw BootError("\(name): segment does not fit below 4 GiB") }
            segments.append(Segment(address: ph.physicalAddress, fileOffset: ph.offset, fileSize: ph.fileSize, memorySize: ph.memorySize))
            end = max(end, segEnd)
        }
        guard !segments.isEmpty else { throw BootError("\(name): no loadable segments") }
        guard segments.contains(where: { UInt64(entry) >= $0.address && UInt64(entry) < $0.address + $0.memorySize }) else {
            throw BootError("\(name): PVH entry 0x\(String(entry, radix: 16)) is outside the loaded segments")
        }
        self.elf = elf
        self.entry = entry
        self.segments = segments
        self.end = end
    }
}
