import Testing
@testable import VMM

@Suite struct HvtCommandLineTests {
    func config(_ args: [String]) throws -> HvtConfig {
        guard case .run(let c) = try HvtCommandLine.parse(args) else { throw VMMError(.configuration, "help") }
        return c
    }

    func failure(_ args: [String]) -> String {
        do { _ = try HvtCommandLine.parse(args); return "" } catch { return error.message }
    }

    @Test func solo5StyleCommandLine() throws {
        let c = try config(["--mem=64", "--net:service=tap0", "--net-mac:service=02:00:00:00:00:01",
                            "--block:storage=/tmp/disk", "--block-sector-size:storage=4096",
                            "--solo5:quiet", "k.hvt", "--arg", "x y"])
        #expect(c.kernelPath == "k.hvt")
        #expect(c.memoryMiB == 64)
        #expect(c.nets == [.init(name: "service", interface: "tap0", mac: [2, 0, 0, 0, 0, 1])])
        #expect(c.blocks == [.init(name: "storage", path: "/tmp/disk", sectorSize: 4096)])
        #expect(c.arguments == ["--arg", "x y"])
        #expect(c.logLevel == .quiet)
    }

    @Test func doubleDashEndsOptions() throws {
        let c = try config(["--", "--weird-name.hvt", "a"])
        #expect(c.kernelPath == "--weird-name.hvt")
        #expect(c.arguments == ["a"])
        #expect(c.memoryMiB == 512)
    }

    @Test func helpIsRecognised() throws {
        #expect(try HvtCommandLine.parse(["--help"]) == .help)
    }

    @Test func badFlagsGetOneLineErrors() {
        #expect(failure([]).contains("missing KERNEL"))
        #expect(failure(["--mem=lots", "k"]).contains("malformed argument to --mem"))
        #expect(failure(["--mem=0", "k"]).contains("--mem"))
        #expect(failure(["--mem=", "k"]).contains("--mem"))
        #expect(failure(["--frobnicate", "k"]).contains("invalid option"))
        #expect(failure(["--net:service", "k"]).contains("NAME=VALUE"))
        #expect(failure(["--net:bad-name=tap0", "k"]).contains("invalid device name"))
        #expect(failure(["--net:s=averyveryverylongname", "k"]).contains("bad interface name"))
        #expect(failure(["--net-mac:s=zz:00:00:00:00:00", "--net:s=tap0", "k"]).contains("malformed MAC"))
        #expect(failure(["--net-mac:s=02:00:00:00:00:01", "k"]).contains("without --net"))
        #expect(failure(["--block:d=", "k"]).contains("missing path"))
        #expect(failure(["--block-sector-size:d=1000", "--block:d=/x", "k"]).contains("power of two"))
        #expect(failure(["--solo5:loud", "k"]).contains("unknown option"))
    }

    @Test func macParsing() {
        #expect(MACAddress.parse("0a:0B:cc:dd:ee:ff") == [10, 11, 0xCC, 0xDD, 0xEE, 0xFF])
        #expect(MACAddress.parse("0a:0b:cc:dd:ee") == nil)
        #expect(MACAddress.parse("0a:0b:cc:dd:ee:fff") == nil)
    }
}
