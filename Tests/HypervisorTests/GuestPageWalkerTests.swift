import GuestMemory
import Testing
@testable import Hypervisor

/// Builds 4- or 5-level page tables inside guest memory, allocating tables upward from `root`.
final class PageTableBuilder {
    static let present: UInt64 = 1, writable: UInt64 = 2, user: UInt64 = 4, large: UInt64 = 0x80
    static let noExecute: UInt64 = 1 << 63
    static let all: UInt64 = present | writable | user

    let memory: GuestMemory
    let root: UInt64
    let levels: Int
    private var next: UInt64

    init(memory: GuestMemory, root: UInt64, levels: Int = 4) throws {
        self.memory = memory
        self.root = root
        self.levels = levels
        self.next = root + 0x1000
        try memory.fill(at: GuestAddress(root), count: 0x1000)
    }

    private func allocate() throws -> UInt64 {
        let table = next
        next += 0x1000
        try memory.fill(at: GuestAddress(table), count: 0x1000)
        return table
    }

    /// Maps one page of `pageSize` (4 KiB, 2 MiB or 1 GiB). `tableFlags` apply to new
    /// intermediate entries; `flags` to the leaf.
    func map(_ virtual: UInt64, to physical: UInt64, pageSize: UInt64 = 0x1000, flags: UInt64 = all,
             tableFlags: UInt64 = all) throws {
        let leafLevel = pageSize == 1 << 30 ? 3 : pageSize == 1 << 21 ? 2 : 1
        var table = root
        var level = levels
        while level > leafLevel {
            let entryAddress = GuestAddress(table + ((virtual >> UInt64(12 + 9 * (level - 1))) & 0x1FF) * 8)
            var entry: UInt64 = try memory.load(at: entryAddress)
            if entry & Self.present == 0 {
                entry = try allocate() | tableFlags
                try memory.store(entry, at: entryAddress)
            }
            table = entry & 0x000F_FFFF_FFFF_F000
            level -= 1
        }
        let leafAddress = GuestAddress(table + ((virtual >> UInt64(12 + 9 * (leafLevel - 1))) & 0x1FF) * 8)
        try memory.store(physical | flags | (leafLevel > 1 ? Self.large : 0), at: leafAddress)
    }

    var walker: GuestPageWalker {
        GuestPageWalker(memory: memory, paging: GuestPaging(mode: levels == 5 ? .fiveLevel : .fourLevel, cr3: root))
    }
}

@Suite struct GuestPageWalkerTests {
    let memory = try! GuestMemory(size: 1 << 20)

    @Test func fourKilobytePage() throws {
        let tables = try PageTableBuilder(memory: memory, root: 0x10000)
        try tables.map(0x0000_7F00_1234_5000, to: 0x3000)
        let t = try tables.walker.translate(0x0000_7F00_1234_5123)
        #expect(t == GuestTranslation(physicalAddress: 0x3123, pageSize: 0x1000, isWritable: true, isUser: true,
                                      isNoExecute: false))
    }

    @Test func twoMegabyteAndOneGigabytePages() throws {
        let tables = try PageTableBuilder(memory: memory, root: 0x10000)
        try tables.map(0x4000_0000, to: 0x20_0000, pageSize: 1 << 21)
        try tables.map(0x80_0000_0000, to: 0x4000_0000, pageSize: 1 << 30)
        let two = try tables.walker.translate(0x4001_2345)
        #expect(two.physicalAddress == 0x21_2345 && two.pageSize == 1 << 21)
        let one = try tables.walker.translate(0x80_1234_5678)
        #expect(one.physicalAddress == 0x5234_5678 && one.pageSize == 1 << 30)
    }

    @Test func kernelHalfAddressesWalkSignExtended() throws {
        let tables = try PageTableBuilder(memory: memory, root: 0x10000)
        try tables.map(0xFFFF_FFFF_8000_0000, to: 0x1000)
        #expect(try tables.walker.translate(0xFFFF_FFFF_8000_0FFF).physicalAddress == 0x1FFF)
    }

    @Test func permissionsAccumulateOverLevels() throws {
        let tables = try PageTableBuilder(memory: memory, root: 0x10000)
        // Supervisor-only intermediate tables, read-only no-execute leaf.
        try tables.map(0x1000, to: 0x5000, flags: PageTableBuilder.present | PageTableBuilder.user | PageTableBuilder.noExecute,
                       tableFlags: PageTableBuilder.present | PageTableBuilder.writable)
        let t = try tables.walker.translate(0x1010)
        #expect(t.physicalAddress == 0x5010)
        #expect(!t.isWritable && !t.isUser && t.isNoExecute)
    }

    @Test func notPresentReportsTheLevel() throws {
        let tables = try PageTableBuilder(memory: memory, root: 0x10000)
        #expect(throws: GuestPageWalkError.notPresent(virtualAddress: 0x1000, level: 4)) {
            _ = try tables.walker.translate(0x1000)
        }
        try tables.map(0x1000, to: 0x5000)
        #expect(throws: GuestPageWalkError.notPresent(virtualAddress: 0x2000, level: 1)) {
            _ = try tables.walker.translate(0x2000)
        }
        try tables.map(0x1000, to: 0x5000, flags: PageTableBuilder.writable)  // P clear in the leaf
        #expect(throws: GuestPageWalkError.notPresent(virtualAddress: 0x1000, level: 1)) {
            _ = try tables.walker.translate(0x1000)
        }
    }

    @Test func nonCanonicalIsRefused() throws {
        let tables = try PageTableBuilder(memory: memory, root: 0x10000)
        #expect(throws: GuestPageWalkError.nonCanonical(virtualAddress: 0x0000_8000_0000_0000)) {
            _ = try tables.walker.translate(0x0000_8000_0000_0000)
        }
        // Canonical for 5-level paging (bit 56 sign-extends), and walked there.
        let five = try PageTableBuilder(memory: memory, root: 0x30000, levels: 5)
        try five.map(0x0000_8000_0000_0000, to: 0x7000)
        #expect(try five.walker.translate(0x0000_8000_0000_0042).physicalAddress == 0x7042)
        #expect(throws: GuestPageWalkError.nonCanonical(virtualAddress: 0x0100_0000_0000_0000)) {
            _ = try five.walker.translate(0x0100_0000_0000_0000)
        }
    }

    @Test func tablesOutsideMemoryAreRefused() throws {
        let outside = GuestPageWalker(memory: memory, paging: GuestPaging(mode: .fourLevel, cr3: 0x7FFF_F000))
        #expect(throws: GuestPageWalkError.tableOutOfBounds(virtualAddress: 0, entryAddress: 0x7FFF_F000, level: 4)) {
            _ = try outside.translate(0)
        }
        // A present PML4 entry pointing far outside RAM.
        try memory.fill(at: GuestAddress(0x10000), count: 0x1000)
        try memory.store(UInt64(0x000F_FFFF_FFFF_F000 | 1), at: GuestAddress(0x10000))
        let hostile = GuestPageWalker(memory: memory, paging: GuestPaging(mode: .fourLevel, cr3: 0x10000))
        #expect(throws: GuestPageWalkError.tableOutOfBounds(virtualAddress: 0x10,
                                                            entryAddress: 0x000F_FFFF_FFFF_F000, level: 3)) {
            _ = try hostile.translate(0x10)
        }
    }

    @Test func legacy32BitPaging() throws {
        // PD at 0x1000, PT at 0x2000: 0x0040_3000 -> 0x9000; a 4 MiB page at 0x0080_0000 -> 0x0040_0000.
        try memory.fill(at: GuestAddress(0x1000), count: 0x2000)
        try memory.store(UInt32(0x2000 | 0x7), at: GuestAddress(0x1000 + 1 * 4))
        try memory.store(UInt32(0x9000 | 0x5), at: GuestAddress(0x2000 + 3 * 4))
        try memory.store(UInt32(0x0040_0000 | 0x83), at: GuestAddress(0x1000 + 2 * 4))
        let pse = GuestPageWalker(memory: memory, paging: GuestPaging(mode: .legacy32(pageSizeExtensions: true), cr3: 0x1000))
        let small = try pse.translate(0x0040_3ABC)
        #expect(small == GuestTranslation(physicalAddress: 0x9ABC, pageSize: 4096, isWritable: false, isUser: true,
                                          isNoExecute: false))
        let big = try pse.translate(0x0081_2345)
        #expect(big.physicalAddress == 0x0041_2345 && big.pageSize == 4 << 20 && big.isWritable && !big.isUser)
        #expect(throws: GuestPageWalkError.notPresent(virtualAddress: 0x00C0_0000, level: 2)) {
            _ = try pse.translate(0x00C0_0000)
        }
        // Only the low 32 bits of the linear address take part.
        #expect(try pse.translate(0x1_0040_3ABC).physicalAddress == 0x9ABC)
        // Without CR4.PSE the PS bit is ignored and the PDE points at a "page table" at 4 MiB,
        // outside this guest's 1 MiB of RAM.
        let plain = GuestPageWalker(memory: memory, paging: GuestPaging(mode: .legacy32(pageSizeExtensions: false), cr3: 0x1000))
        #expect(throws: GuestPageWalkError.tableOutOfBounds(virtualAddress: 0x0081_2345, entryAddress: 0x0040_0048,
                                                            level: 1)) {
            _ = try plain.translate(0x0081_2345)
        }
    }

    @Test func paePaging() throws {
        // PDPT at 0x1020 (32-byte aligned), PD at 0x2000, PT at 0x3000.
        try memory.fill(at: GuestAddress(0x1000), count: 0x3000)
        try memory.store(UInt64(0x2000 | 1), at: GuestAddress(0x1020 + 1 * 8))            // 0x4000_0000..
        try memory.store(UInt64(0x3000 | 0x7), at: GuestAddress(0x2000))                   // PD[0]
        try memory.store(UInt64(0x8000 | 0x3) | (1 << 63), at: GuestAddress(0x3000 + 5 * 8)) // PT[5]
        try memory.store(UInt64(0x60_0000 | 0x87), at: GuestAddress(0x2000 + 8))          // 2 MiB at PD[1]
        let walker = GuestPageWalker(memory: memory, paging: GuestPaging(mode: .pae, cr3: 0x1020))
        let t = try walker.translate(0x4000_5010)
        #expect(t == GuestTranslation(physicalAddress: 0x8010, pageSize: 4096, isWritable: true, isUser: false,
                                      isNoExecute: true))
        #expect(try walker.translate(0x4021_0000).physicalAddress == 0x61_0000)
        #expect(throws: GuestPageWalkError.notPresent(virtualAddress: 0x8000_0000, level: 3)) {
            _ = try walker.translate(0x8000_0000)
        }
    }

    @Test func identityPassesThrough() throws {
        let walker = GuestPageWalker(memory: memory, paging: .identity)
        #expect(try walker.translate(0xFEE0_0000).physicalAddress == 0xFEE0_0000)
    }

    @Test func pagingModeFollowsControlRegisters() {
        var s = SpecialRegisters()
        #expect(GuestPaging(s).mode == .identity)
        s.cr0 = 1 << 31 | 1
        s.cr3 = 0x5000
        #expect(GuestPaging(s) == GuestPaging(mode: .legacy32(pageSizeExtensions: false), cr3: 0x5000))
        s.cr4 = 1 << 4
        #expect(GuestPaging(s).mode == .legacy32(pageSizeExtensions: true))
        s.cr4 = 1 << 5
        #expect(GuestPaging(s).mode == .pae)
        s.efer = 1 << 10 | 1 << 8
        #expect(GuestPaging(s).mode == .fourLevel)
        s.cr4 |= 1 << 12
        #expect(GuestPaging(s).mode == .fiveLevel)
    }

    @Test func fetchCrossesPagesTranslatedSeparately() throws {
        let tables = try PageTableBuilder(memory: memory, root: 0x10000)
        // Virtually adjacent pages mapped to physically distant, reversed frames.
        try tables.map(0x40_0000, to: 0x5000)
        try tables.map(0x40_1000, to: 0x3000)
        // 48 c7 84 88 00 01 00 00 78 56 34 12: movq $0x12345678,0x100(%rax,%rcx,4), split 6 + 6.
        let code: [UInt8] = [0x48, 0xC7, 0x84, 0x88, 0x00, 0x01, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12]
        try memory.write(Array(code[0..<6]), at: GuestAddress(0x5FFA))
        try memory.write(Array(code[6...]) + [0x90, 0x90, 0x90], at: GuestAddress(0x3000))
        let bytes = try tables.walker.fetchInstructionBytes(at: 0x40_0FFA)
        #expect(bytes.count == 15)
        #expect(Array(bytes.prefix(12)) == code)
        let instruction = try X86InstructionDecoder.decode(bytes)
        #expect(instruction.length == 12 && instruction.immediate == 0x1234_5678)
    }

    @Test func fetchStopsAtAnUnmappedSecondPage() throws {
        let tables = try PageTableBuilder(memory: memory, root: 0x10000)
        try tables.map(0x40_0000, to: 0x5000)
        try memory.write([0x89, 0x03, 0x48, 0xC7], at: GuestAddress(0x5FFC))
        let bytes = try tables.walker.fetchInstructionBytes(at: 0x40_0FFC)
        #expect(Array(bytes) == [0x89, 0x03, 0x48, 0xC7])
        #expect(try X86InstructionDecoder.decode(bytes).length == 2)  // fits: fine
        #expect(throws: X86DecodeError.truncated(available: 2)) {
            _ = try X86InstructionDecoder.decode(try tables.walker.fetchInstructionBytes(at: 0x40_0FFE))
        }
        #expect(throws: GuestPageWalkError.notPresent(virtualAddress: 0x40_1000, level: 1)) {
            _ = try tables.walker.fetchInstructionBytes(at: 0x40_1000)
        }
    }

    @Test func fetchStopsAtTheEndOfMemory() throws {
        let walker = GuestPageWalker(memory: memory, paging: .identity)
        try memory.write([0xAA, 0x0B], at: GuestAddress((1 << 20) - 2))
        #expect(Array(try walker.fetchInstructionBytes(at: (1 << 20) - 2)) == [0xAA, 0x0B])
        #expect(throws: GuestPageWalkError.memory(.outOfBounds(address: 1 << 20, length: 1))) {
            _ = try walker.fetchInstructionBytes(at: 1 << 20)
        }
        #expect(try walker.fetchInstructionBytes(at: 0, maxCount: 3).count == 3)
    }
}
