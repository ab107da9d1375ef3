import Foundation
import Testing

/// Shared pieces for tests that run the built `swiftlet` binary against real guests.
enum Harness {
    /// The repository root, found from this file's path.
    static let root: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The binary under test: $SWIFTLET_BIN, else the debug build next to these tests.
    static let swiftlet: String = ProcessInfo.processInfo.environment["SWIFTLET_BIN"]
        ?? root.appendingPathComponent(".build/debug/swiftlet").path

    static let hasKVM = FileManager.default.isReadableFile(atPath: "/dev/kvm")
        && FileManager.default.isWritableFile(atPath: "/dev/kvm")
    static let isRoot = getuid() == 0
    /// This machine's software KVM (kvm_pvm) emulates CPL0 guest code and cannot emulate SSE.
    static let isPVM = FileManager.default.fileExists(atPath: "/sys/module/kvm_pvm")

    /// A scratch directory for this test process.
    static let scratch: URL = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swiftlet-it-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
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

    static func guest(_ name: String) throws -> String {
        try guests.get().appendingPathComponent("\(name).hvt").path
    }

    /// A result of running a process: exit status (128+N for signal N) and merged stdout+stderr.
    struct Outcome { var status: Int32; var output: String }

    /// Runs `path args` with a timeout (killed with SIGKILL past it).
    static func run(_ path: String, _ args: [String], timeout: Double = 60) -> Outcome {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let outFile = scratch.appendingPathComponent("out-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: outFile.path, contents: nil)
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

    /// Runs `swiftlet hvt args`.
    static func hvt(_ args: [String], timeout: Double = 60) -> Outcome {
        run(swiftlet, ["hvt"] + args, timeout: timeout)
    }

    /// A zero-filled file of `size` bytes in the scratch directory.
    static func disk(_ name: String, size: Int) -> String {
        let path = scratch.appendingPathComponent(name).path
        FileManager.default.createFile(atPath: path, contents: Data(count: size))
        return path
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
