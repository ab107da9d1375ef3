/// A Solo5 `hvt` unikernel: an x86-64 ELF executable with the Solo5 ABI1 note (target hvt,
/// version 1) and an MFT1 manifest note. Validation happens here, before any VM exists.
public struct HvtImage: Sendable {
    /// The ABI target and version this tender implements (Solo5 elf_abi.h / hvt_abi.h).
    public static let abiTarget: UInt32 = 1
    public static let abiVersion: UInt32 = 1
    static let noteName = "Solo5"
    static let abiNoteType: UInt32 = 0x3149_4241 // "ABI1"
    static let manifestNoteType: UInt32 = 0x3154_464D // "MFT1"
    /// Lowest guest address a segment may load at (HVT_GUEST_MIN_BASE).
    public static let minimumLoadAddress: UInt64 = 0x10_0000

    /// A loadable segment after validation.
    public typealias Segment = ELFFile.LoadSegment

    public let elf: ELFFile
    public let segments: [Segment]
    public let entry: UInt64
    /// First byte past the image, rounded up to a 4 KiB page.
    public let kernelEnd: UInt64
    public let manifest: HvtManifest

    /// Whether `bytes` is an ELF file carrying a Solo5 ABI note (of any target): what tells a
    /// unikernel from a PVH kernel, which is ELF too.
    public static func isSolo5(_ bytes: [UInt8]) -> Bool {
        guard let elf = try? ELFFile(bytes: bytes, name: ""), let notes = try? elf.notes() else { return false }
        return notes.contains { $0.name == noteName && $0.type == abiNoteType }
    }

    public init(bytes: [UInt8], name: String) throws(BootError) {
        let elf = try ELFFile(bytes: bytes, name: name)
        guard elf.type == ELFFile.typeExecutable else { throw BootError("\(name): not an executable ELF file") }
        guard elf.machine == ELFFile.machineX86_64 else { throw BootError("\(name): not an x86-64 ELF file") }

        let notes = try elf.notes()
        guard let abi = notes.first(where: { $0.name == Self.noteName && $0.type == Self.abiNoteType }) else {
            throw BootError("\(name): not a Solo5 unikernel (no Solo5 ABI note)")
        }
        guard abi.descriptor.count >= 8 else { throw BootError("\(name): Solo5 ABI note is truncated") }
        let abiReader = ByteReader(bytes: Array(abi.descriptor), what: "\(name): Solo5 ABI note")
        let target = try abiReader.u32(0), version = try abiReader.u32(4)
        guard target == Self.abiTarget else {
            let names = [1: "hvt", 2: "spt", 3: "virtio", 4: "muen", 5: "genode", 6: "xen"]
            throw BootError("\(name): built for Solo5 target '\(names[Int(target)] ?? "\(target)")', not hvt")
        }
        guard version == Self.abiVersion else {
            throw BootError("\(name): Solo5 hvt ABI version \(version), this tender supports version \(Self.abiVersion)")
        }
        guard let mftNote = notes.first(where: { $0.name == Self.noteName && $0.type == Self.manifestNoteType }) else {
            throw BootError("\(name): no Solo5 manifest note")
        }
        // struct mft is 8-aligned after the 20-byte note header, so the descriptor starts with 4 pad bytes.
        guard mftNote.descriptor.count >= 4 + HvtManifest.headerSize else {
            throw BootError("\(name): Solo5 manifest note is truncated")
        }
        let mftBytes = mftNote.descriptor.dropFirst(4)
        let header = ByteReader(bytes: Array(mftBytes.prefix(8)), what: "\(name): Solo5 manifest")
        let declared = try header.u32(4)
        guard declared <= HvtManifest.maxEntries else {
            throw BootError("\(name): Solo5 manifest has \(declared) entries, at most \(HvtManifest.maxEntries) are allowed")
        }
        do { manifest = try HvtManifest(mft: mftBytes) } catch { throw BootError("\(name): \(error.message)") }

        let (segments, end) = try elf.loadSegments(name: name, minimumAddress: Self.minimumLoadAddress, maximumEnd: 1 << 46)
        guard segments.contains(where: { $0.executable && elf.entry >= $0.guestAddress && elf.entry < $0.guestAddress + $0.memorySize }) else {
            throw BootError("\(name): entry point 0x\(String(elf.entry, radix: 16)) is not in an executable segment")
        }
        self.elf = elf
        self.segments = segments
        self.entry = elf.entry
        self.kernelEnd = (end + 0xFFF) & ~0xFFF
    }
}
