import Foundation
import Testing

/// Runs each of our test unikernels (guests/hvt, README contract) under `swiftlet hvt` on
/// /dev/kvm and checks exit status and output: every case for hvt ABI 2 (what Solo5 0.8.0 to
/// v0.12.1 build) and again for ABI 1 (older MirageOS builds), which we keep running.
@Suite(.enabled(if: Harness.hasKVM, "needs a usable /dev/kvm"), .serialized)
struct HvtGuestTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var args: [String]
        var status: Int32
        var expect: [String]
        var abi = 2
        var testDescription: String { "\(name) (ABI \(abi))" }
    }

    static func g(_ n: String) -> String { "@\(n)" } // resolved to a built guest path at run time

    static let cases: [Case] = [
        Case(name: "hello", args: [g("hello"), "a", "b"], status: 0,
             expect: ["Hello, world", "arg[1]=a", "arg[2]=b", "mem_size=536870912", "tsc_freq_nonzero=1", "bss_zero=1", "data_ok=1"]),
        Case(name: "hello with --mem", args: ["--mem=32", g("hello")], status: 0, expect: ["mem_size=33554432"]),
        Case(name: "exit status 7", args: [g("exit"), "7"], status: 7, expect: ["exiting with status 7"]),
        Case(name: "exit status 0", args: [g("exit"), "0"], status: 0, expect: []),
        Case(name: "abort", args: [g("abort")], status: 255, expect: ["about to abort"]),
        Case(name: "zero page is unmapped", args: [g("zeropage")], status: 255, expect: ["trap: vector 14 ", "cr2=0x0 "]),
        Case(name: "text is not writable", args: [g("wnox")], status: 255, expect: ["trap: vector 14 "]),
        Case(name: "data is not executable", args: [g("xnow")], status: 255, expect: ["trap: vector 14 "]),
        Case(name: "trap ud2", args: [g("trap"), "ud2"], status: 255, expect: ["trap: vector 6 "]),
        Case(name: "trap page fault", args: [g("trap"), "pf"], status: 255, expect: ["trap: vector 14 "]),
        Case(name: "time and poll", args: [g("time")], status: 0, expect: ["SUCCESS"]),
        Case(name: "demo", args: [g("demo"), "x"], status: 0, expect: ["Swiftlet demo unikernel: "]),
        Case(name: "hypercall loop", args: [g("hcloop"), "1000"], status: 0, expect: ["hcloop: calls=1000 "]),
        Case(name: "puts beyond memory", args: [g("putsbad"), "beyond"], status: 1, expect: ["swiftlet: invalid guest"]),
        Case(name: "puts straddling the end", args: [g("putsbad"), "straddle"], status: 1, expect: ["swiftlet: invalid guest"]),
        Case(name: "puts wrapping", args: [g("putsbad"), "wrap"], status: 1, expect: ["swiftlet: invalid guest"]),
        Case(name: "puts huge length", args: [g("putsbad"), "huge"], status: 1, expect: ["swiftlet: invalid guest"]),
        Case(name: "argument block beyond memory", args: [g("hcbad"), "beyond"], status: 1, expect: ["swiftlet: invalid guest memory access"]),
        Case(name: "argument block straddling", args: [g("hcbad"), "straddle"], status: 1, expect: ["swiftlet: invalid guest memory access"]),
        Case(name: "port that is not a hypercall", args: [g("hcbad"), "badnr"], status: 1, expect: ["swiftlet: invalid guest port access: port=0x509"]),
        Case(name: "ring kick without a ring", args: [g("hcbad"), "kick"], status: 1, expect: ["swiftlet: invalid guest port access: port=0x600"]),
        Case(name: "2 MiB of memory", args: ["--mem=2", g("hello")], status: 0, expect: ["mem_size=2097152"]),
        Case(name: "--mem rounded down to 2 MiB", args: ["--mem=5", g("hello")], status: 0,
             expect: ["swiftlet: adjusting memory to 4194304 bytes", "mem_size=4194304"]),
        Case(name: "--mem=4097 is 4 GiB", args: ["--mem=4097", g("exit"), "0"], status: 0, expect: ["adjusting memory to 4294967296 bytes"]),
    ]

    /// Every case for ABI 2, and for ABI 1 too.
    static let bothABIs: [Case] = cases + cases.map { var c = $0; c.abi = 1; return c }

    static func resolve(_ args: [String], abi: Int = 2) throws -> [String] {
        try args.map { $0.hasPrefix("@") ? try Harness.guest(String($0.dropFirst()), abi: abi) : $0 }
    }

    @Test(arguments: bothABIs)
    func guest(_ c: Case) throws {
        let r = Harness.hvt(try Self.resolve(c.args, abi: c.abi))
        #expect(r.status == c.status, "\(c.name): output:\n\(r.output)")
        for line in c.expect {
            #expect(r.output.contains(line), "\(c.name): missing '\(line)' in:\n\(r.output)")
        }
        #expect(!r.output.contains("Fatal error"), "no Swift trap")
    }

    @Test func guestImagesHaveTheLayoutsOfSolo5sToolchains() throws {
        // readelf over every built guest: ABI 2 shaped as Solo5 v0.12.1 emits, ABI 1 as before.
        let r = Harness.run("/bin/sh", [Harness.root.appendingPathComponent("guests/hvt/check.sh").path, try Harness.guests.get().path])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("hello.hvt: ABI 2") && r.output.contains("abi1/hello.hvt: ABI 1"), "\(r.output)")
    }

    @Test func debugLogNamesTheABI() throws {
        let two = Harness.hvt(["--solo5:debug", try Harness.guest("exit"), "0"])
        #expect(two.status == 0 && two.output.contains("Solo5 hvt ABI 2"), "\(two.output)")
        let one = Harness.hvt(["--solo5:debug", try Harness.guest("exit", abi: 1), "0"])
        #expect(one.status == 0 && one.output.contains("Solo5 hvt ABI 1"), "\(one.output)")
    }

    @Test func tlsImageLayoutLoads() throws {
        // Our ABI-2 guests carry what Solo5's toolchain emits: PT_INTERP, an empty PT_LOAD at 0,
        // .tdata in a read-only PT_LOAD, PT_TLS and the not_openbsd note. The tls guest uses it.
        let r = Harness.hvt([try Harness.guest("tls")])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("tls: initialised=1234567 zeroed=0 SUCCESS"), "\(r.output)")
    }

    @Test func blockReadWrite() throws {
        let disk = Harness.disk("blk.img", size: 64 << 10)
        let r = Harness.hvt(["--block:storage=\(disk)", try Harness.guest("blk")])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("capacity=65536 block_size=512"))
        #expect(r.output.contains("SUCCESS"))
        // What the guest wrote is in the file after the VM exits.
        let data = try Data(contentsOf: URL(fileURLWithPath: disk))
        #expect(data.prefix(4096).contains { $0 != 0 }, "guest writes reached the file")
        let old = Harness.hvt(["--block:storage=\(disk)", try Harness.guest("blk", abi: 1)])
        #expect(old.status == 0 && old.output.contains("SUCCESS"), "ABI 1: \(old.output)")
    }

    @Test func blockSectorSize4K() throws {
        let disk = Harness.disk("blk4k.img", size: 64 << 10)
        let r = Harness.hvt(["--block:storage=\(disk)", "--block-sector-size:storage=4096", try Harness.guest("blk")])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("block_size=4096"))
    }

    @Test(arguments: ["read", "write", "straddle", "wrap"])
    func blockBufferOutsideMemoryEndsTheRun(variant: String) throws {
        let disk = Harness.disk("blkbad-\(variant).img", size: 64 << 10)
        let r = Harness.hvt(["--block:storage=\(disk)", try Harness.guest("blkbad"), variant])
        #expect(r.status == 1, "\(r.output)")
        #expect(r.output.contains("swiftlet: invalid guest buffer in BLOCK_"), "\(r.output)")
        #expect(!r.output.contains("BLKBAD FAIL"))
    }

    @Test func sixtyThreeBlockDevices() throws {
        var args: [String] = []
        for i in 0..<63 { args.append("--block:b\(i)=\(Harness.disk("b\(i).img", size: 4096))") }
        let r = Harness.hvt(args + [try Harness.guest("blk63")])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("SUCCESS"))
    }

    @Test func sseRunsOnHardwareKVM() throws {
        // kvm_pvm emulates CPL0 code and its emulator lacks most SSE instructions; hardware KVM runs it.
        let r = Harness.hvt([try Harness.guest("sse")])
        if Harness.isPVM {
            withKnownIssue("kvm_pvm's instruction emulator cannot run SSE") {
                #expect(r.status == 0 && r.output.contains("SUCCESS"))
            }
        } else {
            #expect(r.status == 0 && r.output.contains("SUCCESS"), "\(r.output)")
        }
    }
}
