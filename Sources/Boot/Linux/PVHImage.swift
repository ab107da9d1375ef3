import VMSpec
/// An ELF kernel with a PVH entry point (Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY): an uncompressed
/// Linux vmlinux built with CONFIG_PVH, or our own freestanding test guests. The entry runs in
/// 32-bit protected mode, paging off, with EBX pointing at a `struct hvm_start_info`.
public struct PVHImage: Sendable {
    /// One loadable segment, validated against the file.
    public typealias Segment = ELFFile.LoadSegment

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
        let (segments, end) = try elf.loadSegments(name: name, minimumAddress: Self.minimumLoadAddress, maximumEnd: 1 << 32)
        guard segments.contains(where: { UInt64(entry) >= $0.guestAddress && UInt64(entry) < $0.end }) else {
            throw BootError("\(name): PVH entry \(entry.hexString) is outside the loaded segments")
        }
        self.elf = elf
        self.entry = entry
        self.segments = segments
        self.end = end
    }
}
