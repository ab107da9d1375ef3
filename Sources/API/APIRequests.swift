import VMSpec
import VMM
import Logs

/// Bodies of the Firecracker API requests that are not part of the config file. Every one is
/// decoded strictly: an unknown field is a 400, as in Firecracker.
public enum APIRequests {
    /// `PUT /actions`.
    public struct Action: Decodable, Sendable, Equatable {
        public enum Kind: String, Sendable, CaseIterable { case instanceStart = "InstanceStart", sendCtrlAltDel = "SendCtrlAltDel", flushMetrics = "FlushMetrics" }
        public var actionType: Kind
        enum CodingKeys: String, CodingKey, CaseIterable { case actionType = "action_type" }
        public init(from decoder: any Decoder) throws {
            let c = try strictContainer(decoder, CodingKeys.self)
            let text = try c.decode(String.self, forKey: .actionType)
            guard let kind = Kind(rawValue: text) else {
                throw DecodingError.dataCorruptedError(forKey: .actionType, in: c,
                    debugDescription: "'\(text)' is not one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            actionType = kind
        }
    }

    /// `PATCH /vm`.
    public struct VMState: Decodable, Sendable, Equatable {
        public enum State: String, Sendable, CaseIterable { case paused = "Paused", resumed = "Resumed" }
        public var state: State
        enum CodingKeys: String, CodingKey, CaseIterable { case state }
        public init(from decoder: any Decoder) throws {
            let c = try strictContainer(decoder, CodingKeys.self)
            let text = try c.decode(String.self, forKey: .state)
            guard let s = State(rawValue: text) else {
                throw DecodingError.dataCorruptedError(forKey: .state, in: c, debugDescription: "'\(text)' is not Paused or Resumed")
            }
            state = s
        }
    }

    /// `PUT /logger`.
    public struct Logger: Decodable, Sendable, Equatable {
        public var logPath: String?
        public var level: LogThreshold?
        public var showLevel: Bool?
        public var showLogOrigin: Bool?
        public var module: String?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case logPath = "log_path", level, showLevel = "show_level", showLogOrigin = "show_log_origin", module
        }
        public init(from decoder: any Decoder) throws {
            let c = try strictContainer(decoder, CodingKeys.self)
            logPath = try c.decodePathIfPresent(.logPath)
            if let text = try c.decodeIfPresent(String.self, forKey: .level) {
                guard let l = LogThreshold(name: text) else {
                    throw DecodingError.dataCorruptedError(forKey: .level, in: c,
                        debugDescription: "'\(text)' is not one of Off, Error, Warning, Info, Debug, Trace")
                }
                level = l
            }
            showLevel = try c.decodeIfPresent(Bool.self, forKey: .showLevel)
            showLogOrigin = try c.decodeIfPresent(Bool.self, forKey: .showLogOrigin)
            module = try c.decodeIfPresent(String.self, forKey: .module)
        }
    }

    /// `PUT /metrics`.
    public struct Metrics: Decodable, Sendable, Equatable {
        public var metricsPath: String
        enum CodingKeys: String, CodingKey, CaseIterable { case metricsPath = "metrics_path" }
        public init(from decoder: any Decoder) throws {
            let c = try strictContainer(decoder, CodingKeys.self)
            metricsPath = try c.decodePath(.metricsPath)
        }
    }
}
