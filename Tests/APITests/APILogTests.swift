@testable import API
import HTTPUnix
import Logs
import Synchronization
import Testing

/// `PUT /logger` changes the one log of the process: the API's own messages follow its level and
/// its show_level at once (the VMM's messages go through the same destination).
@Suite struct APILogTests {
    @Test func putLoggerAppliesToTheAPIsMessages() {
        let lines = Mutex<[String]>([])
        var options = VMController.Options()
        options.log = LogDestination(layout: .firecracker, threshold: LogThreshold(.warning)) { line in
            lines.withLock { $0.append(line) }
        }
        let c = VMController(options: options, sandbox: { _ throws(APIError) in }, onExit: { _ in })
        func send(_ method: String, _ path: String, _ body: String = "") -> Int {
            c.handle(HTTPRequest(method: method, path: path, body: Array(body.utf8))).status
        }
        #expect(send("GET", "/") == 200)
        #expect(lines.withLock { $0 }.isEmpty, "info is below the starting level (warning)")
        #expect(send("PUT", "/logger", #"{"level": "Info", "show_level": false}"#) == 204)
        #expect(send("GET", "/version") == 200)
        let logged = lines.withLock { $0 }
        #expect(logged.count == 2 && logged.last!.hasSuffix(" [api] GET /version 200\n"), "\(logged)")
    }
}
