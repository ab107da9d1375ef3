import Foundation
import Testing

/// Nothing a guest was told is on disk may be lost in a power cut: a virtio-blk FLUSH, and every
/// Solo5 hvt block write (Solo5 has no flush), completes to the guest only after fdatasync has
/// returned. SIGKILL alone cannot test this (the page cache survives it), so these tests record
/// the VMM's system calls with strace (ptrace, the real tool) and check their order; strace also
/// delays every fdatasync's return by `delay`, so a completion published before the sync returns
/// would show in the trace as guest activity during the delay.
@Suite(.serialized) struct DurabilityTests {
    /// How long strace holds each fdatasync/fsync before letting it return.
    static let delay = 0.3

    /// One system call from strace's `-f -ttt` log: thread, entry time, name, arguments (raw).
    struct Call {
        var thread: Int
        var time: Double
        var name: String
        var arguments: String
    }

    /// Runs swiftlet under strace (fdatasync and fsync delayed on exit) and returns its outcome
    /// and the calls that matter here. Unfinished/resumed pairs are merged into one call at its
    /// entry time.
    static func traced(_ args: [String]) throws -> (Harness.Outcome, [Call]) {
        let log = Harness.scratch.appendingPathComponent("durability-\(UUID().uuidString).strace").path
        let micros = Int(delay * 1_000_000)
        let r = Harness.run("/usr/bin/strace", [
            "-f", "-qq", "-ttt", "-s", "64", "-o", log,
            "-e", "trace=openat,pwrite64,pwritev,pwritev2,fdatasync,fsync,write,ioctl",
            "--inject=fdatasync,fsync:delay_exit=\(micros)",
            Harness.swiftlet,
        ] + args, timeout: 120)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        try? FileManager.default.removeItem(atPath: log)
        var calls: [Call] = []
        var pending: [Int: Int] = [:]  // thread -> index of its unfinished call
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 2)
            guard fields.count == 3, let thread = Int(fields[0]), let time = Double(fields[1]) else { continue }
            let rest = String(fields[2])
            if rest.hasPrefix("<... ") {
                // "<... NAME resumed>ARGS": the end of the thread's pending call.
                if let i = pending.removeValue(forKey: thread), let end = rest.range(of: "resumed>") {
                    calls[i].arguments += rest[end.upperBound...]
                }
                continue
            }
            guard let paren = rest.firstIndex(of: "(") else { continue }
            var arguments = String(rest[rest.index(after: paren)...])
            if arguments.hasSuffix(" <unfinished ...>") {
                arguments.removeLast(" <unfinished ...>".count)
                pending[thread] = calls.count
            }
            calls.append(Call(thread: thread, time: time, name: String(rest[..<paren]), arguments: arguments))
        }
        return (r, calls)
    }

    /// The descriptor the VMM opened `path` on.
    static func descriptor(of path: String, in calls: [Call]) -> String? {
        guard let open = calls.last(where: { $0.name == "openat" && $0.arguments.contains("\"\(path)\"") }),
              let result = open.arguments.split(separator: "=").last else { return nil }
        return result.trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init)
    }

    static func isWrite(_ call: Call, fd: String) -> Bool {
        ["pwrite64", "pwritev", "pwritev2"].contains(call.name) && call.arguments.hasPrefix("\(fd),")
    }

    /// An fdatasync or fsync of `fd`, finished or not (a sync still running when the process
    /// ended has only its entry in the trace).
    static func isSync(_ call: Call, fd: String) -> Bool {
        (call.name == "fdatasync" || call.name == "fsync") && (call.arguments == fd || call.arguments.hasPrefix("\(fd))"))
    }

    /// hvt: the vCPU thread handles BLOCK_WRITE between two KVM_RUNs; after every write to the
    /// disk, an fdatasync of the disk must come before that thread enters the guest again.
    @Test func hvtBlockWriteReturnsOnlyAfterFdatasync() throws {
        try #require(Harness.hasKVM && FileManager.default.isExecutableFile(atPath: "/usr/bin/strace"),
                     "needs /dev/kvm and strace")
        let disk = Harness.disk("durability-hvt.img", size: 64 << 10)
        let (r, calls) = try Self.traced(["hvt", "--block:storage=\(disk)", try Harness.guest("blk")])
        #expect(r.status == 0 && r.output.contains("SUCCESS"), "\(r.output)")
        let fd = try #require(Self.descriptor(of: disk, in: calls), "the disk's open is in the trace")
        var writes = 0
        for (i, call) in calls.enumerated() where Self.isWrite(call, fd: fd) {
            writes += 1
            let later = calls[(i + 1)...].filter { $0.thread == call.thread }
            let synced = later.firstIndex { Self.isSync($0, fd: fd) }
            let reentered = later.firstIndex { $0.name == "ioctl" && $0.arguments.contains("KVM_RUN") }
            #expect(synced != nil && (reentered == nil || synced! < reentered!),
                    "block write at \(call.time) reached the guest before fdatasync(\(fd))")
        }
        #expect(writes > 0, "the guest wrote to the disk")
    }

    /// virtio-blk: the guest (guests/pvh/blk.c) prints "blk: flushed" as soon as it sees its
    /// FLUSH complete. That must come after the disk's fdatasync returned, i.e. at least `delay`
    /// after the fdatasync began; a device that published the completion first would let the
    /// guest print during the delay.
    @Test func virtioFlushCompletesOnlyAfterFdatasync() throws {
        try #require(Harness.hasKVM && FileManager.default.isExecutableFile(atPath: "/usr/bin/strace"),
                     "needs /dev/kvm and strace")
        let disk = Harness.disk("durability-virtio.img", size: 1 << 20)
        let (r, calls) = try Self.traced(["run", "--kernel", try Harness.pvhGuest("blk"), "--disk", disk])
        #expect(r.status == 0 && r.output.contains("blk: flushed") && r.output.contains("SUCCESS"), "\(r.output)")
        let fd = try #require(Self.descriptor(of: disk, in: calls), "the disk's open is in the trace")
        let syncs = calls.filter { Self.isSync($0, fd: fd) }
        try #require(!syncs.isEmpty, "FLUSH reached the disk as fdatasync")
        // The console's bytes with the time each was written (the serial port writes byte by byte
        // or in runs; either way the first byte of the line is what counts).
        var console: [UInt8] = []
        var times: [Double] = []
        for call in calls where call.name == "write" && !call.arguments.hasPrefix("\(fd),") {
            guard let text = Self.stringArgument(call.arguments) else { continue }
            console += text.utf8
            times += Array(repeating: call.time, count: text.utf8.count)
        }
        let line = Array("blk: flushed".utf8)
        let start = try #require(console.indices.first { console[$0...].starts(with: line) },
                                 "the console line is in the trace: \(String(decoding: console, as: UTF8.self))")
        let printed = times[start]
        let firstSync = syncs[0].time
        #expect(printed >= firstSync + Self.delay,
                "the guest saw FLUSH complete \(printed - firstSync) s after fdatasync began (it returns after \(Self.delay) s)")
    }

    /// The string argument of `write(FD, "TEXT", N)` as strace escapes it (\n, \t, \", \\, octal).
    static func stringArgument(_ arguments: String) -> String? {
        guard let open = arguments.firstIndex(of: "\"") else { return nil }
        var out = ""
        var i = arguments.index(after: open)
        while i < arguments.endIndex {
            let c = arguments[i]
            if c == "\"" { return out }
            if c == "\\" {
                i = arguments.index(after: i)
                guard i < arguments.endIndex else { return nil }
                switch arguments[i] {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "0"..."7":
                    var digits = ""
                    while i < arguments.endIndex, digits.count < 3, ("0"..."7").contains(arguments[i]) {
                        digits.append(arguments[i]); i = arguments.index(after: i)
                    }
                    out.unicodeScalars.append(Unicode.Scalar(UInt8(digits, radix: 8) ?? 0))
                    continue
                default: out.append(arguments[i])
                }
            } else {
                out.append(c)
            }
            i = arguments.index(after: i)
        }
        return nil
    }
}
