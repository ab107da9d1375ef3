import Foundation
import Testing

/// Shared pieces for tests that run the built `swiftlet` binary against real guests.
enum Harness {
    /// The repository root, found from this file's path.
    static let root: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The binary under test: $SWIFTLET_BIN, else the debug build next to these tests.
    static let swiftlet: String = ProcessInfo.processInfo.environment["SWIFTLET_BIN"]
        ?? root.appendingPathComponent(".build/debug/swiftlet").path

    /// Under `scripts/sanitize … all` (SWIFTLET_SANITIZER=1) the VM processes the tests start
    /// run without the seccomp filter: the sanitizer runtime's report and exit work make calls
    /// the filter kills, which would hide the report (docs/hardening.md).
    static let sanitizerArguments: [String] = ProcessInfo.processInfo.environment["SWIFTLET_SANITIZER"] == "1" ? ["--no-seccomp"] : []

    /// `args` for a run of `path`: under a sanitizer, a VM command of ours (`run`, `hvt`) gets
    /// `--no-seccomp` after its name, as `swiftlet api` gets `sanitizerArguments`.
    static func arguments(_ path: String, _ args: [String]) -> [String] {
        guard !sanitizerArguments.isEmpty, path == swiftlet, let command = args.first, ["run", "hvt"].contains(command) else { return args }
        return [command] + sanitizerArguments + args.dropFirst()
    }

    static let hasKVM = FileManager.default.isReadableFile(atPath: "/dev/kvm")
        && FileManager.default.isWritableFile(atPath: "/dev/kvm")
    static let isRoot = getuid() == 0
    /// This machine's software KVM (kvm_pvm) emulates CPL0 guest code and cannot emulate SSE.
    static let isPVM = FileManager.default.fileExists(atPath: "/sys/module/kvm_pvm")

    /// A scratch directory for this test process. Those of earlier test processes that are gone
    /// are removed first (no hook runs after the last test, and they held gigabytes of images).
    static let scratch: URL = {
        let files = FileManager.default
        let tmp = files.temporaryDirectory
        for name in (try? files.contentsOfDirectory(atPath: tmp.path)) ?? [] where name.hasPrefix("swiftlet-it-") {
            guard let pid = Int32(name.dropFirst("swiftlet-it-".count)), pid != getpid(),
                  kill(pid, 0) != 0, errno == ESRCH else { continue }
            try? files.removeItem(at: tmp.appendingPathComponent(name))
        }
        let dir = tmp.appendingPathComponent("swiftlet-it-\(getpid())")
        try? files.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }()

    /// Builds every test unikernel once per process with guests/hvt/build.sh (host gcc).
    static let guests: Result<URL, any Error> = {
        let out = scratch.appendingPathComponent("guests")
        let r = run("/bin/bash", [root.appendingPathComponent("guests/hvt/build.sh").path, out.path], timeout: 120)
        guard r.status == 0 else { return .failure(HarnessError("guest build failed: \(r.output)")) }
        return .success(out)
    }()

    /// Builds the freestanding PVH guests (guests/pvh) once per process.
    static let pvhGuests: Result<URL, any Error> = {
        let out = scratch.appendingPathComponent("pvh")
        let r = run("/bin/bash", [root.appendingPathComponent("guests/pvh/build.sh").path, out.path], timeout: 120)
        guard r.status == 0 else { return .failure(HarnessError("PVH guest build failed: \(r.output)")) }
        return .success(out)
    }()

    static func pvhGuest(_ name: String) throws -> String {
        try pvhGuests.get().appendingPathComponent("\(name).elf").path
    }

    /// A test unikernel built for hvt ABI 2 (Solo5 0.8.0 to v0.12.1), or for ABI 1 with `abi: 1`.
    static func guest(_ name: String, abi: Int = 2) throws -> String {
        let dir = try guests.get()
        return (abi == 1 ? dir.appendingPathComponent("abi1") : dir).appendingPathComponent("\(name).hvt").path
    }

    /// Solo5 v0.12.1's own tender and a real unikernel, where this checkout sits beside the
    /// team's shared folder (developer machines and CI); tests that compare against the real
    /// thing skip without it (a user's clone has none).
    static let peers = root.deletingLastPathComponent().appendingPathComponent("shared/peers")
    static let peerTender: String? = {
        let path = peers.appendingPathComponent("solo5-hvt").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }()

    /// solo5-hvt-debug v0.12.1 (gdb and dumpcore modules), where ../shared/peers has it.
    static let peerDebugTender: String? = {
        let path = peers.appendingPathComponent("solo5-hvt-debug").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }()

    /// Debian's gdb, which the --gdb and --dumpcore tests drive.
    static let gdb: String? = FileManager.default.isExecutableFile(atPath: "/usr/bin/gdb") ? "/usr/bin/gdb" : nil

    /// Runs `body` inside a fresh network namespace holding tap interfaces `taps` (up, with
    /// 10.99.N.1/24 on tap N), removed afterwards; `body` gets the namespace's name.
    static func withTapNamespace<T>(taps: [String] = ["tap0"], mtu: Int? = nil, _ body: (String) throws -> T) throws -> T {
        let ns = "swlt\(getpid() % 100000)x\(UInt32.random(in: 0..<100000))"
        func ip(_ args: String...) -> Outcome { run("/usr/sbin/ip", args, timeout: 20) }
        _ = ip("netns", "del", ns)
        guard ip("netns", "add", ns).status == 0 else { throw HarnessError("cannot create namespace \(ns)") }
        defer { _ = ip("netns", "del", ns) }
        for (i, tap) in taps.enumerated() {
            _ = ip("netns", "exec", ns, "ip", "tuntap", "add", tap, "mode", "tap")
            _ = ip("netns", "exec", ns, "ip", "addr", "add", "10.99.\(i).1/24", "dev", tap)
            if let mtu { _ = ip("netns", "exec", ns, "ip", "link", "set", tap, "mtu", String(mtu)) }
            guard ip("netns", "exec", ns, "ip", "link", "set", tap, "up").status == 0 else {
                throw HarnessError("cannot set up \(tap) in \(ns)")
            }
        }
        return try body(ns)
    }

    /// A process started in the background with its output going to a file, read while it runs.
    final class Background {
        let process = Process()
        let log: String

        init(_ path: String, _ args: [String], stdin: FileHandle = FileHandle.nullDevice) throws {
            log = Harness.scratch.appendingPathComponent("bg-\(UUID().uuidString).log").path
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = Harness.arguments(path, args)
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = stdin
            try process.run()
            try handle.close()
        }

        deinit {
            if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
            unlink(log)
        }

        var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

        /// Waits up to `timeout` seconds for `text` in the output; false if the process ended first.
        func waitFor(_ text: String, timeout: Double = 20) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if output.contains(text) { return true }
                if !process.isRunning { return output.contains(text) }
                usleep(10_000)
            }
            return false
        }

        /// Waits up to `timeout` seconds for the exit; SIGKILL past it. Returns the status
        /// (128+N for signal N).
        @discardableResult
        func finish(timeout: Double = 60) -> Int32 {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        }
    }

    /// A result of running a process: exit status (128+N for signal N) and merged stdout+stderr.
    struct Outcome { var status: Int32; var output: String }

    /// Runs `path args` with a timeout (killed with SIGKILL past it).
    static func run(_ path: String, _ args: [String], timeout: Double = 60) -> Outcome {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments(path, args)
        let outFile = scratch.appendingPathComponent("out-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: outFile.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: outFile) }
        guard let handle = try? FileHandle(forWritingTo: outFile) else { return Outcome(status: -1, output: "cannot open output") }
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { return Outcome(status: -1, output: "cannot start \(path): \(error)") }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(2000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        try? handle.close()
        let text = (try? String(contentsOf: outFile, encoding: .utf8)) ?? ""
        let status = p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus
        return Outcome(status: status, output: text)
    }

    /// Polls `condition` every `interval` seconds until it holds or `timeout` seconds pass.
    static func eventually(timeout: Double = 10, interval: Double = 0.05, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(useconds_t(interval * 1_000_000))
        }
        return condition()
    }

    /// Runs `swiftlet hvt args`.
    static func hvt(_ args: [String], timeout: Double = 60) -> Outcome {
        run(swiftlet, ["hvt"] + args, timeout: timeout)
    }

    /// A zero-filled file of `size` bytes in the scratch directory.
    static func disk(_ name: String, size: Int) -> String {
        let path = scratch.appendingPathComponent(name).path
        _ = FileManager.default.createFile(atPath: path, contents: Data(count: size))
        return path
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
