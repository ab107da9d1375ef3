import GuestMemory
import Testing
@testable import Boot

/// A synthetic bzImage: a setup header that follows the boot protocol and a small kernel body.
struct TestBzImage {
    var version: UInt16 = 0x020F
    var xloadflags: UInt16 = 1
    var loadflags: UInt8 = 1
    var setupSectors: UInt8 = 1
    var kernelBytes = 4096
    var initSize: UInt32 = 0x80_0000
    var initrdMax: UInt32 = 0x7FFF_FFFF
    var cmdlineSize: UInt32 = 2048

    var bytes: [UInt8] {
        var b = [UInt8](repeating: 0, count: (Int(setupSectors) + 1) * 512 + kernelBytes)
        func put<T: FixedWidthInteger>(_ v: T, _ at: Int) { for i in 0..<MemoryLayout<T>.size { b[at + i] = UInt8(truncatingIfNeeded: v >> (i * 8)) } }
        put(setupSectors, 0x1F1)
        put(UInt32(kernelBytes / 16), 0x1F4)
        put(UInt8(0x6A), 0x201)
        put(UInt32(0x5372_6448), 0x202)
        put(version, 0x206)
        put(loadflags, 0x211)
        put(initrdMax, 0x22C)
        put(UInt32(0x20_0000), 0x230)
        put(UInt8(1), 0x234)
        put(xloadflags, 0x236)
        put(cmdlineSize, 0x238)
        put(initSize, 0x260)
        for i in (Int(setupSectors) + 1) * 512..<b.count { b[i] = UInt8(truncatingIfNeeded: i) }
        return b
    }
}

@Suite struct LinuxBootTests {
    func error(_ bytes: [UInt8]) -> String {
        do { _ = try LinuxKernelImage(bytes: bytes, name: "vmlinuz"); return "" } catch { return error.message }
    }

    @Test func headerIsParsed() throws {
        let k = try LinuxKernelImage(bytes: TestBzImage().bytes, name: "vmlinuz")
        #expect(k.protocolVersion == 0x020F)
        #expect(k.protectedModeKernel.count == 4096)
        #expect(k.commandLineLimit == 2048)
        #expect(k.initrdLimit == 0x8000_0000)
        #expect(k.setupHeader.count == 0x26C - 0x1F1)
    }

    @Test func badImagesAreRefused() {
        #expect(error(Array("not a kernel".utf8)).contains("not a Linux bzImage"))
        #expect(error([UInt8](repeating: 0, count: 8192)).contains("not a Linux bzImage"))
        #expect(error(TestBzImage(version: 0x0204).bytes).contains("too old"))
        #expect(error(TestBzImage(xloadflags: 0).bytes).contains("64-bit entry"))
        #expect(error(TestBzImage(loadflags: 0).bytes).contains("zImage"))
        #expect(error(Array(TestBzImage().bytes.prefix(2000))).contains("truncated"))
        #expect(error(Array(TestBzImage(setupSectors: 30).bytes.prefix(5000))).contains("truncated"))
    }

    @Test func bootParamsE820AndInitrd() throws {
        let memory = try GuestMemory(size: 64 << 20)
        let k = try LinuxKernelImage(bytes: TestBzImage().bytes, name: "vmlinuz")
        let initrd = [UInt8](repeating: 0xAB, count: 10_000)
        let boot = try LinuxBootLayout.build(kernel: k, initrd: initrd, commandLine: "console=ttyS0 -- echo hi",
                                             rsdp: 0xE0000, into: memory)
        #expect(boot.entry == 0x10_0200)
        #expect(boot.zeroPage == 0x7000)
        let zp = GuestAddress(0x7000)
        #expect(try memory.load(UInt32.self, at: GuestAddress(0x7202)) == 0x5372_6448, "setup header copied")
        #expect(try memory.load(UInt8.self, at: GuestAddress(0x7210)) == 0xFF)
        let cmd: UInt32 = try memory.load(at: GuestAddress(zp.rawValue + 0x228))
        #expect(try memory.readCString(at: GuestAddress(UInt64(cmd)), maxLength: 100) == "console=ttyS0 -- echo hi")
        let rd: UInt32 = try memory.load(at: GuestAddress(zp.rawValue + 0x218))
        let rdSize: UInt32 = try memory.load(at: GuestAddress(zp.rawValue + 0x21C))
        #expect(rdSize == 10_000)
        #expect(rd % 4096 == 0 && UInt64(rd) + 10_000 <= 64 << 20 && rd >= 0x90_0000)
        #expect(try memory.load(UInt8.self, at: GuestAddress(UInt64(rd))) == 0xAB)
        #expect(try memory.load(UInt64.self, at: GuestAddress(zp.rawValue + 0x70)) == 0xE0000)
        #expect(try memory.load(UInt8.self, at: GuestAddress(0x10_0000 + 5)) == UInt8(truncatingIfNeeded: 1024 + 5), "kernel body at 1 MiB")
        let entries: UInt8 = try memory.load(at: GuestAddress(zp.rawValue + 0x1E8))
        #expect(entries == 4)
        let lastBase: UInt64 = try memory.load(at: GuestAddress(zp.rawValue + 0x2D0 + 3 * 20))
        let lastSize: UInt64 = try memory.load(at: GuestAddress(zp.rawValue + 0x2D0 + 3 * 20 + 8))
        #expect(lastBase == 0x10_0000 && lastBase + lastSize == 64 << 20)
    }

    @Test func initrdThatDoesNotFitIsRefused() throws {
        let memory = try GuestMemory(size: 32 << 20)
        let k = try LinuxKernelImage(bytes: TestBzImage(initrdMax: 0xFF_FFFF).bytes, name: "vmlinuz")
        #expect(throws: BootError.self) {
            _ = try LinuxBootLayout.build(kernel: k, initrd: [UInt8](repeating: 1, count: 8 << 20), commandLine: "",
                                          rsdp: 0, into: memory)
        }
    }

    @Test func commandLineLimits() throws {
        let memory = try GuestMemory(size: 32 << 20)
        let k = try LinuxKernelImage(bytes: TestBzImage(cmdlineSize: 16).bytes, name: "vmlinuz")
        #expect(throws: BootError.self) {
            _ = try LinuxBootLayout.build(kernel: k, initrd: nil, commandLine: String(repeating: "x", count: 17), rsdp: 0, into: memory)
        }
    }

    @Test func memoryAboveThreeGigabytesSkipsTheHole() {
        let regions = LinuxBootLayout.ramRegions(memorySize: 5 << 30)
        #expect(regions.count == 2)
        #expect(regions[0].base == 0 && regions[0].size == 3 << 30)
        #expect(regions[1].base == 4 << 30 && regions[1].size == 2 << 30)
    }

    @Test func tooLittleMemoryForTheKernel() throws {
        let memory = try GuestMemory(size: 4 << 20)
        let k = try LinuxKernelImage(bytes: TestBzImage().bytes, name: "vmlinuz")
        #expect(throws: BootError.self) { _ = try LinuxBootLayout.build(kernel: k, initrd: nil, commandLine: "", rsdp: 0, into: memory) }
    }
}
