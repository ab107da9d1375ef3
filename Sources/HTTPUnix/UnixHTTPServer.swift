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
    /// Blank lines, request line and headers together: more gets 400.
    public let maximumHeadBytes: Int
    /// A request must be whole this long after its first byte, or it gets 408 (a body that never
    /// comes, a client sending a byte a minute). A connection idle between requests may stay.
    public let requestTimeoutSeconds: Double
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
    public init(socketPath: String, maximumBodyBytes: Int = 51_200, maximumHeadBytes: Int = 64 << 10,
                requestTimeoutSeconds: Double = 10, concurrent: Bool = false, handler: @escaping Handler) {
        self.socketPath = socketPath
        self.maximumBodyBytes = maximumBodyBytes
        self.maximumHeadBytes = maximumHeadBytes
        self.requestTimeoutSeconds = requestTimeoutSeconds
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
        let headLimit = maximumHeadBytes
        let timeout = requestTimeoutSeconds
        let handler = handler
        let queue = queue
        let inProgress = inProgress
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 128)
            // A client that shuts down its sending side after its request still gets the answer.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // NIO's own error handler answers a bad request with an empty 400; RequestHandler
                    // answers every refusal itself, with a fault_message.
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.configureHTTPServerPipeline(withErrorHandling: false)
                    let progress = ConnectionProgress()
                    let headGuard = HeadGuard(progress: progress, maximumHeadBytes: headLimit, timeoutSeconds: timeout)
                    try pipeline.addHandler(headGuard, position: .first)
                    let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
                    try pipeline.addHandler(RequestBoundaries(progress: progress), position: .after(decoder))
                    try pipeline.addHandler(
                        RequestHandler(maximumBodyBytes: limit, queue: queue, inProgress: inProgress, progress: progress, handler: handler))
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

    /// Confines the event-loop thread, where handlers run, to `role`'s seccomp filter
    /// (`Sandbox.confineCurrentThread`). It runs as the loop's next task: called from a handler,
    /// once that handler has returned (so a handler that starts threads starts them first).
    public func confineLoopThread(to role: ThreadRole) {
        group?.next().execute { Sandbox.confineCurrentThreadOrExit(to: role, name: "api") }
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
/// A request it will not run (bad HTTP, a body over the limit, a timeout) gets a one-line
/// Firecracker-style error and `Connection: close`, and the connection is closed once it is sent.
private final class RequestHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let maximumBodyBytes: Int
    let queue: DispatchQueue?
    let inProgress: UnixHTTPServer.InProgress
    let progress: ConnectionProgress
    let handler: UnixHTTPServer.Handler
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    /// The client shut down its side: close once the answer in progress is written.
    private var closeAfterResponse = false
    /// A refusal is written; the client's remaining bytes are being dropped until it closes.
    private var lingering = false

    init(maximumBodyBytes: Int, queue: DispatchQueue?, inProgress: UnixHTTPServer.InProgress, progress: ConnectionProgress,
         handler: @escaping UnixHTTPServer.Handler) {
        self.maximumBodyBytes = maximumBodyBytes
        self.queue = queue
        self.inProgress = inProgress
        self.progress = progress
        self.handler = handler
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !progress.closing else { return }
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
            // Refused before the body is read: a declared length over the limit, or (below) the
            // body outgrowing it, whatever the client still means to send.
            if let length = h.headers.first(name: "Content-Length").flatMap(Int.init), length > maximumBodyBytes {
                refuse(.bodyTooLarge(limit: maximumBodyBytes), context: context)
                return
            }
            // curl waits a second for this before sending a body anyway; others wait for good.
            if h.version.major == 1, h.version.minor >= 1,
               h.headers["Expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                let interim = HTTPResponseHead(version: h.version, status: .continue)
                context.writeAndFlush(wrapOutboundOut(.head(interim)), promise: nil)
            }
        case .body(var buffer):
            guard head != nil else { return }
            guard body.count + buffer.readableBytes <= maximumBodyBytes else {
                refuse(.bodyTooLarge(limit: maximumBodyBytes), context: context)
                return
            }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            guard let head else { return }
            self.head = nil
            let keepAlive = head.isKeepAlive
            inProgress.count.add(1, ordering: .sequentiallyConsistent)
            progress.responding = true
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
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

    /// NIO's parser rejected the request (or ``HeadGuard`` did, saying why in
    /// ``ConnectionProgress/refusal``): answer and close. Any other error just closes.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !progress.closing else { return }
        guard let parserError = error as? HTTPParserError, !progress.responding else {
            progress.closing = true
            context.close(promise: nil)
            return
        }
        refuse(progress.refusal ?? Refusal(parserError), context: context)
    }

    /// The client shut down its sending side (allowed, so that `socat` or `nc -N` still get their
    /// answer): close now, or once the answer in progress is written.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event as? ChannelEvent == .inputClosed else { return context.fireUserInboundEventTriggered(event) }
        if progress.responding || (progress.closing && !lingering) {
            // An answer is on its way: close once it is written.
            closeAfterResponse = true
        } else {
            // Idle, or refused and lingering until now.
            progress.closing = true
            context.close(promise: nil)
        }
    }

    private func refuse(_ refusal: Refusal, context: ChannelHandlerContext) {
        progress.closing = true
        progress.cancelDeadline()
        head = nil
        body = []
        inProgress.count.add(1, ordering: .sequentiallyConsistent)
        write(refusal.response, keepAlive: false, version: .http1_1, refused: true, context: context)
    }

    func write(_ response: HTTPResponse, keepAlive: Bool, version: HTTPVersion, refused: Bool = false, context: ChannelHandlerContext) {
        let keepAlive = keepAlive && !closeAfterResponse && !progress.closing
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
        // Not responding any more as soon as the answer is handed over: NIO may deliver the next
        // pipelined request from within this write.
        progress.responding = false
        if !keepAlive { progress.closing = true }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        let inProgress = inProgress
        done.whenComplete { _ in inProgress.count.subtract(1, ordering: .sequentiallyConsistent) }
        guard !keepAlive else { return }
        let channel = context.channel
        guard refused else {
            done.whenComplete { _ in channel.close(promise: nil) }
            return
        }
        // A refused client may still be sending (a body over the limit, a megabyte of blank lines):
        // closing with its bytes unread would make its writes fail before it reads the answer.
        // So only our side is shut (it sees the answer, then end of file) and its bytes are read
        // and dropped until it closes, for a second at most.
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        done.whenComplete { _ in
            let me = bound.value
            me.lingering = true
            guard !me.closeAfterResponse else { return channel.close(promise: nil) }
            channel.close(mode: .output, promise: nil)
            channel.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
        }
    }
}
