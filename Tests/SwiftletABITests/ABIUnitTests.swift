import CSwiftlet
import SwiftletABI
import Testing

/// The C ABI's checks that need no KVM: versions, NULL pointers, struct sizes, handles, flags and
/// the thread's last-error message. The exported functions are called as the C client calls them.
struct ABIUnitTests {
    init() { _ = SwiftletABI.swiftlet_open(1) }

    private func lastError() -> String { ABIErrorMessage.current }

    @Test func version1StructsHaveTheSizesTheHeaderDocuments() {
        #expect(MemoryLayout<swiftlet_capabilities>.size == Int(ABIVersion.capabilitiesSize))
        #expect(MemoryLayout<swiftlet_regs>.size == Int(ABIVersion.regsSize))
        #expect(MemoryLayout<swiftlet_sregs>.size == Int(ABIVersion.sregsSize))
        #expect(MemoryLayout<swiftlet_fpu>.size == Int(ABIVersion.fpuSize))
        #expect(MemoryLayout<swiftlet_exit>.size == Int(ABIVersion.exitSize))
        #expect(MemoryLayout<swiftlet_segment>.size == 24 && MemoryLayout<swiftlet_dtable>.size == 16)
        #expect(MemoryLayout<swiftlet_msr>.size == 16 && MemoryLayout<swiftlet_io_access>.size == 8 && MemoryLayout<swiftlet_mem_access>.size == 24)
    }

    @Test func openRefusesVersionZeroAndVersionsFromTheFuture() {
        #expect(SwiftletABI.swiftlet_open(0) == SWIFTLET_E_VERSION)
        #expect(lastError().contains("ABI version 0"))
        #expect(SwiftletABI.swiftlet_open(3) == SWIFTLET_E_VERSION)
        #expect(SwiftletABI.swiftlet_open(UInt32.max) == SWIFTLET_E_VERSION)
        // Version 2 (the VM level) is current; a client written for version 1 still opens.
        #expect(SwiftletABI.swiftlet_open(2) == SWIFTLET_OK)
        #expect(SwiftletABI.swiftlet_open(1) == SWIFTLET_OK)
        #expect(lastError() == "", "success clears the message")
        #expect(SwiftletABI.swiftlet_abi_version() == 2)
    }

    @Test func nullPointersAndUnknownFlagsAreInvalid() {
        #expect(SwiftletABI.swiftlet_machine_create(0, nil) == SWIFTLET_E_INVALID)
        #expect(lastError() == "machine is NULL")
        var handle: UInt64 = 0
        #expect(SwiftletABI.swiftlet_machine_create(0x80, &handle) == SWIFTLET_E_INVALID)
        #expect(lastError().contains("unknown machine flags"))
        #expect(handle == 0, "nothing written on failure")
        #expect(SwiftletABI.swiftlet_capabilities(nil) == SWIFTLET_E_INVALID)
    }

    @Test func aStructSmallerThanVersion1IsRefusedBeforeAnythingElse() {
        var caps = swiftlet_capabilities()
        caps.size = 8
        #expect(SwiftletABI.swiftlet_capabilities(&caps) == SWIFTLET_E_STRUCT_SIZE)
        #expect(lastError() == "struct swiftlet_capabilities.size is 8, version 1's is 40")
    }

    @Test func handlesThatWereNeverIssuedOrOfAnotherKindAreRefused() {
        #expect(SwiftletABI.swiftlet_machine_destroy(0) == SWIFTLET_E_HANDLE)
        #expect(lastError() == "machine handle 0 (no machine)")
        #expect(SwiftletABI.swiftlet_machine_destroy(0x4D00_0000_DEAD_BEEF) == SWIFTLET_E_HANDLE)
        #expect(lastError().contains("destroyed or never issued"))
        #expect(SwiftletABI.swiftlet_vcpu_destroy(0x4D00_0000_0000_0001) == SWIFTLET_E_HANDLE)
        #expect(lastError().contains("is not a vCPU handle"))
        var regs = swiftlet_regs()
        regs.size = UInt32(MemoryLayout<swiftlet_regs>.size)
        #expect(SwiftletABI.swiftlet_vcpu_get_regs(12345, &regs) == SWIFTLET_E_HANDLE)
        #expect(SwiftletABI.swiftlet_vcpu_kick(~0) == SWIFTLET_E_HANDLE)
        #expect(SwiftletABI.swiftlet_machine_map(0, 0, nil, 4096, 0) == SWIFTLET_E_HANDLE)
    }

    @Test func lastErrorCopiesAsSnprintfDoes() {
        _ = SwiftletABI.swiftlet_machine_destroy(0)
        let full = SwiftletABI.swiftlet_last_error(nil, 0)
        #expect(full == "machine handle 0 (no machine)".utf8.count)
        var small = [CChar](repeating: 0x7F, count: 8)
        #expect(SwiftletABI.swiftlet_last_error(&small, small.count) == full)
        #expect(small[7] == 0 && String(decoding: small.prefix(7).map { UInt8($0) }, as: UTF8.self) == "machine")
    }

    @Test func aMessageStaysOneLineAndIsCut() {
        ABIErrorMessage.set("first\nsecond\r" + String(repeating: "x", count: 1000))
        let message = lastError()
        #expect(!message.contains("\n") && !message.contains("\r") && message.hasPrefix("first second "))
        #expect(message.utf8.count == 511)
    }

    @Test func messagesAreKeptPerThread() async {
        _ = SwiftletABI.swiftlet_machine_destroy(0)
        let other = await Task.detached { () -> String in
            _ = SwiftletABI.swiftlet_open(1)
            return ABIErrorMessage.current
        }.value
        #expect(other == "")
    }
}

/// The handle table on its own: kinds, serials never reused, the limit, conditional removal.
struct HandleTableTests {
    final class Thing: Sendable {}

    @Test func handlesCarryTheirKindAndAreNeverReused() throws {
        let table = HandleTable<Thing>(kind: 0x4D, name: "machine", limit: 2)
        let a = try table.insert(Thing())
        #expect(a >> 56 == 0x4D && a & 0x00FF_FFFF_FFFF_FFFF != 0)
        _ = try table.remove(a)
        let b = try table.insert(Thing())
        #expect(b != a)
        #expect(throws: ABIError.self) { _ = try table.lookup(a) }
        _ = try table.insert(Thing())
        do { _ = try table.insert(Thing()); Issue.record("a third handle with a limit of 2") } catch {
            #expect(error.status == SWIFTLET_E_LIMIT)
        }
    }

    @Test func aRemovalTheOwnerRefusesLeavesTheHandle() throws {
        let table = HandleTable<Thing>(kind: 0x56, name: "vCPU", limit: 4)
        let a = try table.insert(Thing())
        #expect(throws: ABIError.self) { _ = try table.remove(a) { _ throws(ABIError) in throw ABIError(SWIFTLET_E_BUSY, "busy") } }
        _ = try table.lookup(a)
    }
}
