import Foundation
import HTTPUnix
import Host
import Testing

/// A plain socket client for raw bytes: what a broken or hostile client sends.
final class RawConnection: Sendable {
    let fd: Int32

    init(_ path: String) throws {
        fd = try UnixSocket.connect(path: path)
        // A read waits at most this long: a test that would hang fails instead.
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Sends everything, or stops at the first error (the server closed): no SIGPIPE.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Foundation.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }

    func send(_ text: String) { send(Array(text.utf8)) }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Reads until `enough` holds for what came so far, the server closes, or a read times out.
    /// `closed` is true on end of file or a reset (a server closing with bytes of ours unread).
    /// (Not called inside `#expect`: with Swift 6.3.1, a closure passed there was run again by the
    /// next call of `receive` in place of that call's own.)
    func receive(byteCount: Int = .max, until enough: ((String) -> Bool)? = nil) -> (text: String, closed: Bool) {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                data += buffer[0..<n]
                if data.count >= byteCount || enough?(String(decoding: data, as: UTF8.self)) == true {
                    return (String(decoding: data, as: UTF8.self), false)
                }
                continue
            }
            let closed = n == 0 || errno == ECONNRESET
            return (String(decoding: data, as: UTF8.self), closed)
        }
    }
}

/// Every malformed request gets an answer (a status and a one-line `{"fault_message": ...}`), then
/// the connection is closed; the server keeps serving others.
@Suite(.serialized) struct MalformedRequestTests {
    /// A server answering 200 with the body's length, on a fresh socket.
    static func withServer(timeout: Double = 10, concurrent: Bool = false, _ body: (String) throws -> Void) throws {
        let path = UnixHTTPTests.socketPath()
        let server = UnixHTTPServer(socketPath: path, requestTimeoutSeconds: timeout, concurrent: concurrent) { request in
            .json(200, #"{"bytes": \#(request.body.count)}"#)
        }
        try server.start()
        defer { server.stop() }
        try body(path)
        // Still serving.
        #expect(try UnixHTTPClient.request(socketPath: path, method: "GET", path: "/").status == 200)
    }

    /// `text` is one whole response with `status`, `Connection: close` and a one-line
    /// fault_message containing `fault`, and the server closed the connection after it.
    static func expectRefusal(_ reply: (text: String, closed: Bool), _ status: String, _ fault: String,
                              sourceLocation: SourceLocation = #_sourceLocation) {
        let parts = reply.text.components(separatedBy: "\r\n\r\n")
        #expect(reply.text.hasPrefix("HTTP/1.1 \(status)\r\n"), "\(reply.text.prefix(300))", sourceLocation: sourceLocation)
        #expect(parts.first?.contains("\r\nConnection: close") == true, "\(reply.text.prefix(300))", sourceLocation: sourceLocation)
        let body = parts.dropFirst().joined(separator: "\r\n\r\n")
        #expect(body.hasPrefix(#"{"fault_message": ""#) && body.hasSuffix(#""}"#) && !body.contains("\n"),
                "\(body)", sourceLocation: sourceLocation)
        #expect(body.contains(fault), "\(body)", sourceLocation: sourceLocation)
        #expect(reply.closed, "the connection stays open", sourceLocation: sourceLocation)
    }

    /// A request refused from what one write holds, named for the test's output.
    struct Refusal: Sendable, CustomTestStringConvertible {
        let name: String, request: String, status: String, fault: String
        var testDescription: String { name }
    }

    /// Each answered with its status and a one-line fault message, then the connection closed.
    static let refusals: [Refusal] = [
        Refusal(name: "a megabyte of blank lines before the request line",
                request: String(repeating: "\r\n", count: 512 << 10) + "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                status: "400 Bad Request", fault: "blank lines before the request line"),
        Refusal(name: "a header over the limit",
                request: "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "a", count: 100_000) + "\r\n\r\n",
                status: "400 Bad Request", fault: "larger than the limit"),
        Refusal(name: "a request line the parser refuses",
                request: "garbage\r\n\r\n",
                status: "400 Bad Request", fault: "Invalid HTTP method."),
        Refusal(name: "chunk size 2^64-1 (still a number), then more than the limit (refused there, not waited out)",
                request: "PUT /vm HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n" + String(repeating: "a", count: 60_000),
                status: "400 Bad Request", fault: "larger than the limit of 51200 bytes"),
        Refusal(name: "a chunk size that overflows",
                request: "PUT /vm HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nabc",
                status: "400 Bad Request", fault: "Invalid chunk size"),
        Refusal(name: "a declared body over the limit (refused at the head)",
                request: "PUT /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
                status: "400 Bad Request", fault: "larger than the limit"),
        Refusal(name: "Expect: 100-continue over the limit (refused at once, no 100 Continue)",
                request: "PUT /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\nExpect: 100-continue\r\n\r\n",
                status: "400 Bad Request", fault: "larger than the limit"),
    ]

    @Test(arguments: refusals) func refusedAtOnce(_ refusal: Refusal) throws {
        try Self.withServer { path in
            let c = try RawConnection(path)
            c.send(refusal.request)
            Self.expectRefusal(c.receive(), refusal.status, refusal.fault)
        }
    }

    @Test func aFewBlankLinesBeforeTheRequestLineAreFine() throws {
        try Self.withServer { path in
            let c = try RawConnection(path)
            c.send("\r\n\r\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            let reply = c.receive { $0.hasSuffix("}") }.text
            #expect(reply.hasPrefix("HTTP/1.1 200 OK\r\n"))
        }
    }

    @Test func hugeChunkSizeThenShutdown() throws {
        try Self.withServer { path in
            let c = try RawConnection(path)
            c.send("PUT /vm HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc")
            c.shutdownWrite()
            Self.expectRefusal(c.receive(), "400 Bad Request", "shut down before the request was complete")
        }
    }

    @Test func hugeChunkSizeThenSilenceTimesOut() throws {
        try Self.withServer(timeout: 0.5) { path in
            let c = try RawConnection(path)
            c.send("PUT /vm HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc")
            Self.expectRefusal(c.receive(), "408 Request Timeout", "not complete within 0.5 s")
        }
    }

    /// The whole over-limit body is sent (as curl would): the client still reads the answer, then
    /// end of file, rather than a failed write.
    @Test func bodyOverTheLimitSentWhole() throws {
        try Self.withServer { path in
            let c = try RawConnection(path)
            let sent = c.send(Array("PUT /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n".utf8) + [UInt8](repeating: 0x61, count: 200_000))
            #expect(sent)
            Self.expectRefusal(c.receive(), "400 Bad Request", "larger than the limit")
        }
    }

    @Test func expectContinueGetsContinueThenTheAnswer() throws {
        try Self.withServer { path in
            let c = try RawConnection(path)
            c.send("PUT /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
            let interim = c.receive { $0.hasSuffix("\r\n\r\n") }.text
            #expect(interim == "HTTP/1.1 100 Continue\r\n\r\n")
            c.send("{}")
            let reply = c.receive { $0.hasSuffix("}") }.text
            #expect(reply.hasPrefix("HTTP/1.1 200 OK\r\n") && reply.hasSuffix(#"{"bytes": 2}"#), "\(reply)")
        }
    }

    @Test func expectContinueWithoutABodyTimesOut() throws {
        try Self.withServer(timeout: 0.5) { path in
            let c = try RawConnection(path)
            c.send("PUT /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")
            let reply = c.receive()
            #expect(reply.text.hasPrefix("HTTP/1.1 100 Continue\r\n\r\n"))
            Self.expectRefusal((String(reply.text.dropFirst("HTTP/1.1 100 Continue\r\n\r\n".count)), reply.closed),
                               "408 Request Timeout", "not complete within 0.5 s")
        }
    }

    /// A head sent a few bytes at a time and never finished is answered 408 and closed, and
    /// holds up nobody meanwhile.
    @Test func slowHeadTimesOut() throws {
        try Self.withServer(timeout: 1) { path in
            let c = try RawConnection(path)
            for piece in ["GET / HT", "TP/1.1\r\n", "Host: x\r\n"] {
                c.send(piece)
                let other = try UnixHTTPClient.request(socketPath: path, method: "GET", path: "/")
                #expect(other.status == 200)
                Thread.sleep(forTimeInterval: 0.2)
            }
            Self.expectRefusal(c.receive(), "408 Request Timeout", "not complete within 1 s")
        }
    }

    /// The timeout is for a request in progress: a keep-alive connection may idle between requests.
    @Test func idleConnectionIsNotTimedOut() throws {
        try Self.withServer(timeout: 0.3) { path in
            let c = try RawConnection(path)
            for _ in 0..<2 {
                c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                let reply = c.receive { $0.hasSuffix("}") }
                #expect(reply.text.hasPrefix("HTTP/1.1 200 OK\r\n") && !reply.closed, "\(reply)")
                Thread.sleep(forTimeInterval: 0.6)
            }
        }
    }

    /// A whole request, then the client shuts down its side (`socat`, `nc -N`): still answered.
    @Test func halfClosedClientGetsItsAnswer() throws {
        for concurrent in [false, true] {
            try Self.withServer(concurrent: concurrent) { path in
                let c = try RawConnection(path)
                c.send("PUT /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
                c.shutdownWrite()
                let reply = c.receive()
                #expect(reply.text.hasPrefix("HTTP/1.1 200 OK\r\n") && reply.text.hasSuffix(#"{"bytes": 2}"#) && reply.closed, "\(reply)")
            }
        }
    }

    @Test func fiveThousandPipelinedRequests() throws {
        for concurrent in [false, true] {
            try Self.withServer(concurrent: concurrent) { path in
                let c = try RawConnection(path)
                let count = 5000
                let request = "PUT /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
                // Written from another thread: the server stops reading while its answers pile up.
                let writer = Thread { c.send(String(repeating: request, count: count)) }
                writer.start()
                let answer = "HTTP/1.1 200 OK\r\nServer: Swiftlet\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"bytes\": 2}"
                let reply = c.receive(byteCount: count * answer.utf8.count)
                #expect(reply.text == String(repeating: answer, count: count))
                #expect(!reply.closed)
            }
        }
    }

    @Test func aThousandConcurrentConnections() throws {
        try Self.withServer { path in
            let connections = try (0..<1000).map { _ in try RawConnection(path) }
            for c in connections { c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n") }
            let answered = connections.filter { c in c.receive { $0.hasSuffix("}") }.text.hasPrefix("HTTP/1.1 200 OK") }.count
            #expect(answered == 1000)
        }
    }
}
