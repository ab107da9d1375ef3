import Hypervisor
import Testing

/// The mapping checks the C ABI relies on, without KVM: alignment, overlap, slots, removal.
struct MemoryMappingsTests {
    let page: UInt64 = 4096

    @Test func mapsPageAlignedRangesIntoTheLowestFreeSlot() throws {
        var table = MemoryMappings(slotLimit: 4)
        let a = try table.proposed(guestAddress: 0, size: 2 * page, hostAddress: 0x10000, readOnly: false)
        table.insert(a)
        let b = try table.proposed(guestAddress: 4 * page, size: page, hostAddress: 0x20000, readOnly: true)
        table.insert(b)
        #expect(a.slot == 0 && b.slot == 1)
        table.remove(a)
        let c = try table.proposed(guestAddress: 0, size: page, hostAddress: 0x30000, readOnly: false)
        #expect(c.slot == 0, "a freed slot is used again")
        #expect(table.mappings.map(\.guestAddress) == [4 * page])
    }

    @Test func refusesMisalignedEmptyNullAndWrappingMappings() {
        let table = MemoryMappings(slotLimit: 4)
        func code(_ gpa: UInt64, _ size: UInt64, _ host: UInt) -> HypervisorError.Code? {
            do { _ = try table.proposed(guestAddress: gpa, size: size, hostAddress: host, readOnly: false); return nil } catch { return error.code }
        }
        #expect(code(1, page, 0x1000) == .misaligned)
        #expect(code(0, page + 1, 0x1000) == .misaligned)
        #expect(code(0, page, 0x1001) == .misaligned)
        #expect(code(0, 0, 0x1000) == .invalidArgument)
        #expect(code(0, page, 0) == .invalidArgument)
        #expect(code(UInt64.max - page + 1, 2 * page, 0x1000) == .invalidArgument)
    }

    @Test func refusesOverlapsAndTheSlotPastTheLimit() throws {
        var table = MemoryMappings(slotLimit: 2)
        table.insert(try table.proposed(guestAddress: 2 * page, size: 2 * page, hostAddress: 0x1000, readOnly: false))
        for (gpa, size) in [(page, 2 * page), (3 * page, page), (0, 8 * page), (2 * page, 2 * page)] {
            #expect(throws: HypervisorError.self) { _ = try table.proposed(guestAddress: gpa, size: size, hostAddress: 0x1000, readOnly: false) }
        }
        table.insert(try table.proposed(guestAddress: 4 * page, size: page, hostAddress: 0x1000, readOnly: false))
        do {
            _ = try table.proposed(guestAddress: 8 * page, size: page, hostAddress: 0x1000, readOnly: false)
            Issue.record("a third mapping with two slots")
        } catch { #expect(error.code == .limit) }
    }

    @Test func removesOnlyAnExactMatch() throws {
        var table = MemoryMappings(slotLimit: 2)
        table.insert(try table.proposed(guestAddress: 0, size: 2 * page, hostAddress: 0x1000, readOnly: false))
        #expect(throws: HypervisorError.self) { _ = try table.existing(guestAddress: 0, size: page) }
        #expect(throws: HypervisorError.self) { _ = try table.existing(guestAddress: page, size: page) }
        #expect(try table.existing(guestAddress: 0, size: 2 * page).slot == 0)
    }
}
