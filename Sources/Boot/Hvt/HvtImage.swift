import VMSpec
/// The hvt ABI versions a unikernel can be built for. The image's `.note.solo5.abi` names one;
/// the tender speaks the one the image asks for (solo5-hvt speaks only its own).
public enum HvtABI: UInt32, Sendable, CaseIterable, Comparable {
    /// Solo5 0.7 and older (old MirageOS builds): a 40-byte boot info.
    case v1 = 1
    /// Solo5 0.8.0 to v0.12.1, today's MirageOS: TLS-aware images, and (since v0.11) a boot info
    /// that negotiates ring-based network I/O (`host_features`, `guest_features`, `net_ring`).
    case v2 = 2

    public static func < (a: HvtABI, b: HvtABI) -> Bool { a.rawValue < b.rawValue }

    /// "1 and 2", for messages and `--version`.
    public static var supportedText: String { allCases.map { String($0.rawValue) }.joined(separator: " and ") }
}

/// A Solo5 `hvt` unikernel: an x86-64 ELF executable with the Solo5 ABI note (target hvt,
/// version 1 or 2) and an MFT1 manifest note. Validation happens here, before any VM exists.
/// Refusals start with solo5-hvt v0.12.1's own words (scripts may match them), then our detail.
public struct HvtImage: Sendable {
    /// The ABI target this tender implements (Solo5 elf_abi.h: hvt is 1).
    public static let abiTarget: UInt32 = 1
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
    /// The ABI version the image was built for.
    public let abi: HvtABI

    /// Whether `bytes` is an ELF file carrying a Solo5 ABI note (of any target): what tells a
    /// unikernel from a PVH kernel, which is ELF too.
    public static func isSolo5(_ bytes: [UInt8]) -> Bool {
        guard let elf = try? ELFFile(bytes: bytes, name: ""), let notes = try? elf.notes() else { return false }
        return notes.contains { $0.name == noteName && $0.type == abiNoteType }
    }

    public init(bytes: [UInt8], name: String) throws(BootError) {
        let elf: ELFFile
        do { elf = try ELFFile(bytes: bytes, name: name) } catch { throw Self.unsupported(name, error) }
        guard elf.type == ELFFile.typeExecutable else { throw Self.unsupported(name, "not an executable ELF file") }
        guard elf.machine == ELFFile.machineX86_64 else { throw Self.unsupported(name, "not an x86-64 ELF file") }

        let notes: [ELFFile.Note]
        do { notes = try elf.notes() } catch { throw Self.unsupported(name, error) }
        let abiNotes = notes.filter { $0.name == Self.noteName && $0.type == Self.abiNoteType }
        guard let abiNote = abiNotes.first else {
            throw BootError("\(name): No Solo5 ABI information found in executable (not a Solo5 unikernel)")
        }
        guard abiNotes.count == 1 else { throw BootError("\(name): Solo5 ABI note appears \(abiNotes.count) times") }
        guard abiNote.descriptor.count >= 8 else {
            throw BootError("\(name): No Solo5 ABI information found in executable (the ABI note is truncated)")
        }
        let abiReader = ByteReader(bytes: Array(abiNote.descriptor), what: "\(name): Solo5 ABI note")
        let target = try abiReader.u32(0), version = try abiReader.u32(4)
        guard target == Self.abiTarget else {
            let names = [1: "hvt", 2: "spt", 3: "virtio", 4: "muen", 5: "genode", 6: "xen"]
            throw BootError("\(name): Executable is not for the solo5-hvt target (built for '\(names[Int(target)] ?? "\(target)")')")
        }
        guard let abi = HvtABI(rawValue: version) else {
            throw BootError("\(name): Executable requests unsupported ABI version \(version) (swiftlet hvt runs hvt ABI \(HvtABI.supportedText))")
        }
        let mftNotes = notes.filter { $0.name == Self.noteName && $0.type == Self.manifestNoteType }
        guard let mftNote = mftNotes.first else {
            throw BootError("\(name): No Solo5 manifest found in executable")
        }
        guard mftNotes.count == 1 else { throw BootError("\(name): Solo5 manifest is invalid (it appears \(mftNotes.count) times)") }
        // struct mft is 8-aligned after the 20-byte note header, so the descriptor starts with 4 pad bytes.
        guard mftNote.descriptor.count >= 4 + HvtManifest.headerSize else {
            throw BootError("\(name): Solo5 manifest is invalid (the note is truncated)")
        }
        let mftBytes = mftNote.descriptor.dropFirst(4)
        let header = ByteReader(bytes: Array(mftBytes.prefix(8)), what: "\(name): Solo5 manifest")
        let declared = try header.u32(4)
        guard declared <= HvtManifest.maxEntries else {
            throw BootError("\(name): Solo5 manifest is invalid (\(declared) entries, at most \(HvtManifest.maxEntries) are allowed)")
        }
        do { manifest = try HvtManifest(mft: mftBytes) } catch { throw BootError("\(name): Solo5 manifest is invalid (\(error.message))") }

        let segments: [Segment], end: UInt64
        do {
            (segments, end) = try elf.loadSegments(name: name, minimumAddress: Self.minimumLoadAddress, maximumEnd: 1 << 46)
        } catch { throw Self.invalid(name, error) }
        if let both = segments.first(where: { $0.writable && $0.executable }) {
            throw Self.invalid(name, "segment at \(both.guestAddress.hexString) requests WRITE and EXEC permissions")
        }
        guard segments.contains(where: { $0.executable && elf.entry >= $0.guestAddress && elf.entry < $0.guestAddress + $0.memorySize }) else {
            throw Self.invalid(name, "entry point \(elf.entry.hexString) is not in an executable segment")
        }
        self.abi = abi
        self.elf = elf
        self.segments = segments
        self.entry = elf.entry
        self.kernelEnd = (end + 0xFFF) & ~0xFFF
    }

    /// solo5-hvt's loader refusal ("invalid or unsupported executable"), with our reason after it.
    static func unsupported(_ name: String, _ reason: String) -> BootError {
        BootError("\(name): invalid or unsupported executable (\(reason))")
    }

    /// The same for an ELF parser error, whose message already starts with the file name.
    static func unsupported(_ name: String, _ error: BootError) -> BootError {
        unsupported(name, reason(name, error))
    }

    /// solo5-hvt's refusal of a well-formed ELF whose segments it will not load.
    static func invalid(_ name: String, _ reason: String) -> BootError {
        BootError("\(name): invalid executable: \(reason)")
    }

    static func invalid(_ name: String, _ error: BootError) -> BootError { invalid(name, reason(name, error)) }

    private static func reason(_ name: String, _ error: BootError) -> String {
        let prefix = "\(name): "
        return error.message.hasPrefix(prefix) ? String(error.message.dropFirst(prefix.count)) : error.message
    }
}
