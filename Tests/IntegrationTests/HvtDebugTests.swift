import Foundation
import Testing

/// `swiftlet hvt --gdb` and `--dumpcore` driven by Debian's gdb in batch mode, as a user would,
/// and the same scripts against solo5-hvt-debug v0.12.1 where ../shared/peers has it.
@Suite(.enabled(if: Harness.hasKVM && Harness.gdb != nil, "needs /dev/kvm and gdb"))
struct HvtDebugTests {
    /// A port of its own per test (the suites run in parallel).
    static func port(_ n: Int) -> Int { 42000 + Int(getpid() % 500) * 10 + n }

    /// Starts `tender hvt-options --gdb --gdb-port=PORT KERNEL args`, runs gdb with `commands`
    /// once the stub waits, and returns gdb's output and the tender's status and output.
    func debugSession(tender: [String], port: Int, guest: String, args: [String] = [], commands: [String],
                      interruptWhen: String? = nil) throws -> (gdb: String, status: Int32, output: String) {
        let vm = try Harness.Background(tender[0], Array(tender.dropFirst()) + ["--mem=4", "--gdb", "--gdb-port=\(port)", guest] + args)
        #expect(vm.waitFor("Waiting for a debugger"), "\(vm.output)")
        #expect(vm.output.contains("target remote localhost:\(port)"))
        let script = ["-batch", "-nx", "-ex", "target remote 127.0.0.1:\(port)"] + commands.flatMap { ["-ex", $0] } + [guest]
        let gdbOutput: String
        if let text = interruptWhen {
            // The test process may hand children SIGINT blocked or ignored, and gdb keeps it so:
            // perl (perl-base, always on Debian) unblocks it and restores the default before exec.
            let reset = "use POSIX; sigprocmask(SIG_SETMASK, POSIX::SigSet->new()); $SIG{INT} = 'DEFAULT'; exec @ARGV"
            let gdb = try Harness.Background("/usr/bin/perl", ["-e", reset, Harness.gdb!] + script)
            // Once the guest runs, Ctrl-C in gdb (SIGINT to it; gdb sends 0x03 to the stub),
            // again until gdb says the guest stopped: gdb ignores SIGINT while it starts up.
            #expect(vm.waitFor(text, timeout: 60), "\(vm.output)")
            for _ in 0..<30 where !gdb.output.contains("received signal SIGINT") && gdb.process.isRunning {
                kill(gdb.process.processIdentifier, SIGINT)
                _ = gdb.waitFor("received signal SIGINT", timeout: 2)
            }
            gdb.finish(timeout: 60)
            gdbOutput = gdb.output
        } else {
            gdbOutput = Harness.run(Harness.gdb!, script, timeout: 90).output
        }
        let status = vm.finish(timeout: 60)
        return (gdbOutput, status, vm.output)
    }

    static let changeARegister = ["break compute", "continue", "print x", "print counter", "backtrace",
                                  "set var $rdi = 20", "stepi", "info registers rip", "continue"]

    func checkChangeARegister(_ r: (gdb: String, status: Int32, output: String), peer: Bool) {
        #expect(r.gdb.contains("Breakpoint 1, compute (x=7)"), "\(r.gdb)")
        #expect(r.gdb.contains("$1 = 7") && r.gdb.contains("$2 = 7"), "\(r.gdb)")
        #expect(r.gdb.contains("in main"), "backtrace: \(r.gdb)")
        #expect(r.gdb.contains("rip            0x"), "\(r.gdb)")
        // x went from 7 to 20 through its register: 41 and exit status 3, not 15 and 0.
        #expect(r.output.contains("result=41"), "\(r.output)")
        #expect(r.status == 3, "\(r.output)")
        // solo5-hvt-debug tells gdb "SIGKILL" at every exit; we send the exit status.
        if !peer { #expect(r.gdb.contains("exited with code 03"), "\(r.gdb)") }
    }

    @Test func breakReadChangeARegisterAndContinueToExit() throws {
        let r = try debugSession(tender: [Harness.swiftlet, "hvt"], port: Self.port(0), guest: try Harness.guest("debugme"),
                                 commands: Self.changeARegister)
        checkChangeARegister(r, peer: false)
        #expect(r.output.contains("Connection from debugger at 127.0.0.1"))
    }

    @Test func theSameScriptUnderSolo5HvtDebug() throws {
        guard let peer = Harness.peerDebugTender else { return }
        let r = try debugSession(tender: [peer], port: Self.port(1), guest: try Harness.guest("debugme"),
                                 commands: Self.changeARegister)
        checkChangeARegister(r, peer: true)
    }

    @Test func stepNextHardwareBreakpointAndMemory() throws {
        let r = try debugSession(tender: [Harness.swiftlet, "hvt"], port: Self.port(2), guest: try Harness.guest("debugme"),
                                 commands: ["hbreak main", "continue", "next", "next", "print result",
                                            "delete", "set var counter = 100", "x/1dw &counter", "info registers fctrl",
                                            "continue"])
        #expect(r.gdb.contains("Hardware assisted breakpoint 1"), "\(r.gdb)")
        #expect(r.gdb.contains("Breakpoint 1, main"), "\(r.gdb)")
        #expect(r.gdb.contains("$1 = 15"), "\(r.gdb)")
        #expect(r.gdb.contains(":\t100"), "\(r.gdb)")
        #expect(r.gdb.contains("fctrl          0x37f"), "\(r.gdb)")
        // counter was 100 when main bumped it.
        #expect(r.output.contains("result=15") && r.output.contains("counter=101"), "\(r.output)")
        #expect(r.status == 0)
    }

    @Test func controlRegistersThroughTheTargetDescription() throws {
        let r = try debugSession(tender: [Harness.swiftlet, "hvt"], port: Self.port(8), guest: try Harness.guest("trap"),
                                 args: ["pf"], commands: ["break hvt_trap", "continue", "print/x $cr2", "print/x $efer",
                                                          "info registers eflags", "print $xmm15.uint128", "continue"])
        // The #PF's address, read from CR2 where the guest's handler stopped.
        #expect(r.gdb.contains("$1 = 0x7ffffffff000"), "\(r.gdb)")
        #expect(r.gdb.contains("$2 = 0xd00"), "\(r.gdb)")          // LME, LMA, NXE
        #expect(r.gdb.contains("eflags         0x"), "\(r.gdb)")
        #expect(r.gdb.contains("$3 = 0"), "\(r.gdb)")
        #expect(r.gdb.contains("exited with code 0377") && r.status == 255, "\(r.gdb)")
    }

    @Test func ctrlCInterruptsARunningGuest() throws {
        let r = try debugSession(tender: [Harness.swiftlet, "hvt"], port: Self.port(3), guest: try Harness.guest("debugme"),
                                 args: ["spin"], commands: ["continue", "print spinning", "set var spinning = 0", "continue"],
                                 interruptWhen: "spinning")
        #expect(r.gdb.contains("Program received signal SIGINT"), "\(r.gdb)")
        #expect(r.gdb.contains("$1 = 1"), "\(r.gdb)")
        #expect(r.gdb.contains("exited normally"), "\(r.gdb)")
        #expect(r.output.contains("result=15") && r.status == 0, "\(r.output)")
    }

    @Test func detachLetsTheGuestRunOn() throws {
        let r = try debugSession(tender: [Harness.swiftlet, "hvt"], port: Self.port(4), guest: try Harness.guest("debugme"),
                                 commands: ["break compute", "continue", "detach"])
        #expect(r.gdb.contains("Breakpoint 1, compute"), "\(r.gdb)")
        #expect(r.output.contains("Debugger detached; the guest runs on"), "\(r.output)")
        // The breakpoint's INT3 was taken out: the guest finishes as if never stopped.
        #expect(r.output.contains("result=15") && r.status == 0, "\(r.output)")
    }

    @Test func hostilePacketsGetErrorRepliesAndTheStubLivesOn() throws {
        let port = Self.port(5)
        let vm = try Harness.Background(Harness.swiftlet, ["hvt", "--mem=4", "--gdb", "--gdb-port=\(port)", try Harness.guest("debugme")])
        #expect(vm.waitFor("Waiting for a debugger"))
        let client = try RawClient(port: port)
        func framed(_ s: String) -> String {
            let sum = s.utf8.reduce(UInt8(0)) { $0 &+ $1 }
            return "$" + s + "#" + String(format: "%02x", sum)
        }
        #expect(client.exchange("$g#00").hasPrefix("-"))                                       // bad checksum
        #expect(client.exchange(framed("m" + String(repeating: "1", count: 30000))).contains("$E01"))   // too long
        #expect(client.exchange(framed("mffffffffff000000,10")).contains("$E14"))             // outside memory
        #expect(client.exchange(framed("m0,10")).contains("$E14"))                               // page 0 is unmapped
        #expect(client.exchange(framed("m100000,ffffffffffffffff")).count > 16000)             // capped, not huge
        #expect(client.exchange(framed("Mffffffffff000000,1:00")).contains("$E14"))
        #expect(client.exchange(framed("Z0,ffffffffff000000,1")).contains("$E01"))
        #expect(client.exchange(framed("Z3,1000,4")).contains("$#00"))                         // read watch: unsupported
        #expect(client.exchange(framed("qRandomStuff")).contains("$#00"))
        #expect(client.exchange(framed("G00")).contains("$OK"))
        #expect(client.exchange(framed("?")).contains("$S05"))                                 // still answering
        _ = client.exchange(framed("k"))
        #expect(vm.finish(timeout: 30) == 1)
        #expect(vm.output.contains("Debugger killed the guest"), "\(vm.output)")
        #expect(!vm.output.contains("Fatal error"))
    }

    @Test func badPortsAndAPortInUse() throws {
        let guest = try Harness.guest("debugme")
        for bad in ["70000", "-1", "abc"] {
            let r = Harness.hvt(["--gdb", "--gdb-port=\(bad)", guest])
            #expect(r.status == 1 && r.output.split(separator: "\n").count == 1, "\(r.output)")
            #expect(r.output.contains("Malformed argument to --gdb-port"))
        }
        let port = Self.port(6)
        let first = try Harness.Background(Harness.swiftlet, ["hvt", "--mem=4", "--gdb", "--gdb-port=\(port)", guest])
        #expect(first.waitFor("Waiting for a debugger"))
        let second = Harness.hvt(["--mem=4", "--gdb", "--gdb-port=\(port)", guest])
        #expect(second.status == 1 && second.output.split(separator: "\n").count == 1, "\(second.output)")
        #expect(second.output.contains("Address already in use"), "\(second.output)")
        // SIGTERM ends a tender that waits for its debugger.
        kill(first.process.processIdentifier, SIGTERM)
        #expect(first.finish(timeout: 20) == 1)
    }

    @Test func installedAsSolo5HvtDebugItTakesThePeersCommandLine() throws {
        let link = Harness.scratch.appendingPathComponent("bin-\(UUID().uuidString)/solo5-hvt-debug").path
        try FileManager.default.createDirectory(atPath: (link as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: Harness.swiftlet)
        let help = Harness.run(link, ["--help"])
        #expect(help.status == 1 && help.output.contains("--gdb-port=1234") && help.output.contains("--dumpcore=DIR"), "\(help.output)")
        let r = try debugSession(tender: [link], port: Self.port(7), guest: try Harness.guest("debugme"),
                                 commands: ["break compute", "continue", "print x", "continue"])
        #expect(r.gdb.contains("$1 = 7") && r.gdb.contains("exited normally"), "\(r.gdb)")
        #expect(r.status == 0 && r.output.contains("result=15"), "\(r.output)")
    }

    // MARK: Core dumps

    /// Runs `tender --mem=4 --dumpcore=DIR guest args` and returns status, output and the core's path.
    func dump(tender: [String], guest: String, args: [String]) throws -> (status: Int32, output: String, core: String?, dir: String) {
        let dir = Harness.scratch.appendingPathComponent("cores-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let r = Harness.run(tender[0], Array(tender.dropFirst()) + ["--mem=4", "--dumpcore=\(dir)", guest] + args)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return (r.status, r.output, files.first.map { dir + "/" + $0 }, dir)
    }

    func checkTrapCore(_ d: (status: Int32, output: String, core: String?, dir: String), guest: String, peer: Bool) {
        #expect(d.status == 255, "\(d.output)")
        guard let core = d.core else { Issue.record("no core in \(d.dir): \(d.output)"); return }
        #expect(core.range(of: #"/core\.solo5-hvt\.[0-9]+$"#, options: .regularExpression) != nil, "\(core)")
        #expect(d.output.contains("dumpcore: dumping guest core to: \(core)"), "\(d.output)")
        let g = Harness.run(Harness.gdb!, ["-batch", "-nx", "-ex", "backtrace", "-ex", "print/x $pc", "-ex", "print/x $sp", guest, core]).output
        // The faulting frame: the guest printed "rip=0x…" for the #PF; gdb shows the same pc.
        let rip = d.output.components(separatedBy: "rip=").dropFirst().first?.components(separatedBy: " ").first ?? "?"
        #expect(g.contains("#0  main") && g.contains("trap.c:"), "\(g)")
        #expect(g.contains("$1 = \(rip)"), "rip \(rip) in \(g)")
        // solo5-hvt-debug leaves the signal 0; ours says the trap was a segmentation fault.
        if !peer { #expect(g.contains("SIGSEGV"), "\(g)") }
        try? FileManager.default.removeItem(atPath: d.dir)
    }

    @Test func aTrapWritesACoreGDBOpensAtTheFault() throws {
        let guest = try Harness.guest("trap")
        let d = try dump(tender: [Harness.swiftlet, "hvt"], guest: guest, args: ["pf"])
        checkTrapCore(d, guest: guest, peer: false)
        #expect(d.output.contains("trap: vector 14") && d.output.contains("dumpcore: dumped"), "\(d.output)")
    }

    @Test func theSameTrapUnderSolo5HvtDebug() throws {
        guard let peer = Harness.peerDebugTender else { return }
        let guest = try Harness.guest("trap")
        checkTrapCore(try dump(tender: [peer], guest: guest, args: ["pf"]), guest: guest, peer: true)
    }

    @Test func anAbortWritesACoreAndACleanExitNone() throws {
        let abort = try dump(tender: [Harness.swiftlet, "hvt"], guest: try Harness.guest("abort"), args: [])
        #expect(abort.status == 255 && abort.core != nil, "\(abort.output)")
        if let core = abort.core {
            #expect(Harness.run(Harness.gdb!, ["-batch", "-nx", try Harness.guest("abort"), core]).output.contains("SIGABRT"))
        }
        let clean = try dump(tender: [Harness.swiftlet, "hvt"], guest: try Harness.guest("hello"), args: [])
        #expect(clean.status == 0 && clean.core == nil, "\(clean.output)")
        try? FileManager.default.removeItem(atPath: abort.dir)
        try? FileManager.default.removeItem(atPath: clean.dir)
    }

    @Test func badDumpFolders() throws {
        let guest = try Harness.guest("trap")
        for (dir, text) in [("/nonexistent/cores", "dumpcore: cannot open dir"), (guest, "dumpcore: cannot open dir")] {
            let r = Harness.hvt(["--dumpcore=\(dir)", guest])
            #expect(r.status == 1 && r.output.split(separator: "\n").count == 1, "\(r.output)")
            #expect(r.output.contains(text), "\(r.output)")
        }
    }

    /// A read-only folder and a full disk, on tmpfs mounts in a mount namespace of their own.
    @Test(.enabled(if: Harness.isRoot, "mounts need root"))
    func readOnlyFolderAndFullDisk() throws {
        let guest = try Harness.guest("trap")
        let dir = Harness.scratch.appendingPathComponent("mnt-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let readOnly = Harness.run("/usr/bin/unshare", ["-m", "sh", "-c",
            "mount -t tmpfs -o ro,size=1m tmpfs \(dir) && \(Harness.swiftlet) hvt --mem=4 --dumpcore=\(dir) \(guest) pf"])
        #expect(readOnly.status == 1 && readOnly.output.split(separator: "\n").count == 1, "\(readOnly.output)")
        #expect(readOnly.output.contains("dumpcore: dir not writable"), "\(readOnly.output)")
        // 16 KiB: the core's first pages fit, the rest does not.
        let full = Harness.run("/usr/bin/unshare", ["-m", "sh", "-c",
            "mount -t tmpfs -o size=16k tmpfs \(dir) && \(Harness.swiftlet) hvt --mem=4 --dumpcore=\(dir) \(guest) pf; echo status=$?; echo files:; ls -A \(dir)"])
        #expect(full.output.contains("status=1"), "\(full.output)")
        #expect(full.output.contains("No space left on device"), "\(full.output)")
        let files = full.output.components(separatedBy: "files:").last ?? ""
        #expect(files.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "nothing left behind: \(full.output)")
    }
}

/// A bare TCP client for the hostile-packet test: what no well-behaved gdb would send.
private final class RawClient {
    let fd: Int32
    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = UInt16(port).bigEndian
        a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let r = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else { throw HarnessError("connect: \(errno)") }
        var tv = timeval(tv_sec: 0, tv_usec: 500_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
    deinit { close(fd) }

    /// Sends `text` and collects what comes back until the stub is quiet for half a second.
    func exchange(_ text: String) -> String {
        _ = Array(text.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
