import DaemonProtocol
import Foundation
import VMSpec
import HTTPUnix
import Logging

/// The daemon's HTTP API (JSON over a Unix socket), routed onto a ``Supervisor``:
///
///     GET  /                         daemon info
///     GET  /vms                      all VMs
///     GET  /vms/NAME                 one VM
///     PUT  /vms/NAME/start           body optional: an ad-hoc VMDefinition (JSON)
///     PUT  /vms/NAME/stop?force=1&wait=1
///     PUT  /vms/NAME/pause, /resume
///     GET  /vms/NAME/logs?tail=N     console log (text)
///     GET  /vms/NAME/console         {"console_socket": PATH}
///     DELETE /vms/NAME               forget a stopped ad-hoc VM
///     GET  /metrics                  Prometheus text format 0.0.4
///     POST /reload                   re-read the config file
///
/// Errors are 400/404/405/409/500 with `{"fault_message": …}`; nothing a client sends can stop
/// the daemon.
public final class DaemonAPI: Sendable {
    public let supervisor: Supervisor
    /// Re-reads the config file for `POST /reload` (nil: no config file, reload refused).
    let reloadConfig: (@Sendable () -> Result<DaemonConfig, DaemonError>)?
    let logger: Logger
    public static let version = SwiftletVersion.daemonAPI

    public init(supervisor: Supervisor, logger: Logger, reloadConfig: (@Sendable () -> Result<DaemonConfig, DaemonError>)? = nil) {
        self.supervisor = supervisor
        self.logger = logger
        self.reloadConfig = reloadConfig
    }

    /// The server's handler.
    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        do {
            return try route(request)
        } catch {
            if error.status >= 500 {
                logger.error("request failed", metadata: ["method": "\(request.method)", "path": "\(request.path)", "error": "\(error.message)"])
            } else {
                logger.debug("request refused", metadata: ["method": "\(request.method)", "path": "\(request.path)", "status": "\(error.status)",
                                                           "error": "\(error.message)"])
            }
            var response = HTTPResponse.json(error.status, JSON.fault(error.message))
            if !error.allowedMethods.isEmpty { response.headers = [("Allow", error.allowedMethods.joined(separator: ", "))] }
            return response
        }
    }

    private func route(_ request: HTTPRequest) throws(DaemonError) -> HTTPResponse {
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        let method = request.method
        switch parts.count {
        case 0:
            try allow(method, "GET", request)
            struct Info: Encodable { var app_name: String; var version: String; var vms: Int; var state_dir: String }
            return .json(200, JSON.encode(Info(app_name: "swiftletd", version: Self.version, vms: supervisor.list().count,
                                               state_dir: supervisor.options.stateDirectory)))
        case 1 where parts[0] == "vms":
            try allow(method, "GET", request)
            return .json(200, JSON.encode(VMList(vms: supervisor.list())))
        case 1 where parts[0] == "metrics":
            try allow(method, "GET", request)
            return .text(200, Prometheus.render(supervisor.metrics()), contentType: Prometheus.contentType)
        case 1 where parts[0] == "reload":
            try allow(method, "POST", request)
            guard let reloadConfig else { throw DaemonError(409, "the daemon was started without a config file") }
            let config: DaemonConfig
            switch reloadConfig() {
            case .success(let c): config = c
            case .failure(let error): throw DaemonError(400, error.message)
            }
            supervisor.reload(config: config)
            return .json(200, JSON.encode(VMList(vms: supervisor.list())))
        case 2 where parts[0] == "vms":
            let name = parts[1]
            if method == "DELETE" {
                try supervisor.remove(name: name)
                return .noContent
            }
            try allow(method, "GET", request, alsoServed: ["DELETE"])
            return .json(200, JSON.encode(try supervisor.status(name: name)))
        case 3 where parts[0] == "vms":
            let name = parts[1]
            switch parts[2] {
            case "start":
                try allow(method, "PUT", request)
                var definition: VMDefinition?
                if !request.body.isEmpty {
                    do {
                        definition = try JSONDecoder().decode(VMDefinition.self, from: Data(request.body))
                    } catch let error as DecodingError {
                        throw DaemonError(400, "bad VM definition: \(describe(error))")
                    } catch {
                        throw DaemonError(400, "bad VM definition: \(error.localizedDescription)")
                    }
                }
                return .json(200, JSON.encode(try supervisor.start(name: name, definition: definition)))
            case "stop":
                try allow(method, "PUT", request)
                let force = try flag(request, "force")
                let wait = try flag(request, "wait")
                return .json(200, JSON.encode(try supervisor.stop(name: name, force: force, wait: wait)))
            case "pause", "resume":
                try allow(method, "PUT", request)
                return .json(200, JSON.encode(try supervisor.setPaused(name: name, parts[2] == "pause")))
            case "logs":
                try allow(method, "GET", request)
                var tail: Int?
                if let text = request.queryValue("tail") {
                    guard let n = Int(text), n >= 0 else { throw DaemonError(400, "tail must be a number of bytes, not '\(text)'") }
                    tail = n
                }
                return HTTPResponse(status: 200, contentType: "text/plain; charset=utf-8", body: try supervisor.logs(name: name, tail: tail))
            case "console":
                try allow(method, "GET", request)
                return .json(200, JSON.encode(ConsoleInfo(consoleSocket: try supervisor.consoleSocket(name: name))))
            default:
                throw DaemonError(404, "no such resource: \(request.path)")
            }
        default:
            throw DaemonError(404, "no such resource: \(request.path)")
        }
    }

    /// `expected` is the method this branch serves; `alsoServed` the path's others, handled before.
    private func allow(_ method: String, _ expected: String, _ request: HTTPRequest, alsoServed: [String] = []) throws(DaemonError) {
        guard method == expected else {
            var error = DaemonError(405, "\(method) is not allowed on \(request.path) (use \(([expected] + alsoServed).joined(separator: " or ")))")
            error.allowedMethods = [expected] + alsoServed
            throw error
        }
        if expected == "GET" && !request.body.isEmpty { throw DaemonError(400, "GET \(request.path) takes no body") }
    }

    /// `?force=1`, `?force=true`, `?force` → true; absent, `0`, `false` → false; anything else → 400.
    private func flag(_ request: HTTPRequest, _ name: String) throws(DaemonError) -> Bool {
        guard let value = request.queryValue(name) else { return false }
        switch value {
        case "", "1", "true", "yes": return true
        case "0", "false", "no": return false
        default: throw DaemonError(400, "\(name) must be 1 or 0, not '\(value)'")
        }
    }
}
