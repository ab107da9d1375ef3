import Testing
@testable import Boot

/// Reads the blob back as the guest would: by guest-physical address, following pointers.
struct ACPIBlobReader {
    let blob: [UInt8]
    let base: UInt64

    func offset(_ address: UInt64) -> Int {
        precondition(address >= base && address - base < UInt64(blob.count), "address outside the blob")
        return Int(address - base)
    }

    func u8(_ address: UInt64) -> UInt8 { blob[offset(address)] }
    func u16(_ address: UInt64) -> UInt16 { UInt16(u8(address)) | UInt16(u8(address + 1)) << 8 }
    func u32(_ address: UInt64) -> UInt32 { UInt32(u16(address)) | UInt32(u16(address + 2)) << 16 }
    func u64(_ address: UInt64) -> UInt64 { UInt64(u32(address)) | UInt64(u32(address + 4)) << 32 }
    func ascii(_ address: UInt64, _ count: Int) -> String {
        String(decoding: blob[offset(address)..<offset(address) + count], as: UTF8.self)
    }

    /// A table's bytes (header length), checked to lie inside the blob.
    func table(_ address: UInt64) -> ArraySlice<UInt8> {
        let length = Int(u32(address + 4))
        let start = offset(address)
        precondition(start + length <= blob.count, "table overruns the blob")
        return blob[start..<start + length]
    }

    var rsdp: UInt64 { base }
    var xsdt: UInt64 { u64(rsdp + 24) }
    var rsdt: UInt64 { UInt64(u32(rsdp + 16)) }

    /// XSDT entries, by signature.
    var tables: [String: UInt64] {
        let count = (Int(u32(xsdt + 4)) - 36) / 8
        var result: [String: UInt64] = [:]
        for i in 0..<count {
            let address = u64(xsdt + 36 + UInt64(i) * 8)
            result[ascii(address, 4)] = address
        }
        return result
    }

    var fadt: UInt64 { tables["FACP"]! }
    var madt: UInt64 { tables["APIC"]! }
    var dsdt: UInt64 { u64(fadt + 140) }

    static func sum(_ bytes: ArraySlice<UInt8>) -> UInt8 { bytes.reduce(0, &+) }
}

@Suite struct ACPITablesTests {
    static let base: UInt64 = 0xE_0000

    func build(_ config: ACPIConfiguration = ACPIConfiguration(cpuCount: 4), at base: UInt64 = base) throws -> ACPIBlobReader {
        ACPIBlobReader(blob: try ACPITables.build(config, at: base), base: base)
    }

    func error(_ config: ACPIConfiguration, at base: UInt64 = base) -> String? {
        do { _ = try ACPITables.build(config, at: base); return nil } catch { return error.message }
    }

    @Test func rsdpHasSignatureChecksumsAndPointers() throws {
        let r = try build()
        #expect(r.ascii(r.rsdp, 8) == "RSD PTR ")
        #expect(r.u8(r.rsdp + 15) == 2)
        #expect(r.u32(r.rsdp + 20) == 36)
        #expect(r.ascii(r.rsdp + 9, 6) == "SWIFTL")
        #expect(ACPIBlobReader.sum(r.blob[0..<20]) == 0)
        #expect(ACPIBlobReader.sum(r.blob[0..<36]) == 0)
        #expect(r.ascii(r.xsdt, 4) == "XSDT")
        #expect(r.ascii(r.rsdt, 4) == "RSDT")
        #expect(r.base & 0xF == 0)
    }

    @Test func everyTableChecksumsToZeroWithAGoodHeader() throws {
        var config = ACPIConfiguration(cpuCount: 8)
        config.pcieECAM = (base: 0xB000_0000, busCount: 256)
        let r = try build(config)
        var all = r.tables
        all["XSDT"] = r.xsdt
        all["RSDT"] = r.rsdt
        all["DSDT"] = r.dsdt
        #expect(Set(all.keys) == ["FACP", "APIC", "MCFG", "XSDT", "RSDT", "DSDT"])
        for (signature, address) in all {
            let table = r.table(address)
            #expect(ACPIBlobReader.sum(table) == 0, "checksum of \(signature)")
            #expect(table.count >= 36)
            #expect(r.ascii(address + 10, 6) == "SWIFTL")
            #expect(r.ascii(address + 16, 8) == "SWIFTLET")
            #expect(address & 0x7 == 0, "\(signature) alignment")
        }
        #expect(r.u8(r.fadt + 8) == 6)
        #expect(r.u32(r.fadt + 4) == 276)
        #expect(r.u8(r.dsdt + 8) == 2)
    }

    @Test func rsdtMirrorsXsdt() throws {
        let r = try build()
        let xCount = (Int(r.u32(r.xsdt + 4)) - 36) / 8
        let rCount = (Int(r.u32(r.rsdt + 4)) - 36) / 4
        #expect(xCount == 2 && rCount == 2)
        for i in 0..<UInt64(xCount) {
            #expect(UInt64(r.u32(r.rsdt + 36 + i * 4)) == r.u64(r.xsdt + 36 + i * 8))
        }
        #expect(r.tables["MCFG"] == nil)
    }

    @Test func xsdtPointsInsideTheBlobAtAnyBase() throws {
        for base: UInt64 in [0xE_0000, 0xF_0010, 0x9_0000] {
            let r = try build(ACPIConfiguration(cpuCount: 2), at: base)
            #expect(Set(r.tables.keys) == ["FACP", "APIC"])
            for address in r.tables.values { _ = r.table(address) }
        }
    }

    @Test func fadtDescribesPM1BlocksSCIResetAndDSDT() throws {
        let r = try build()
        let f = r.fadt
        let facs = UInt64(r.u32(f + 36))
        #expect(r.ascii(facs, 4) == "FACS")
        #expect(r.u32(facs + 4) == 64)
        #expect(facs & 63 == 0)
        #expect(r.u64(f + 132) == 0) // X_FIRMWARE_CTRL unused when FIRMWARE_CTRL is set
        #expect(UInt64(r.u32(f + 40)) == r.dsdt)
        #expect(r.ascii(r.dsdt, 4) == "DSDT")
        #expect(r.u16(f + 46) == 9)
        #expect(r.u32(f + 48) == 0) // no SMI_CMD: always in ACPI mode
        #expect(r.u32(f + 56) == 0x600)
        #expect(r.u32(f + 64) == 0x604)
        #expect(r.u32(f + 76) == 0 && r.u8(f + 91) == 0) // no PM timer
        #expect(r.u8(f + 88) == 4)
        #expect(r.u8(f + 89) == 2)
        // X_PM1a_EVT_BLK / X_PM1a_CNT_BLK: system I/O, 32 / 16 bits.
        #expect([r.u8(f + 148), r.u8(f + 149), r.u8(f + 150)] == [1, 32, 0])
        #expect(r.u64(f + 152) == 0x600)
        #expect([r.u8(f + 172), r.u8(f + 173), r.u8(f + 174)] == [1, 16, 0])
        #expect(r.u64(f + 176) == 0x604)
        // Reset register: I/O byte at 0x64, value 0xFE.
        #expect([r.u8(f + 116), r.u8(f + 117), r.u8(f + 118), r.u8(f + 119)] == [1, 8, 0, 1])
        #expect(r.u64(f + 120) == 0x64)
        #expect(r.u8(f + 128) == 0xFE)
        let flags = r.u32(f + 112)
        #expect(flags & (1 << 10) != 0) // RESET_REG_SUP
        #expect(flags & (1 << 20) == 0) // not hardware-reduced
        #expect(flags & (1 << 4) != 0)  // no fixed power button
        #expect(flags & (1 << 5) != 0)  // no fixed sleep button
        #expect(flags & 0b101 == 0b101) // WBINVD, PROC_C1
        let boot = r.u16(f + 109)
        #expect(boot & (1 << 1) != 0)   // 8042
        #expect(boot & (1 << 2) != 0)   // no VGA
        #expect(boot & (1 << 3) == 0)   // MSI allowed
        #expect(boot & (1 << 5) == 0)   // CMOS RTC present
    }

    @Test func fadtFollowsTheLegacyDeviceSwitches() throws {
        let r = try build(ACPIConfiguration(cpuCount: 1, sciInterrupt: 10, s5SleepType: 7, resetPort: 0xCF9, resetValue: 6,
                                            hasI8042: false, hasRTC: false, powerButton: true))
        let boot = r.u16(r.fadt + 109)
        #expect(boot & (1 << 1) == 0)
        #expect(boot & (1 << 5) != 0)
        #expect(r.u32(r.fadt + 112) & (1 << 4) == 0)
        #expect(r.u16(r.fadt + 46) == 10)
        #expect(r.u64(r.fadt + 120) == 0xCF9)
        #expect(r.u8(r.fadt + 128) == 6)
    }

    /// MADT entries as (type, bytes).
    func madtEntries(_ r: ACPIBlobReader) -> [(type: UInt8, bytes: ArraySlice<UInt8>)] {
        let table = r.table(r.madt)
        var entries: [(UInt8, ArraySlice<UInt8>)] = []
        var i = table.startIndex + 44
        while i < table.endIndex {
            let length = Int(table[i + 1])
            #expect(length >= 2 && i + length <= table.endIndex)
            entries.append((table[i], table[i..<i + length]))
            i += length
        }
        return entries
    }

    @Test(arguments: [1, 4, 255])
    func madtListsEveryCPUAndTheIOAPIC(cpus: Int) throws {
        let r = try build(ACPIConfiguration(cpuCount: cpus))
        #expect(r.u32(r.madt + 36) == 0xFEE0_0000)
        #expect(r.u32(r.madt + 40) == 1)
        let entries = madtEntries(r)
        let lapics = entries.filter { $0.type == 0 }.map { Array($0.bytes) }
        #expect(lapics.count == cpus)
        for (i, e) in lapics.enumerated() {
            #expect(e == [0, 8, UInt8(i), UInt8(i), 1, 0, 0, 0])
        }
        let ioapics = entries.filter { $0.type == 1 }.map { Array($0.bytes) }
        #expect(ioapics == [[1, 12, UInt8(cpus), 0, 0x00, 0x00, 0xC0, 0xFE, 0, 0, 0, 0]])
        let overrides = entries.filter { $0.type == 2 }.map { Array($0.bytes) }
        #expect(overrides == [[2, 10, 0, 0, 2, 0, 0, 0, 0x05, 0x00], [2, 10, 0, 9, 9, 0, 0, 0, 0x0D, 0x00]])
        let nmis = entries.filter { $0.type == 4 }.map { Array($0.bytes) }
        #expect(nmis == [[4, 6, 0xFF, 0x05, 0x00, 1]])
    }

    @Test func mcfgDescribesTheECAMWindow() throws {
        var config = ACPIConfiguration(cpuCount: 1)
        config.pcieECAM = (base: 0xE000_0000, busCount: 16)
        let r = try build(config)
        let m = try #require(r.tables["MCFG"])
        #expect(r.u32(m + 4) == 60)
        #expect(r.u64(m + 44) == 0xE000_0000)
        #expect(r.u16(m + 52) == 0)
        #expect(r.u8(m + 54) == 0 && r.u8(m + 55) == 15)
    }

    /// A root sleep package's elements (`\_S5_` by default), decoded from the DSDT's AML.
    func s5Package(_ r: ACPIBlobReader, name state: String = "_S5_") throws -> [UInt64] {
        let aml = Array(r.table(r.dsdt).dropFirst(36))
        let name: [UInt8] = [AML.nameOp, 0x5C] + Array(state.utf8)
        let at = try #require((0...aml.count - name.count).first { Array(aml[$0..<$0 + name.count]) == name })
        var i = at + name.count
        #expect(aml[i] == AML.packageOp)
        i += 2 // opcode, 1-byte PkgLength (the package is tiny)
        let count = Int(aml[i])
        i += 1
        var values: [UInt64] = []
        for _ in 0..<count {
            switch aml[i] {
            case AML.zeroOp: values.append(0); i += 1
            case AML.oneOp: values.append(1); i += 1
            case AML.bytePrefix: values.append(UInt64(aml[i + 1])); i += 2
            default: Issue.record("unexpected opcode \(aml[i])"); return values
            }
        }
        return values
    }

    @Test(arguments: [UInt8(5), 0, 1, 7])
    func dsdtHasS5Package(type: UInt8) throws {
        let r = try build(ACPIConfiguration(cpuCount: 2, s5SleepType: type))
        #expect(try s5Package(r) == [UInt64(type), UInt64(type), 0, 0])
        #expect(try s5Package(r, name: "_S0_") == [0, 0, 0, 0])
    }

    @Test func dsdtListsTheLegacyDevices() throws {
        func contains(_ r: ACPIBlobReader, _ needle: [UInt8]) -> Bool {
            let aml = Array(r.table(r.dsdt))
            return (0...aml.count - needle.count).contains { Array(aml[$0..<$0 + needle.count]) == needle }
        }
        let all = try build()
        #expect(contains(all, [AML.extOpPrefix, AML.deviceOp]))
        #expect(contains(all, Array("COM1".utf8)))
        #expect(contains(all, [0x0C, 0x41, 0xD0, 0x05, 0x01])) // EISAID("PNP0501")
        #expect(contains(all, [0x0C, 0x41, 0xD0, 0x03, 0x03])) // PNP0303
        #expect(contains(all, [0x0C, 0x41, 0xD0, 0x0B, 0x00])) // PNP0B00
        #expect(contains(all, [0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00, 0x79, 0x00]))
        let none = try build(ACPIConfiguration(cpuCount: 1, hasI8042: false, hasRTC: false, hasCOM1: false))
        #expect(!contains(none, [AML.extOpPrefix, AML.deviceOp]))
        #expect(try s5Package(none) == [5, 5, 0, 0])
    }

    @Test func badConfigurationsAreRejected() {
        #expect(error(ACPIConfiguration(cpuCount: 0))?.contains("0 vCPUs") == true)
        #expect(error(ACPIConfiguration(cpuCount: 256))?.contains("256 vCPUs") == true)
        #expect(error(ACPIConfiguration(cpuCount: 255)) == nil)
        #expect(error(ACPIConfiguration(cpuCount: 1, s5SleepType: 8)) != nil)
        #expect(error(ACPIConfiguration(cpuCount: 1, sciInterrupt: 16)) != nil)
        #expect(error(ACPIConfiguration(cpuCount: 1, sciInterrupt: 4)) != nil) // COM1's IRQ
        #expect(error(ACPIConfiguration(cpuCount: 1, pm1aEventPort: 0x600, pm1aControlPort: 0x602)) != nil)
        #expect(error(ACPIConfiguration(cpuCount: 1, oemID: "TOOLONG")) != nil)
        var ecam = ACPIConfiguration(cpuCount: 1)
        ecam.pcieECAM = (base: 0xE000_0000, busCount: 0)
        #expect(error(ecam) != nil)
        ecam.pcieECAM = (base: 0xE008_0000, busCount: 1)
        #expect(error(ecam) != nil)
    }

    @Test func tablesMustEndBelowOneMiB() throws {
        let size = try ACPITables.build(ACPIConfiguration(cpuCount: 4), at: Self.base).count
        #expect(error(ACPIConfiguration(cpuCount: 4), at: 0x10_0000 - 0x100)?.contains("past 1 MiB") == true)
        #expect(error(ACPIConfiguration(cpuCount: 4), at: 0x10_0000) != nil)
        #expect(error(ACPIConfiguration(cpuCount: 4), at: UInt64.max & ~0xF) != nil)
        #expect(error(ACPIConfiguration(cpuCount: 4), at: 0xE_0008) != nil) // not 16-byte aligned
        // A base whose blob ends exactly at 1 MiB is fine (the FACS alignment is the same at 64-byte bases).
        #expect(error(ACPIConfiguration(cpuCount: 4), at: (0x10_0000 - UInt64(size)) & ~63) == nil)
    }
}
