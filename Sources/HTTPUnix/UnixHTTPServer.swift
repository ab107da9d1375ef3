import Dispatch
import Host
import NIOCore
import Synchronization
import NIOHTTP1
import NIOPosix

/// Errors from setting up a Unix-socket listener; `message` is one line for the user.
public struct UnixSocketError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// An HTTP/1.1 server on a Unix socket. SwiftNIO parses and encodes HTTP; `handler` sees whole
/// requests. By default handlers run one at a time on the event-loop thread itself (Firecracker's
/// API is serialized the same way): no Dispatch worker pool, whose thread monitor opens
/// /proc/<tid>/stat — something the VM process's seccomp filter forbids. With `concurrent` they
/// run on a concurrent Dispatch queue instead (the daemon, where a slow stop must not block status).
public final class UnixHTTPServer: @unchecked Sendable {
    /// Called for each request; return the response.
    public typealias Handler = @Sendable (HTTPRequest) -> HTTPResponse

    public let socketPath: String
    /// Larger bodies get 400 (Firecracker's limit is 51,200 bytes).
    public let maximumBodyBytes: Int
    private let handler: Handler
    private let queue: DispatchQueue?
    /// Made in `start`, after the socket is bound: a client can connect while NIO's thread starts.
    private var group: MultiThreadedEventLoopGroup?
    private var channel: (any Channel)?
    /// Requests read whose answer is not written yet.
    private let inProgress = InProgress()

    /// A count shared by every connection's handler.
    final class InProgress: Sendable {
        let count = Atomic<Int>(0)
    }

    /// Waits up to `seconds` until every request read so far has been answered: a process that
    /// exits when its VM ends calls it first, so that the request that ended the VM (a
    /// SendCtrlAltDel the guest reboots on at once) still gets its answer.
    public func waitUntilAnswered(seconds: Double) {
        // Looks every millisecond: it runs once, at exit, under the VM process's seccomp filter,
        // where a sleep is allowed and a new epoll set may not be.
        var left = Int(seconds * 1000)
        while inProgress.count.load(ordering: .sequentiallyConsistent) > 0 && left > 0 {
            Clock.sleep(milliseconds: 1)
            left -= 1
        }
    }

    /// - Parameter concurrent: run handlers on a concurrent queue (the daemon) instead of the loop.
    public init(socketPath: String, maximumBodyBytes: Int = 51_200, concurrent: Bool = false, handler: @escaping Handler) {
        self.socketPath = socketPath
        self.maximumBodyBytes = maximumBodyBytes
        self.handler = handler
        queue = concurrent ? DispatchQueue(label: "http-handler", attributes: [.concurrent]) : nil
    }

    /// Binds the socket (``UnixSocket/listen(path:backlog:)``: mode 0600, a stale file replaced, a
    /// live one an error) and starts serving. Returns once clients can connect.
    public func start() throws(UnixSocketError) {
        // Bound by hand before NIO starts, so the socket is connectable at once.
        let fd: Int32
        do { fd = try UnixSocket.listen(path: socketPath) } catch { throw UnixSocketError(error.description) }
        let limit = maximumBodyBytes
        let handler = handler
        let queue = queue
        let inProgress = inProgress
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 128)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        RequestHandler(maximumBodyBytes: limit, queue: queue, inProgress: inProgress, handler: handler))
                }
            }
        do {
            channel = try bootstrap.withBoundSocket(fd).wait()
        } catch {
            // NIO did not take the socket: an owning FileDescriptor closes it as it goes.
            _ = FileDescriptor(owning: fd)
            throw UnixSocketError("\(socketPath): \(error)")
        }
    }

    /// Removes the socket file only: for a process about to exit, where NIO's graceful shutdown
    /// (which hands its completion to a Dispatch queue) would run under a seccomp filter that
    /// forbids what Dispatch's worker threads do.
    public func removeSocketFile() { FileSystem.removeIfPresent([socketPath]) }

    /// Stops accepting, closes the listener and removes the socket file.
    public func stop() {
        try? channel?.close().wait()
        channel = nil
        FileSystem.removeIfPresent([socketPath])
        try? group?.syncShutdownGracefully()
        group = nil
    }
}

/// Collects one request, runs the handler (on the loop, or on the queue), writes the answer back.
private final class RequestHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let maximumBodyBytes: Int
    let queue: DispatchQueue?
    let inProgress: UnixHTTPServer.InProgress
    let handler: UnixHTTPServer.Handler
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(maximumBodyBytes: Int, queue: DispatchQueue?, inProgress: UnixHTTPServer.InProgress,
         handler: @escaping UnixHTTPServer.Handler) {
        self.maximumBodyBytes = maximumBodyBytes
        self.queue = queue
        self.inProgress = inProgress
        self.handler = handler
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
            tooLarge = false
        case .body(var buffer):
            if body.count + buffer.readableBytes > maximumBodyBytes {
                tooLarge = true
                body = []
            } else if !tooLarge, let bytes = buffer.readBytes(length: buffer.readableBytes) {
                body += bytes
            }
        case .end:
            guard let head else { return }
            self.head = nil
            let keepAlive = head.isKeepAlive
            inProgress.count.add(1, ordering: .sequentiallyConsistent)
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            if tooLarge {
                let response = HTTPResponse.json(400, #"{"fault_message": "Request payload is larger than the limit of \#(maximumBodyBytes) bytes."}"#)
                write(response, keepAlive: false, version: head.version, context: context)
                return
            }
            let target = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
            let request = HTTPRequest(method: head.method.rawValue, path: String(target.first ?? ""),
                                      query: target.count > 1 ? String(target[1]) : nil,
                                      headers: head.headers.map { ($0.name, $0.value) }, body: body)
            body = []
            let handler = handler
            let version = head.version
            guard let queue else {
                write(handler(request), keepAlive: keepAlive, version: version, context: context)
                return
            }
            queue.async {
                let response = handler(request)
                loop.execute {
                    let (me, context) = bound.value
                    me.write(response, keepAlive: keepAlive, version: version, context: context)
                }
            }
        }
    }

    /// A request NIO's parser rejected: its error handler has answered 400; end the connection
    /// rather than hold the descriptor until the client goes away.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func write(_ response: HTTPResponse, keepAlive: Bool, version: HTTPVersion, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Server", value: "Swiftlet")
        if let type = response.contentType { headers.add(name: "Content-Type", value: type) }
        for header in response.headers { headers.add(name: header.name, value: header.value) }
        headers.add(name: "Content-Length", value: String(response.body.count))
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !response.body.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: response.body.count)
            buffer.writeBytes(response.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        let inProgress = inProgress
        done.whenComplete { _ in inProgress.count.subtract(1, ordering: .sequentiallyConsistent) }
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
