import Foundation
import VMSpec

/// One VM as `GET /vms` and `GET /vms/NAME` report it (and `swiftlet ctl status` prints it).
public struct VMStatus: Codable, Sendable, Equatable {
    public var name: String
    public var state: VMState
    public var pid: Int32?
    public var vcpus: Int
    public var memoryMiB: Int
    public var uptimeSeconds: Double?
    /// The VM process's exit status (stopped VMs).
    public var exitStatus: Int32?
    /// The signal that ended the VM process, when known (crashed VMs; 9 after a force stop).
    public var signal: Int32?
    /// How many times this VM crashed since the daemon (first) started it.
    public var crashes: Int
    public var kernel: String
    public var autostart: Bool
    /// Defined by `ctl start NAME --kernel …` rather than the config file.
    public var adHoc: Bool
    /// Why the last start failed, or the VM process's last error line.
    public var lastError: String?

    public init(name: String, state: VMState, pid: Int32? = nil, vcpus: Int, memoryMiB: Int, uptimeSeconds: Double? = nil,
                exitStatus: Int32? = nil, signal: Int32? = nil, crashes: Int = 0, kernel: String, autostart: Bool = false,
                adHoc: Bool = false, lastError: String? = nil) {
        self.name = name; self.state = state; self.pid = pid; self.vcpus = vcpus; self.memoryMiB = memoryMiB
        self.uptimeSeconds = uptimeSeconds; self.exitStatus = exitStatus; self.signal = signal; self.crashes = crashes
        self.kernel = kernel; self.autostart = autostart; self.adHoc = adHoc; self.lastError = lastError
    }

    enum CodingKeys: String, CodingKey {
        case name, state, pid, vcpus, memoryMiB = "memory_mib", uptimeSeconds = "uptime_seconds", exitStatus = "exit_status"
        case signal, crashes, kernel, autostart, adHoc = "ad_hoc", lastError = "last_error"
    }

    /// `running`, `stopped (exit 0)`, `crashed (signal 9)`: the STATE column of `ctl status`.
    public var stateText: String {
        switch state {
        case .stopped, .crashed:
            if let signal { return "\(state.rawValue) (signal \(signal))" }
            if let exitStatus { return "\(state.rawValue) (exit \(exitStatus))" }
            return state.rawValue
        default:
            return state.rawValue
        }
    }
}

/// `GET /vms`.
public struct VMList: Codable, Sendable {
    public var vms: [VMStatus]
    public init(vms: [VMStatus]) { self.vms = vms }
}

/// `GET /vms/NAME/console`.
public struct ConsoleInfo: Codable, Sendable {
    public var consoleSocket: String
    public init(consoleSocket: String) { self.consoleSocket = consoleSocket }
    enum CodingKeys: String, CodingKey { case consoleSocket = "console_socket" }
}

/// A VM process's `GET /swiftlet/metrics` answer. Decoded leniently: the VM side may add fields
/// and exit reasons, which simply show up as more series.
public struct VMProcessMetrics: Decodable, Sendable, Equatable {
    public var exits: [String: UInt64]
    public var devices: [Device]

    /// One device's counters: the record the VM process writes (VMSpec).
    public typealias Device = DeviceStatistics

    public init(exits: [String: UInt64] = [:], devices: [Device] = []) { self.exits = exits; self.devices = devices }

    enum CodingKeys: String, CodingKey { case exits, devices }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        exits = try c.decodeIfPresent([String: UInt64].self, forKey: .exits) ?? [:]
        devices = try c.decodeIfPresent([Device].self, forKey: .devices) ?? []
    }
}

/// The error body every API in this project uses (Firecracker's shape).
struct Fault: Codable {
    var faultMessage: String
    enum CodingKeys: String, CodingKey { case faultMessage = "fault_message" }
}

/// JSON helpers with the project's conventions (sorted keys so output is stable for tests).
public enum JSON {
    /// `value` as JSON: sorted keys, slashes unescaped, indented when `pretty`.
    public static func data<T: Encodable>(_ value: T, pretty: Bool = false) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted]
                                          : [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value)
    }

    package static func encode<T: Encodable>(_ value: T) -> String {
        guard let data = try? data(value) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    package static func fault(_ message: String) -> String { encode(Fault(faultMessage: message)) }

    /// The `fault_message` of an error body, or the body itself when it is not one.
    package static func faultMessage(_ body: [UInt8]) -> String {
        if let fault = try? JSONDecoder().decode(Fault.self, from: Data(body)) { return fault.faultMessage }
        let text = String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "no details" : text
    }
}

/// The lifecycle of a supervised VM.
public enum VMState: String, Codable, Sendable, CaseIterable {
    /// The process is being spawned and configured (until InstanceStart is answered).
    case starting
    case running
    case paused
    /// Asked to stop; the process has not exited yet.
    case stopping
    /// Never started, or the process exited (see the exit status; a force stop shows signal 9).
    case stopped
    /// Killed by a signal nobody asked for, or vanished without writing its exit file.
    case crashed

    /// Whether a process is (or should be) alive.
    public var isLive: Bool { self == .starting || self == .running || self == .paused || self == .stopping }
}
