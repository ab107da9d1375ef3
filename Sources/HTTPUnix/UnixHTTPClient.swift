import Host
import NIOCore
import NIOHTTP1
import NIOPosix

/// A blocking HTTP/1.1 client over a Unix socket (SwiftNIO's codec underneath): `swiftlet ctl`
/// talking to the daemon, the daemon talking to each VM's API, and the tests.
public enum UnixHTTPClient {
    /// Sends one request and waits for the whole response.
    /// - Throws: ``UnixSocketError`` when the socket cannot be reached or the peer misbehaves.
    public static func request(socketPath: String, method: String, path: String, body: [UInt8]? = nil,
                               contentType: String = "application/json", timeoutSeconds: Int64 = 30) throws(UnixSocketError) -> HTTPResponse {
        // Connected by hand (NIO's own connect error for a refused or absent socket is wordy),
        // then handed to NIO: one connection per request.
        let fd: Int32
        do { fd = try UnixSocket.connect(path: socketPath) } catch { throw UnixSocketError("\(error)") }
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: HTTPResponse.self)
        let bootstrap = ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise))
                }
            }
        let channel: any Channel
        do { channel = try bootstrap.withConnectedSocket(fd).wait() } catch {
            // Not closed here: NIO may already own the descriptor, and a double close could hit
            // another thread's newly opened file.
            promise.fail(error)
            throw UnixSocketError("\(socketPath): \(error)")
        }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "localhost")
        headers.add(name: "Accept", value: "application/json")
        headers.add(name: "Connection", value: "close")
        if let body {
            headers.add(name: "Content-Type", value: contentType)
            headers.add(name: "Content-Length", value: String(body.count))
        }
        let head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body, !body.isEmpty {
            var buffer = channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            channel.write(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil)
        }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(timeoutSeconds)) {
            promise.fail(UnixSocketError("\(socketPath): no answer within \(timeoutSeconds) s"))
        }
        defer { timeout.cancel(); channel.close(promise: nil) }
        do { return try promise.futureResult.wait() } catch let error as UnixSocketError {
            throw error
        } catch {
            throw UnixSocketError("\(socketPath): \(error)")
        }
    }

    /// `request` with a JSON text body.
    public static func request(socketPath: String, method: String, path: String, json: String) throws(UnixSocketError) -> HTTPResponse {
        try request(socketPath: socketPath, method: method, path: path, body: Array(json.utf8))
    }
}

/// Gathers one response into an ``HTTPResponse`` and completes the promise.
private final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    let promise: EventLoopPromise<HTTPResponse>
    private var response = HTTPResponse(status: 0)

    init(promise: EventLoopPromise<HTTPResponse>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            response.status = Int(head.status.code)
            response.contentType = head.headers.first(name: "Content-Type")
        case .body(var buffer):
            response.body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            promise.succeed(response)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(UnixSocketError("bad HTTP response: \(error)"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(UnixSocketError("connection closed before a whole response arrived"))
    }
}

