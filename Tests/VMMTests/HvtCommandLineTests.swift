import VMSpec
import Testing
@testable import VMM

@Suite struct HvtCommandLineTests {
    func config(_ args: [String]) throws -> HvtConfig {
        guard case .run(let c, _) = try HvtCommandLine.parse(args) else { throw VMMError(.configuration, "help") }
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

    @Test func helpAndVersionAreRecognisedFirst() throws {
        #expect(try HvtCommandLine.parse(["--help"]) == .help)
        #expect(try HvtCommandLine.parse(["--version"]) == .version)
        #expect(try HvtCommandLine.parse(["--mem=junk", "--version"]) == .version)
        #expect(try HvtCommandLine.parse(["--frobnicate", "--help"]) == .help)
        // After KERNEL, --help belongs to the unikernel.
        #expect(try config(["k.hvt", "--help"]).arguments == ["--help"])
    }

    @Test func devicesGivenTwiceUseTheLastWithAWarning() throws {
        guard case .run(let c, let warnings) = try HvtCommandLine.parse(
            ["--block:d=/a", "--block:d=/b", "--net:n=tap0", "--net:n=@3", "k"]) else { Issue.record("no run"); return }
        #expect(c.blocks == [.init(name: "d", path: "/b")])
        #expect(c.nets == [.init(name: "n", interface: "@3")])
        #expect(warnings.count == 2)
    }

    @Test func tapDescriptors() throws {
        #expect(HvtConfig.descriptor(of: "@3") == 3)
        #expect(HvtConfig.descriptor(of: "@-1") == nil)
        #expect(HvtConfig.descriptor(of: "tap0") == nil)
        #expect(failure(["--net:n=@", "k"]).contains("not @FD"))
        #expect(failure(["--net:n=@99999999999", "k"]).contains("not @FD"))
    }

    @Test func memoryFollowsSolo5HvtRules() throws {
        let log = VMMLog(level: .quiet)
        #expect(try HvtTender.memoryLayout(requestedMiB: 1, ring: false, log: log) == (2 << 20, 2 << 20))
        #expect(try HvtTender.memoryLayout(requestedMiB: 5, ring: false, log: log) == (4 << 20, 4 << 20))
        #expect(try HvtTender.memoryLayout(requestedMiB: 512, ring: true, log: log) == (512 << 20, 514 << 20))
        #expect(try HvtTender.memoryLayout(requestedMiB: 4097, ring: false, log: log) == (4 << 30, 4 << 30))
        // With a ring the whole stays within 4 GiB: the guest gets 2 MiB less.
        #expect(try HvtTender.memoryLayout(requestedMiB: 4096, ring: true, log: log) == ((4 << 30) - (2 << 20), 4 << 30))
        #expect(throws: VMMError.self) { try HvtTender.memoryLayout(requestedMiB: 4098, ring: false, log: log) }
    }

    @Test func badFlagsGetOneLineErrors() {
        #expect(failure([]).contains("Missing KERNEL"))
        #expect(failure(["--mem=lots", "k"]).contains("Malformed argument to --mem"))
        #expect(failure(["--mem=-5", "k"]).contains("exceeds the max size"))
        #expect(failure(["--mem=0", "k"]).contains("--mem"))
        #expect(failure(["--mem=", "k"]).contains("--mem"))
        #expect(failure(["--frobnicate", "k"]).contains("Invalid option: `--frobnicate'"))
        #expect(failure(["--net:service", "k"]).contains("NAME=VALUE"))
        #expect(failure(["--net:bad-name=tap0", "k"]).contains("invalid device name"))
        #expect(failure(["--net:s=averyveryverylongname", "k"]).contains("bad interface name"))
        #expect(failure(["--net-mac:s=zz:00:00:00:00:00", "--net:s=tap0", "k"]).contains("malformed MAC"))
        #expect(failure(["--net-mac:s=02:00:00:00:00:01", "k"]).contains("without --net"))
        #expect(failure(["--block:d=", "k"]).contains("missing path"))
        #expect(failure(["--block-sector-size:d=1000", "--block:d=/x", "k"]).contains("Block size must be a multiple of 2 greater than or equal 512"))
        #expect(failure(["--solo5:loud", "k"]).contains("unknown option"))
    }

    @Test func macParsing() throws {
        // One grammar (VMSpec.MACAddress), also here.
        #expect(try config(["--net:s=tap0", "--net-mac:s=0a:0B:cc:dd:ee:ff", "k"]).nets.first?.mac == [10, 11, 0xCC, 0xDD, 0xEE, 0xFF])
        #expect(failure(["--net:s=tap0", "--net-mac:s=0a:0b:cc:dd:ee", "k"]).contains("malformed MAC address"))
        #expect(failure(["--net:s=tap0", "--net-mac:s=0a:0b:cc:dd:ee:fff", "k"]).contains("malformed MAC address"))
    }
}

/// solo5-hvt-debug's options: --gdb, --gdb-port=N, --dumpcore=DIR.
@Suite struct HvtDebugCommandLineTests {
    let parsing = HvtCommandLineTests()
    func config(_ args: [String]) throws -> HvtConfig { try parsing.config(args) }
    func failure(_ args: [String]) -> String { parsing.failure(args) }

    @Test func debugOptions() throws {
        let plain = try config(["k.hvt"])
        #expect(!plain.gdb && plain.gdbPort == 1234 && plain.dumpCoreDirectory == nil)
        let c = try config(["--gdb", "--gdb-port=4321", "--dumpcore=/tmp/cores", "k.hvt"])
        #expect(c.gdb && c.gdbPort == 4321 && c.dumpCoreDirectory == "/tmp/cores")
        // As solo5-hvt-debug: --gdb-port alone does not turn the stub on; port 0 is the kernel's pick.
        let portOnly = try config(["--gdb-port=0", "k.hvt"])
        #expect(!portOnly.gdb && portOnly.gdbPort == 0)
    }

    @Test func badDebugOptions() {
        #expect(failure(["--gdb-port=65536", "k.hvt"]).contains("Malformed argument to --gdb-port"))
        #expect(failure(["--gdb-port=-1", "k.hvt"]).contains("Malformed argument to --gdb-port"))
        #expect(failure(["--gdb-port=12ab", "k.hvt"]).contains("Malformed argument to --gdb-port"))
        #expect(failure(["--gdb-port=", "k.hvt"]).contains("Malformed argument to --gdb-port"))
        #expect(failure(["--dumpcore=", "k.hvt"]).contains("--dumpcore=DIR"))
        // The pre-0.6 bare form is not an option (solo5-hvt-debug: Invalid option).
        #expect(failure(["--dumpcore", "k.hvt"]).contains("Invalid option"))
        #expect(failure(["--gdb=1", "k.hvt"]).contains("Invalid option"))
    }

    @Test func helpNamesTheDebugModules() {
        #expect(HvtCommandLine.usage.contains("Compiled-in modules: core block net gdb dumpcore"))
        #expect(HvtCommandLine.usage.contains("--gdb-port=1234") && HvtCommandLine.usage.contains("--dumpcore=DIR"))
    }
}
