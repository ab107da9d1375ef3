import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `swiftlet api` before any VM (no /dev/kvm needed): every malformed request, from raw bytes or
/// from curl, gets a status and a one-line `{"fault_message": ...}`, `Connection: close`, then the
/// end of the connection; curl's `Expect: 100-continue` is answered at once.
@Suite(.serialized) struct APIMalformedRequestTests {
    /// Sends `bytes` (then shuts down our side if `shut`), reads until the server closes.
    static func exchangeToEnd(_ socket: String, _ bytes: [UInt8], shut: Bool = false, timeout: Double = 20) -> (text: String, closed: Bool) {
        guard let fd = APITestClient.connect(socket) else { return ("cannot connect", false) }
        defer { close(fd) }
        _ = APITestClient.sendAll(fd, bytes)
        if shut { shutdown(fd, Int32(SHUT_WR)) }
        let deadline = Date().addingTimeInterval(timeout)
        var data: [UInt8] = []
        while let chunk = APITestClient.receive(fd, until: deadline) {
            if chunk.isEmpty { return (String(decoding: data, as: UTF8.self), true) }
            data += chunk
        }
        return (String(decoding: data, as: UTF8.self), false)
    }

    static func expectRefusal(_ reply: (text: String, closed: Bool), _ statusLine: String, _ fault: String, _ label: String,
                              sourceLocation: SourceLocation = #_sourceLocation) {
        let head = reply.text.components(separatedBy: "\r\n\r\n").first ?? ""
        let body = reply.text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        #expect(reply.text.hasPrefix(statusLine + "\r\n"), "\(label): \(reply.text.prefix(300))", sourceLocation: sourceLocation)
        #expect(head.contains("\r\nConnection: close"), "\(label): \(head)", sourceLocation: sourceLocation)
        let fields = JSON.parse(Array(body.utf8))
        #expect(fields?["fault_message"]?.string?.contains(fault) == true && !body.contains("\n"),
                "\(label): \(body)", sourceLocation: sourceLocation)
        #expect(reply.closed, "\(label): the connection stays open", sourceLocation: sourceLocation)
    }

    @Test func malformedRequestsGetAFaultMessageThenTheConnectionCloses() throws {
        let api = try APIServer(dir: try APIServer.directory("malformed"))
        defer { api.kill() }
        let chunked = "PUT /machine-config HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        let cases: [(label: String, bytes: String, shut: Bool, fault: String)] = [
            ("1 MiB of blank lines", String(repeating: "\r\n", count: 512 << 10) + "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false,
             "blank lines before the request line"),
            ("chunk size 2^64-1, then more than the limit", chunked + "ffffffffffffffff\r\n" + String(repeating: "a", count: 100_000), false,
             "larger than the limit of 51200 bytes"),
            ("chunk size 2^64-1, then shutdown", chunked + "ffffffffffffffff\r\nabc", true, "shut down before the request was complete"),
            ("chunk size over 64 bits", chunked + "1ffffffffffffffff\r\nabc", false, "Invalid chunk size"),
            ("Expect: 100-continue over the limit", "PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\nExpect: 100-continue\r\n\r\n",
             false, "larger than the limit"),
            ("100 kB header", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "a", count: 100_000) + "\r\n\r\n", false,
             "larger than the limit"),
            ("not HTTP", "garbage\r\n\r\n", false, "Invalid HTTP method"),
        ]
        for c in cases {
            let reply = Self.exchangeToEnd(api.socket, Array(c.bytes.utf8), shut: c.shut)
            Self.expectRefusal(reply, "HTTP/1.1 400 Bad Request", c.fault, c.label)
        }
        let info = try api.call("GET", "/")
        #expect(info.status == 200, "\(info)")
    }

    /// A body that never comes: 100 Continue at once, 408 after the server's 10 s, then the end.
    @Test func expectContinueWithoutTheBodyTimesOut() throws {
        let api = try APIServer(dir: try APIServer.directory("expect-408"))
        defer { api.kill() }
        let t0 = Date()
        let reply = Self.exchangeToEnd(api.socket, Array("PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: 38\r\nExpect: 100-continue\r\n\r\n".utf8))
        let interim = "HTTP/1.1 100 Continue\r\n\r\n"
        #expect(reply.text.hasPrefix(interim), "\(reply.text)")
        Self.expectRefusal((String(reply.text.dropFirst(interim.count)), reply.closed), "HTTP/1.1 408 Request Timeout",
                           "not complete within 10 s", "Expect without a body")
        #expect(Date().timeIntervalSince(t0) > 9)
    }

    /// curl sends `Expect: 100-continue` and would wait a second for the 100 before sending the
    /// body anyway; the answer comes at once. A body over the limit gets the fault_message.
    @Test func curlExpectContinueAndOversizedBody() throws {
        let curl = try #require(APIServerTests.curl)
        let api = try APIServer(dir: try APIServer.directory("curl-expect"))
        defer { api.kill() }
        let base = ["-sS", "--max-time", "10", "--unix-socket", api.socket, "-X", "PUT", "-H", "Content-Type: application/json",
                    "-w", "\n%{http_code} %{time_total}"]
        let r = Harness.run(curl, base + ["-H", "Expect: 100-continue", "-d", #"{"vcpu_count": 1, "mem_size_mib": 128}"#,
                                          "http://localhost/machine-config"], timeout: 20)
        #expect(r.status == 0 && r.output.hasPrefix("\n204 "), "\(r.output)")
        // curl's own clock, not this process's (curl's start-up on a loaded machine is not the point).
        let seconds = Double(r.output.split(separator: " ").last ?? "") ?? 99
        #expect(seconds < 0.9, "curl waited \(seconds) s for a 100 Continue that did not come")

        let body = Harness.scratch.appendingPathComponent("api-curl-expect/big.json").path
        _ = FileManager.default.createFile(atPath: body, contents: Data(repeating: 0x61, count: 2 << 20))
        let big = Harness.run(curl, base + ["--data-binary", "@" + body, "http://localhost/machine-config"], timeout: 20)
        #expect(big.status == 0 && big.output.contains(#"{"fault_message": "Request payload is larger than the limit of 51200 bytes."}"#)
                && big.output.contains("\n400 "), "\(big.output)")
    }
}
