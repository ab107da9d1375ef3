import Foundation
import HTTPUnix
import Host

/// A blocking client of swiftletd's API (used by `swiftlet ctl`, the tests and benchmarks). Every
/// error is one line: the daemon's `fault_message`, or why the daemon could not be reached.
public struct DaemonClient: Sendable {
    public static let defaultSocket = "/run/swiftletd.sock"
    public let socketPath: String
    /// Seconds to wait for an answer (a start or a waited stop can take a while).
    public var timeoutSeconds: Int64 = 60

    public init(socketPath: String = DaemonClient.defaultSocket) { self.socketPath = socketPath }

    /// A failed call: `status` is 0 when the daemon could not be reached.
    public func list() throws(DaemonError) -> [VMStatus] { try decode(VMList.self, call("GET", "/vms")).vms }

    public func status(_ name: String) throws(DaemonError) -> VMStatus { try decode(VMStatus.self, call("GET", "/vms/\(name)")) }

    /// Starts the configured VM `name`, or an ad-hoc one described by `definition`.
    @discardableResult
    public func start(_ name: String, definition: VMDefinition? = nil) throws(DaemonError) -> VMStatus {
        var body: [UInt8]?
        if let definition { body = Array(JSON.encode(definition).utf8) }
        return try decode(VMStatus.self, call("PUT", "/vms/\(name)/start", body: body))
    }

    @discardableResult
    public func stop(_ name: String, force: Bool = false, wait: Bool = false) throws(DaemonError) -> VMStatus {
        try decode(VMStatus.self, call("PUT", "/vms/\(name)/stop?force=\(force ? 1 : 0)&wait=\(wait ? 1 : 0)"))
    }

    @discardableResult
    public func pause(_ name: String) throws(DaemonError) -> VMStatus { try decode(VMStatus.self, call("PUT", "/vms/\(name)/pause")) }

    @discardableResult
    public func resume(_ name: String) throws(DaemonError) -> VMStatus { try decode(VMStatus.self, call("PUT", "/vms/\(name)/resume")) }

    public func remove(_ name: String) throws(DaemonError) { _ = try call("DELETE", "/vms/\(name)") }

    /// The console log; `tail`: only its last bytes.
    public func logs(_ name: String, tail: Int? = nil) throws(DaemonError) -> [UInt8] {
        try call("GET", "/vms/\(name)/logs" + (tail.map { "?tail=\($0)" } ?? "")).body
    }

    public func consoleSocket(_ name: String) throws(DaemonError) -> String {
        try decode(ConsoleInfo.self, call("GET", "/vms/\(name)/console")).consoleSocket
    }

    /// The Prometheus text.
    public func metrics() throws(DaemonError) -> String { try call("GET", "/metrics").bodyText }

    public func reload() throws(DaemonError) -> [VMStatus] { try decode(VMList.self, call("POST", "/reload")).vms }

    /// A plain stream connection (a VM's console socket); returns the fd.
    public static func connectStream(path: String) throws(DaemonError) -> Int32 {
        do { return try UnixSocket.connect(path: path) } catch { throw DaemonError(0, error.description) }
    }

    /// One request; a non-2xx answer becomes a ``Failure`` with the daemon's fault message.
    public func call(_ method: String, _ path: String, body: [UInt8]? = nil) throws(DaemonError) -> HTTPResponse {
        let response: HTTPResponse
        do {
            response = try UnixHTTPClient.request(socketPath: socketPath, method: method, path: path, body: body, timeoutSeconds: timeoutSeconds)
        } catch {
            var reason = error.message
            // The socket error starts with the path; it is already in the sentence.
            if reason.hasPrefix(socketPath + ": ") { reason.removeFirst(socketPath.count + 2) }
            throw DaemonError(0, "cannot reach swiftletd at \(socketPath): \(reason)")
        }
        guard (200..<300).contains(response.status) else {
            throw DaemonError(response.status, JSON.faultMessage(response.body))
        }
        return response
    }

    private func decode<T: Decodable>(_ type: T.Type, _ response: HTTPResponse) throws(DaemonError) -> T {
        do { return try JSONDecoder().decode(T.self, from: Data(response.body)) } catch {
            throw DaemonError(response.status, "unexpected answer from swiftletd: \(response.bodyText.prefix(200))")
        }
    }
}
