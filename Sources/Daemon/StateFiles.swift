import DaemonProtocol
import Foundation

/// The files of one VM in the state directory. The sockets, pid file and exit file are the
/// contract with the `swiftlet api` process; `NAME.json` is what a restarted daemon reads back.
public struct VMPaths: Sendable, Equatable {
    public let directory: String
    public let name: String

    public init(directory: String, name: String) { self.directory = directory; self.name = name }

    func file(_ suffix: String) -> String { "\(directory)/\(name).\(suffix)" }
    /// The VM's Firecracker API socket.
    public var apiSocket: String { file("sock") }
    /// The console socket (`ctl console` connects here).
    public var consoleSocket: String { file("console") }
    /// Everything the guest wrote to its console.
    public var consoleLog: String { file("log") }
    /// Written by the VM process when the VM ends normally: the exit status.
    public var exitFile: String { file("exit") }
    /// stdout + stderr of the VM process (its own error messages).
    public var stderrFile: String { file("stderr") }
    public var pidFile: String { file("pid") }
    public var stateFile: String { file("json") }
    /// The VM process's jail root (`--jail`): an empty directory on the host; what the VM sees
    /// there lives in its own mount namespace (docs/jail.md).
    public var jailDirectory: String { file("jail") }

    /// The longest path a VM name of 64 bytes gives must fit in sockaddr_un's 108 bytes.
    public static func checkDirectory(_ directory: String) throws(DaemonError) {
        let longest = VMPaths(directory: directory, name: String(repeating: "x", count: 64)).consoleSocket
        guard longest.utf8.count < 108 else {
            throw DaemonError(400, "state directory \(directory): too long for Unix socket paths (at most \(107 - 64 - 9) bytes)")
        }
    }
}

/// What the daemon remembers about one VM across its own restarts, stored as `NAME.json`.
public struct VMRecord: Codable, Sendable, Equatable {
    public var name: String
    /// The definition the VM was (last) started with.
    public var definition: VMDefinition
    /// Started with `ctl start NAME --kernel …` rather than from the config file.
    public var adHoc: Bool
    public var state: VMState
    public var pid: Int32?
    /// /proc/PID/stat start time (clock ticks after boot): pid + this identify the process.
    public var startTicks: UInt64?
    /// Seconds since 1970 when the VM was started (for uptime).
    public var startedAt: Double?
    public var exitStatus: Int32?
    public var signal: Int32?
    public var crashes: Int
    public var lastError: String?

    public init(name: String, definition: VMDefinition, adHoc: Bool, state: VMState, pid: Int32? = nil, startTicks: UInt64? = nil,
                startedAt: Double? = nil, exitStatus: Int32? = nil, signal: Int32? = nil, crashes: Int = 0, lastError: String? = nil) {
        self.name = name; self.definition = definition; self.adHoc = adHoc; self.state = state; self.pid = pid
        self.startTicks = startTicks; self.startedAt = startedAt; self.exitStatus = exitStatus; self.signal = signal
        self.crashes = crashes; self.lastError = lastError
    }

    enum CodingKeys: String, CodingKey {
        case name, definition, adHoc = "ad_hoc", state, pid, startTicks = "start_ticks", startedAt = "started_at"
        case exitStatus = "exit_status", signal, crashes, lastError = "last_error"
    }

    /// Writes the record atomically (a crash mid-write never leaves half a file).
    public func save(to path: String) throws {
        try JSON.data(self, pretty: true).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    public static func load(from path: String) throws -> VMRecord {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let decoder = JSONDecoder()
        decoder.userInfo[.verifyFiles] = false
        return try decoder.decode(VMRecord.self, from: data)
    }
}

