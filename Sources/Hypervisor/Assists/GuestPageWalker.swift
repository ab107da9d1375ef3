import VMSpec
import GuestMemory

// A software walk of the guest's own page tables, for assists that must find the guest-physical
// address behind a guest-virtual one (instruction fetch at RIP, the RAM side of MOVS). Every
// table read goes through GuestMemory's checked accessors, so a hostile CR3 or entry can only
// produce an error. Accessed/dirty bits are not set and reserved bits are not checked: the walk
// serves emulation of an access the hardware already began, not a replacement for the MMU.

/// Which paging structure translates linear addresses, and its root (CR3).
public struct GuestPaging: Equatable, Sendable {
    /// The page-table format.
    public enum Mode: Equatable, Sendable {
        /// Paging off (CR0.PG = 0), or the caller asserts linear == physical.
        case identity
        /// 32-bit paging: two levels of 4-byte entries; 4 MiB pages when CR4.PSE is set.
        case legacy32(pageSizeExtensions: Bool)
        /// PAE paging: a 4-entry PDPT, then two levels of 8-byte entries.
        case pae
        /// 4-level paging (IA-32e, CR4.LA57 = 0).
        case fourLevel
        /// 5-level paging (CR4.LA57 = 1).
        case fiveLevel
    }

    public var mode: Mode
    /// CR3 as the guest set it; the walker takes the table address bits it needs.
    public var cr3: UInt64

    public init(mode: Mode, cr3: UInt64 = 0) {
        self.mode = mode
        self.cr3 = cr3
    }

    /// Paging off.
    public static let identity = GuestPaging(mode: .identity)

    /// The mode the guest's control registers select (CR0.PG, CR4.PAE/PSE/LA57, EFER.LMA).
    public init(_ registers: SpecialRegisters) {
        let paging = registers.cr0 & (1 << 31) != 0
        let pae = registers.cr4 & (1 << 5) != 0
        let pse = registers.cr4 & (1 << 4) != 0
        let la57 = registers.cr4 & (1 << 12) != 0
        let longModeActive = registers.efer & (1 << 10) != 0
        let mode: Mode = if !paging {
            .identity
        } else if !pae {
            .legacy32(pageSizeExtensions: pse)
        } else if longModeActive {
            la57 ? .fiveLevel : .fourLevel
        } else {
            .pae
        }
        self.init(mode: mode, cr3: registers.cr3)
    }
}

/// The result of translating one linear address.
public struct GuestTranslation: Equatable, Sendable {
    /// Guest-physical address of the byte translated.
    public var physicalAddress: UInt64
    /// Size of the page that maps it: 4 KiB, 2 MiB, 4 MiB or 1 GiB (4 KiB for identity).
    public var pageSize: UInt64
    /// R/W set at every level.
    public var isWritable: Bool
    /// U/S set at every level.
    public var isUser: Bool
    /// XD set at some level (always false for 32-bit paging, which has no XD bit).
    public var isNoExecute: Bool

    public init(physicalAddress: UInt64, pageSize: UInt64, isWritable: Bool, isUser: Bool, isNoExecute: Bool) {
        self.physicalAddress = physicalAddress; self.pageSize = pageSize
        self.isWritable = isWritable; self.isUser = isUser; self.isNoExecute = isNoExecute
    }
}

/// Why a linear address could not be translated or read.
public enum GuestPageWalkError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The entry at `level` (1 = PT ... 5 = PML5; PDPTE is 3) has P = 0.
    case notPresent(virtualAddress: UInt64, level: Int)
    /// The address is not canonical for 4- or 5-level paging.
    case nonCanonical(virtualAddress: UInt64)
    /// The page-table entry at `entryAddress` lies outside guest RAM.
    case tableOutOfBounds(virtualAddress: UInt64, entryAddress: UInt64, level: Int)
    /// The translated physical address lies outside guest RAM.
    case memory(GuestMemoryError)

    public var description: String {
        switch self {
        case let .notPresent(va, level): "page not present at level \(level) for \(va.hexString)"
        case .nonCanonical(let va): "non-canonical address \(va.hexString)"
        case let .tableOutOfBounds(va, entry, level):
            "page-table entry \(entry.hexString) (level \(level)) for \(va.hexString) is outside guest memory"
        case .memory(let error): error.description
        }
    }

}

/// Walks guest page tables held in `memory`.
public struct GuestPageWalker: Sendable {
    public let memory: GuestMemory
    public var paging: GuestPaging

    /// Bits 12-51 of an entry: the next table or the page frame (MAXPHYADDR 52).
    static let frameMask: UInt64 = 0x000F_FFFF_FFFF_F000
    static let present: UInt64 = 1 << 0
    static let writable: UInt64 = 1 << 1
    static let user: UInt64 = 1 << 2
    static let largePage: UInt64 = 1 << 7
    static let noExecute: UInt64 = 1 << 63

    public init(memory: GuestMemory, paging: GuestPaging) {
        self.memory = memory
        self.paging = paging
    }

    /// Translates a linear address, accumulating the permission bits of every level.
    public func translate(_ address: UInt64) throws(GuestPageWalkError) -> GuestTranslation {
        switch paging.mode {
        case .identity:
            return GuestTranslation(physicalAddress: address, pageSize: 4096, isWritable: true, isUser: true,
                                    isNoExecute: false)
        case .legacy32(let pse):
            return try walk32(address & 0xFFFF_FFFF, pse: pse)
        case .pae:
            let linear = address & 0xFFFF_FFFF
            let entryAddress = (paging.cr3 & 0xFFFF_FFE0) &+ ((linear >> 30) & 3) * 8
            let pdpte = try entry64(entryAddress, for: linear, level: 3)
            guard pdpte & Self.present != 0 else { throw .notPresent(virtualAddress: linear, level: 3) }
            // PDPTEs carry no R/W, U/S or XD bits in PAE mode: permissions come from below.
            return try walk64(linear, table: pdpte & Self.frameMask, topLevel: 2)
        case .fourLevel:
            try checkCanonical(address, bits: 48)
            return try walk64(address, table: paging.cr3 & Self.frameMask, topLevel: 4)
        case .fiveLevel:
            try checkCanonical(address, bits: 57)
            return try walk64(address, table: paging.cr3 & Self.frameMask, topLevel: 5)
        }
    }

    /// Fetches up to `maxCount` (at most 15) bytes at linear `address`, translating each 4 KiB
    /// page separately so an instruction may straddle two pages mapped anywhere. Stops early,
    /// returning what it has, when a later byte is unmapped or outside RAM (the decoder then
    /// reports truncation if it needed more); throws if not even the first byte can be read.
    /// Execute permission is not checked.
    public func fetchInstructionBytes(at address: UInt64,
                                      maxCount: Int = X86InstructionBytes.capacity) throws(GuestPageWalkError) -> X86InstructionBytes {
        var bytes = X86InstructionBytes()
        let wanted = min(max(maxCount, 0), X86InstructionBytes.capacity)
        var linear = address
        while bytes.count < wanted {
            let translation: GuestTranslation
            do {
                translation = try translate(linear)
            } catch {
                if bytes.isEmpty { throw error }
                break
            }
            let inPage = Int(4096 - (linear & 0xFFF))
            let chunk = min(wanted - bytes.count, inPage)
            for i in 0..<chunk {
                let physical = translation.physicalAddress &+ UInt64(i)
                do {
                    bytes.append(try memory.load(UInt8.self, at: GuestAddress(physical)))
                } catch {
                    if bytes.isEmpty { throw .memory(error) }
                    return bytes
                }
            }
            linear = linear &+ UInt64(chunk)
        }
        return bytes
    }

    private func checkCanonical(_ address: UInt64, bits: Int) throws(GuestPageWalkError) {
        let unused = UInt64(64 - bits)
        let extended = UInt64(bitPattern: Int64(bitPattern: address << unused) >> unused)
        guard extended == address else { throw .nonCanonical(virtualAddress: address) }
    }

    private func entry64(_ entryAddress: UInt64, for address: UInt64, level: Int) throws(GuestPageWalkError) -> UInt64 {
        do {
            return try memory.load(UInt64.self, at: GuestAddress(entryAddress))
        } catch {
            throw .tableOutOfBounds(virtualAddress: address, entryAddress: entryAddress, level: level)
        }
    }

    private func entry32(_ entryAddress: UInt64, for address: UInt64, level: Int) throws(GuestPageWalkError) -> UInt64 {
        do {
            return UInt64(try memory.load(UInt32.self, at: GuestAddress(entryAddress)))
        } catch {
            throw .tableOutOfBounds(virtualAddress: address, entryAddress: entryAddress, level: level)
        }
    }

    /// Walks 8-byte-entry tables (9 index bits per level) from `topLevel` down to the page.
    private func walk64(_ address: UInt64, table: UInt64, topLevel: Int) throws(GuestPageWalkError) -> GuestTranslation {
        var table = table
        var level = topLevel
        var writable = true, user = true, noExecute = false
        while true {
            let shift = UInt64(12 + 9 * (level - 1))
            let entryAddress = table &+ ((address >> shift) & 0x1FF) * 8
            let entry = try entry64(entryAddress, for: address, level: level)
            guard entry & Self.present != 0 else { throw .notPresent(virtualAddress: address, level: level) }
            writable = writable && entry & Self.writable != 0
            user = user && entry & Self.user != 0
            noExecute = noExecute || entry & Self.noExecute != 0
            // PS maps a 1 GiB page at level 3 and a 2 MiB page at level 2.
            if level == 1 || (level <= 3 && entry & Self.largePage != 0) {
                let pageSize = UInt64(1) << shift
                let frame = entry & Self.frameMask & ~(pageSize - 1)
                return GuestTranslation(physicalAddress: frame | (address & (pageSize - 1)), pageSize: pageSize,
                                        isWritable: writable, isUser: user, isNoExecute: noExecute)
            }
            table = entry & Self.frameMask
            level -= 1
        }
    }

    /// 32-bit paging: a page directory and page tables of 1024 4-byte entries.
    private func walk32(_ address: UInt64, pse: Bool) throws(GuestPageWalkError) -> GuestTranslation {
        let pdeAddress = (paging.cr3 & 0xFFFF_F000) &+ ((address >> 22) & 0x3FF) * 4
        let pde = try entry32(pdeAddress, for: address, level: 2)
        guard pde & Self.present != 0 else { throw .notPresent(virtualAddress: address, level: 2) }
        if pse && pde & Self.largePage != 0 {
            // A 4 MiB page: bits 31-22 of the frame, plus PSE-36 bits 39-32 from PDE bits 20-13.
            let frame = (pde & 0xFFC0_0000) | (((pde >> 13) & 0xFF) << 32)
            return GuestTranslation(physicalAddress: frame | (address & 0x3F_FFFF), pageSize: 4 << 20,
                                    isWritable: pde & Self.writable != 0, isUser: pde & Self.user != 0,
                                    isNoExecute: false)
        }
        let pteAddress = (pde & 0xFFFF_F000) &+ ((address >> 12) & 0x3FF) * 4
        let pte = try entry32(pteAddress, for: address, level: 1)
        guard pte & Self.present != 0 else { throw .notPresent(virtualAddress: address, level: 1) }
        return GuestTranslation(physicalAddress: (pte & 0xFFFF_F000) | (address & 0xFFF), pageSize: 4096,
                                isWritable: pde & pte & Self.writable != 0,
                                isUser: pde & pte & Self.user != 0, isNoExecute: false)
    }
}
