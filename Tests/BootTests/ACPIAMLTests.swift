import Testing
@testable import Boot

@Suite struct ACPIAMLTests {
    func message(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch let e as BootError { return e.message } catch { return "\(error)" }
    }

    @Test func pkgLengthValueEncodingAtEachBoundary() throws {
        #expect(try AML.encodePkgLength(0) == [0x00])
        #expect(try AML.encodePkgLength(63) == [0x3F])
        #expect(try AML.encodePkgLength(64) == [0x40, 0x04])
        #expect(try AML.encodePkgLength(0x123) == [0x43, 0x12])
        #expect(try AML.encodePkgLength(4095) == [0x4F, 0xFF])
        #expect(try AML.encodePkgLength(4096) == [0x80, 0x00, 0x01])
        #expect(try AML.encodePkgLength(0xF_FFFF) == [0x8F, 0xFF, 0xFF])
        #expect(try AML.encodePkgLength(0x10_0000) == [0xC0, 0x00, 0x00, 0x01])
        #expect(try AML.encodePkgLength(0xFFF_FFFF) == [0xCF, 0xFF, 0xFF, 0xFF])
        #expect(message { _ = try AML.encodePkgLength(0x1000_0000) } != nil)
        #expect(message { _ = try AML.encodePkgLength(-1) } != nil)
    }

    /// PkgLength counts its own bytes, so the switch to a longer form happens one or two bytes
    /// before the raw value boundary.
    @Test func pkgLengthForABodyIncludesItself() throws {
        #expect(try AML.pkgLength(enclosing: 0) == [0x01])
        #expect(try AML.pkgLength(enclosing: 62) == [0x3F])           // 62 + 1 = 63
        #expect(try AML.pkgLength(enclosing: 63) == [0x41, 0x04])     // 63 + 2 = 65
        #expect(try AML.pkgLength(enclosing: 4093) == [0x4F, 0xFF])   // 4093 + 2 = 4095
        #expect(try AML.pkgLength(enclosing: 4094) == [0x81, 0x00, 0x01]) // 4094 + 3 = 4097
        #expect(try AML.pkgLength(enclosing: 0xF_FFFC) == [0x8F, 0xFF, 0xFF])
        #expect(try AML.pkgLength(enclosing: 0xF_FFFD) == [0xC1, 0x00, 0x00, 0x01])
        #expect(try AML.pkgLength(enclosing: 0xFFF_FFFB) == [0xCF, 0xFF, 0xFF, 0xFF])
        #expect(message { _ = try AML.pkgLength(enclosing: 0xFFF_FFFC) } != nil)
    }

    @Test func packageOfSixtyFourBytesUsesTwoByteLength() throws {
        let big = try AML.package([[UInt8]](repeating: [AML.bytePrefix, 7], count: 31)) // body 1 + 62 = 63
        #expect(Array(big.prefix(3)) == [AML.packageOp, 0x41, 0x04])
        #expect(big.count == 1 + 2 + 63)
    }

    @Test func integersUseTheShortestEncoding() {
        #expect(AML.integer(0) == [0x00])
        #expect(AML.integer(1) == [0x01])
        #expect(AML.integer(5) == [0x0A, 0x05])
        #expect(AML.integer(0x3F8) == [0x0B, 0xF8, 0x03])
        #expect(AML.integer(0xFEC0_0000) == [0x0C, 0x00, 0x00, 0xC0, 0xFE])
        #expect(AML.integer(0x1_0000_0000) == [0x0E, 0, 0, 0, 0, 1, 0, 0, 0])
    }

    @Test func namesArePaddedAndPrefixed() throws {
        #expect(try AML.nameString("_S5") == Array("_S5_".utf8))
        #expect(try AML.nameString("\\_SB") == [0x5C] + Array("_SB_".utf8))
        #expect(try AML.nameString("\\_SB.COM1") == [0x5C, 0x2E] + Array("_SB_COM1".utf8))
        #expect(try AML.nameString("A.B.C") == [0x2F, 3] + Array("A___B___C___".utf8))
        #expect(message { _ = try AML.nameString("com1") } != nil)
        #expect(message { _ = try AML.nameString("1ABC") } != nil)
        #expect(message { _ = try AML.nameString("TOOLONG") } != nil)
        #expect(message { _ = try AML.nameString("") } != nil)
    }

    @Test func s5NameMatchesWhatACompilerEmits() throws {
        // iasl: Name (_S5, Package (0x04) { 0x05, 0x05, Zero, Zero })
        let s5 = try AML.name("_S5", try AML.package([AML.integer(5), AML.integer(5), AML.integer(0), AML.integer(0)]))
        #expect(s5 == [0x08, 0x5F, 0x53, 0x35, 0x5F, 0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00])
    }

    @Test func eisaIDPacksLettersAndDigits() throws {
        #expect(try AML.eisaID("PNP0501") == [0x0C, 0x41, 0xD0, 0x05, 0x01])
        #expect(try AML.eisaID("PNP0A08") == [0x0C, 0x41, 0xD0, 0x0A, 0x08])
        #expect(message { _ = try AML.eisaID("PNP050") } != nil)
        #expect(message { _ = try AML.eisaID("pnp0501") } != nil)
        #expect(message { _ = try AML.eisaID("PNP05G1") } != nil)
    }

    @Test func resourceTemplateAndDevice() throws {
        let crs = try AML.resourceTemplate([AML.io(0x70, length: 2), AML.irqNoFlags([8])])
        #expect(crs == [0x11, 0x10, 0x0A, 0x0D,
                        0x47, 0x01, 0x70, 0x00, 0x70, 0x00, 0x01, 0x02,
                        0x22, 0x00, 0x01,
                        0x79, 0x00])
        let device = try AML.device("RTC", [try AML.name("_UID", AML.integer(1))])
        #expect(device == [0x5B, 0x82, 0x0B] + Array("RTC_".utf8) + [0x08] + Array("_UID".utf8) + [0x01])
        let scope = try AML.scope("\\_SB", [])
        #expect(scope == [0x10, 0x06, 0x5C] + Array("_SB_".utf8))
    }
}
