import NIOCore
import NIOHTTP1

/// Why the server answers a request without running the handler, and then closes the connection.
struct Refusal: Sendable {
    var status: Int
    /// One line, no quotes or backslashes: it goes into the JSON body as is.
    var message: String

    /// Firecracker's error body, `{"fault_message": "..."}`.
    var response: HTTPResponse { .json(status, #"{"fault_message": "\#(message)"}"#) }

    static func bodyTooLarge(limit: Int) -> Refusal {
        Refusal(status: 400, message: "Request payload is larger than the limit of \(limit) bytes.")
    }

    static func headTooLarge(limit: Int, onlyBlankLines: Bool) -> Refusal {
        onlyBlankLines
            ? Refusal(status: 400, message: "More than \(limit) bytes of blank lines before the request line.")
            : Refusal(status: 400, message: "The request line and headers are larger than the limit of \(limit) bytes.")
    }

    static func timedOut(seconds: Double) -> Refusal {
        Refusal(status: 408, message: "The request was not complete within \(seconds.formatted) s.")
    }

    /// NIO's parser rejected the request. 400 for all of them (the only error status Firecracker's
    /// API documents), with the reason in words.
    init(_ error: HTTPParserError) {
        status = 400
        message = switch error {
        case .headerOverflow: "The request headers are larger than the limit."
        case .invalidChunkSize: "Invalid chunk size in the chunked request body."
        case .invalidContentLength, .unexpectedContentLength: "Invalid Content-Length header."
        case .invalidEOFState: "The connection was shut down before the request was complete."
        case .invalidVersion: "Unsupported HTTP version."
        case .invalidMethod: "Invalid HTTP method."
        case .invalidURL: "Invalid request target."
        case .invalidHeaderToken: "Invalid header field."
        default: "Malformed HTTP request (\(error))."
        }
    }

    init(status: Int, message: String) { self.status = status; self.message = message }
}

private extension Double {
    /// `10` rather than `10.0`; `0.5` stays.
    var formatted: String { self == rounded() ? String(Int(self)) : String(self) }
}

/// Where the current request of one connection stands, shared by the handlers on either side of
/// NIO's request decoder. Touched only on the connection's event loop.
final class ConnectionProgress: @unchecked Sendable {
    /// The last request part decoded was an `.end` (or none yet): bytes now arriving are blank
    /// lines or the head of the next request.
    var betweenRequests = true
    /// Bytes received since then that were wholly head (or blank lines); see ``HeadGuard``.
    var headBytes = 0
    var onlyBlankLines = true
    /// An `.end` was decoded from the bytes being forwarded right now.
    var endDecoded = false
    /// A handler is working on a request: the time it takes is not the client's.
    var responding = false
    /// The connection is being refused: further bytes are dropped, nothing more is answered.
    var closing = false
    /// Set just before an error is fired down the pipeline to make the answer precise.
    var refusal: Refusal?
    /// Runs from a request's first byte to its end.
    var deadline: Scheduled<Void>?

    func cancelDeadline() {
        deadline?.cancel()
        deadline = nil
    }
}

/// The first handler, on raw bytes: bounds what may arrive before a request head (NIO's parser
/// skips any number of blank lines before a request line, and counts none of them), and starts
/// the request timeout at a request's first byte. Either refusal goes down the pipeline as an
/// `HTTPParserError`, the one kind of error NIO's pipelining handler lets us answer when no
/// request head has been decoded; ``RequestHandler`` answers with ``ConnectionProgress/refusal``.
final class HeadGuard: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let progress: ConnectionProgress
    let maximumHeadBytes: Int
    let timeoutSeconds: Double
    /// Kept for the timeout's refusal.
    private var context: ChannelHandlerContext?

    init(progress: ConnectionProgress, maximumHeadBytes: Int, timeoutSeconds: Double) {
        self.progress = progress
        self.maximumHeadBytes = maximumHeadBytes
        self.timeoutSeconds = timeoutSeconds
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        progress.cancelDeadline()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !progress.closing else { return }
        let buffer = unwrapInboundIn(data)
        let wasBetween = progress.betweenRequests
        // Scanned before the decoder sees it; stops at the first byte of an ordinary request.
        let blank = wasBetween && buffer.readableBytesView.allSatisfy { $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") }
        progress.endDecoded = false
        context.fireChannelRead(data)
        // NIO decodes the whole buffer at once, so only a buffer that began and ended between
        // requests is known to be all head: one that held a request's end may hold the start of
        // the next head too, which is then not counted (nor timed, until more bytes come).
        if progress.endDecoded {
            progress.headBytes = 0
            progress.onlyBlankLines = true
        } else if wasBetween && progress.betweenRequests && !progress.closing {
            progress.headBytes += buffer.readableBytes
            progress.onlyBlankLines = progress.onlyBlankLines && blank
            if progress.headBytes > maximumHeadBytes {
                refuse(.headTooLarge(limit: maximumHeadBytes, onlyBlankLines: progress.onlyBlankLines), as: .headerOverflow)
                return
            }
        }
        // A request is left incomplete by these bytes: its time runs. (Requests that come whole in
        // one read, the usual case, never arm a timer.)
        if !progress.betweenRequests || progress.headBytes > 0 { startDeadline() }
    }

    /// Arms the request timeout unless it runs already. When it fires while a handler is still
    /// busy (a pipelined request waiting behind it), it waits another period.
    private func startDeadline() {
        guard progress.deadline == nil, !progress.closing, let context else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        progress.deadline = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeoutSeconds * 1e9))) {
            let me = bound.value
            me.progress.deadline = nil
            if me.progress.responding {
                me.startDeadline()
            } else {
                me.refuse(.timedOut(seconds: me.timeoutSeconds), as: .invalidEOFState)
            }
        }
    }

    private func refuse(_ refusal: Refusal, as error: HTTPParserError) {
        guard !progress.closing, let context else { return }
        progress.refusal = refusal
        progress.cancelDeadline()
        context.fireErrorCaught(error)
    }
}

/// Sits right after NIO's decoder (before its pipelining handler, which holds requests back while
/// a response is pending) and tells ``ConnectionProgress`` where each request begins and ends.
final class RequestBoundaries: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    let progress: ConnectionProgress

    init(progress: ConnectionProgress) { self.progress = progress }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            progress.betweenRequests = false
        case .body:
            break
        case .end:
            progress.betweenRequests = true
            progress.endDecoded = true
            progress.cancelDeadline()
        }
        context.fireChannelRead(data)
    }
}
