import VMSpec
/// A parsed ELF64 little-endian executable: header, program headers and notes. Parsing only; a
/// loader decides what to map. Every field is validated against the file size.
public struct ELFFile: Sendable {
    /// One program header (Elf64_Phdr).
    public struct ProgramHeader: Equatable, Sendable {
        public var type: UInt32, flags: UInt32
        public var offset: UInt64, virtualAddress: UInt64, physicalAddress: UInt64
        public var fileSize: UInt64, memorySize: UInt64, alignment: UInt64

        public static let load: UInt32 = 1
        public static let note: UInt32 = 4
        public static let executable: UInt32 = 1, writable: UInt32 = 2, readable: UInt32 = 4
        public var isExecutable: Bool { flags & Self.executable != 0 }
        public var isWritable: Bool { flags & Self.writable != 0 }
    }

    /// One ELF note: its name, type and descriptor bytes (file offset and size of the descriptor).
    public struct Note: Equatable, Sendable {
        public var name: String
        public var type: UInt32
        public var descriptor: ArraySlice<UInt8>
    }

    public static let machineX86_64: UInt16 = 62
    public static let typeExecutable: UInt16 = 2

    public let bytes: [UInt8]
    public let type: UInt16
    public let machine: UInt16
    public let entry: UInt64
    public let programHeaders: [ProgramHeader]
    /// Section headers of type SHT_NOTE, as (offset, size), for images whose notes are not in a segment.
    let noteSections: [(offset: UInt64, size: UInt64)]

    /// Parses `bytes`; `name` appears in error messages.
    public init(bytes: [UInt8], name: String = "image") throws(BootError) {
        let r = ByteReader(bytes: bytes, what: name)
        guard bytes.count >= 64, bytes[0] == 0x7F, bytes[1] == 0x45, bytes[2] == 0x4C, bytes[3] == 0x46 else {
            throw BootError("\(name): not an ELF file")
        }
        guard bytes[4] == 2 else { throw BootError("\(name): not a 64-bit ELF file") }
        guard bytes[5] == 1 else { throw BootError("\(name): not a little-endian ELF file") }
        self.bytes = bytes
        type = try r.u16(16)
        machine = try r.u16(18)
        entry = try r.u64(24)
        let phoff = try r.u64(32), shoff = try r.u64(40)
        let phentsize = try r.u16(54), phnum = try r.u16(56)
        let shentsize = try r.u16(58), shnum = try r.u16(60)

        var headers: [ProgramHeader] = []
        if phnum > 0 {
            guard phentsize == 56 else { throw BootError("\(name): bad program header size \(phentsize)") }
            for i in 0..<UInt64(phnum) {
                let base = phoff &+ i &* 56
                guard base >= phoff, base <= UInt64.max - 56 else { throw BootError("\(name): program headers overflow") }
                headers.append(ProgramHeader(
                    type: try r.u32(base), flags: try r.u32(base + 4), offset: try r.u64(base + 8),
                    virtualAddress: try r.u64(base + 16), physicalAddress: try r.u64(base + 24),
                    fileSize: try r.u64(base + 32), memorySize: try r.u64(base + 40), alignment: try r.u64(base + 48)))
            }
        }
        programHeaders = headers

        var sections: [(UInt64, UInt64)] = []
        if shnum > 0 && shoff != 0 {
            guard shentsize == 64 else { throw BootError("\(name): bad section header size \(shentsize)") }
            for i in 0..<UInt64(shnum) {
                let base = shoff &+ i &* 64
                guard base >= shoff, base <= UInt64.max - 64 else { throw BootError("\(name): section headers overflow") }
                if try r.u32(base + 4) == 7 /* SHT_NOTE */ {
                    sections.append((try r.u64(base + 24), try r.u64(base + 32)))
                }
            }
        }
        noteSections = sections
    }

    /// All notes, from PT_NOTE segments, or from SHT_NOTE sections when there is no PT_NOTE.
    public func notes() throws(BootError) -> [Note] {
        var areas = programHeaders.filter { $0.type == ProgramHeader.note }.map { ($0.offset, $0.fileSize) }
        if areas.isEmpty { areas = noteSections }
        var result: [Note] = []
        let r = ByteReader(bytes: bytes, what: "ELF note")
        for (offset, size) in areas { _ = try r.range(offset, size) }
        // Linkers write disjoint note areas. Overlapping ones would be parsed again for each
        // header naming them: 65,535 headers over one large area of empty notes cost headers ×
        // size in time and in notes kept, far beyond the file (a few MiB exhaust the host's memory).
        let nonEmpty = areas.filter { $0.1 > 0 }.sorted { $0.0 < $1.0 }
        for (a, b) in zip(nonEmpty, nonEmpty.dropFirst()) where b.0 < a.0 + a.1 {
            throw BootError("ELF note areas overlap at offset \(b.0)")
        }
        for (offset, size) in areas {
            var cursor = offset
            let end = offset + size
            while end - cursor >= 12 {
                let namesz = UInt64(try r.u32(cursor)), descsz = UInt64(try r.u32(cursor + 4))
                let type = try r.u32(cursor + 8)
                let nameStart = cursor + 12
                let descStart = nameStart + Self.align4(namesz)
                let next = descStart + Self.align4(descsz)
                guard namesz < 256, descsz <= end - min(descStart, end), descStart <= end, next <= end + 3 else {
                    throw BootError("ELF note at offset \(cursor) overruns its section")
                }
                var nameBytes = Array(try r.slice(nameStart, namesz))
                if nameBytes.last == 0 { nameBytes.removeLast() }
                result.append(Note(name: String(decoding: nameBytes, as: UTF8.self), type: type,
                                   descriptor: try r.slice(descStart, descsz)))
                cursor = min(next, end)
            }
        }
        return result
    }

    static func align4(_ v: UInt64) -> UInt64 { (v + 3) & ~3 }

    /// A PT_LOAD segment checked against the file and the loader's address limits.
    public struct LoadSegment: Equatable, Sendable {
        public var guestAddress: UInt64, fileOffset: UInt64, fileSize: UInt64, memorySize: UInt64
        public var writable: Bool, executable: Bool
        public var end: UInt64 { guestAddress + memorySize }

        /// The segment's bytes in `file`, to copy to `guestAddress` (the rest up to memorySize is zero).
        public func contents(in file: [UInt8]) -> ArraySlice<UInt8> {
            file[Int(fileOffset)..<Int(fileOffset + fileSize)]
        }
    }

    /// The non-empty PT_LOAD segments, each inside the file, at or above `minimumAddress`, ending
    /// at or below `maximumEnd`, power-of-two aligned and not overlapping another; and the highest
    /// end. Addresses are the physical ones (p_paddr), as both hvt and PVH load by them.
    public func loadSegments(name: String, minimumAddress: UInt64, maximumEnd: UInt64) throws(BootError) -> (segments: [LoadSegment], end: UInt64) {
        var segments: [LoadSegment] = []
        var end: UInt64 = 0
        for ph in programHeaders where ph.type == ProgramHeader.load && ph.memorySize > 0 {
            guard ph.fileSize <= ph.memorySize else { throw BootError("\(name): segment file size exceeds memory size") }
            let (fileEnd, o1) = ph.offset.addingReportingOverflow(ph.fileSize)
            guard !o1, fileEnd <= UInt64(bytes.count) else { throw BootError("\(name): segment extends past the end of the file") }
            guard ph.physicalAddress >= minimumAddress else {
                let limit = minimumAddress % (1 << 20) == 0 ? "\(minimumAddress >> 20) MiB" : minimumAddress.hexString
                throw BootError("\(name): segment at \(ph.physicalAddress.hexString) is below \(limit)")
            }
            let (segEnd, o2) = ph.physicalAddress.addingReportingOverflow(ph.memorySize)
            guard !o2, segEnd <= maximumEnd else { throw BootError("\(name): segment address overflows (above \(maximumEnd.hexString))") }
            guard ph.alignment == 0 || ph.alignment & (ph.alignment - 1) == 0 else {
                throw BootError("\(name): segment alignment \(ph.alignment) is not a power of two")
            }
            for other in segments where ph.physicalAddress < other.end && other.guestAddress < segEnd {
                throw BootError("\(name): loadable segments overlap at \((max(ph.physicalAddress, other.guestAddress)).hexString)")
            }
            segments.append(LoadSegment(guestAddress: ph.physicalAddress, fileOffset: ph.offset, fileSize: ph.fileSize,
                                        memorySize: ph.memorySize, writable: ph.isWritable, executable: ph.isExecutable))
            end = max(end, segEnd)
        }
        guard !segments.isEmpty else { throw BootError("\(name): no loadable segments") }
        return (segments, end)
    }
}
