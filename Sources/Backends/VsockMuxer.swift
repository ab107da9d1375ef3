import Devices
import Host
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The host side of virtio-vsock as Firecracker's hybrid vsock defines it, over Unix sockets:
/// - host-initiated: a program connects to `udsPath` and writes `CONNECT <port>\n`; once the
///   guest accepts, it reads `OK <local_port>\n` and then the stream;
/// - guest-initiated: a connection to host port P connects to `<udsPath>_<P>`.
///
/// Every socket is non-blocking and sits in one private epoll set, edge-triggered so a hung-up or
/// full socket never spins the loop; the set is the device's readiness source. Connections
/// waiting for their `CONNECT` line stay here until it arrives; the device sees only streams.
/// Called only under the device's lock (the `VsockHost` contract), hence no lock of its own.
public final class VsockMuxer: VsockHost, @unchecked Sendable {
    /// Longest `CONNECT <port>\n` line accepted.
    static let maximumCommandLine = 64
    /// Ready tokens taken per poll.
    static let readyTokenLimit = 64
    static let listenerToken: UInt64 = 0
    static let streamEvents = Poller.input | Poller.output | Poller.peerHangUp | Poller.edgeTriggered

    private struct Stream {
        let socket: StreamSocket
        /// Still waiting for `CONNECT <port>\n` (not handed to the device yet).
        var awaitingCommand: Bool
    }

    /// The Unix socket host programs connect to; `<udsPath>_<port>` for guest-initiated ones.
    public let udsPath: String
    private let listener: StreamSocket
    private let poller: Poller
    private var streams: [UInt64: Stream] = [:]
    private var nextToken: UInt64 = 1
    private let readyTokens: UnsafeMutableBufferPointer<UInt64>
    /// Scratch for a `CONNECT` line.
    private var line = [UInt8](repeating: 0, count: maximumCommandLine)

    /// Listens on `udsPath` (a stale socket file there is removed first). Throws one line.
    public init(udsPath: String) throws(VirtioDeviceError) {
        do { poller = try Poller() } catch { throw VirtioDeviceError("virtio-vsock: \(error)") }
        do { listener = try StreamSocket.listen(path: udsPath) } catch { throw VirtioDeviceError("virtio-vsock: \(error.description)") }
        self.udsPath = udsPath
        readyTokens = .allocate(capacity: Self.readyTokenLimit)
        VsockSocketFiles.register(udsPath)
    }

    deinit {
        streams = [:]
        FileSystem.removeIfPresent([udsPath])
        VsockSocketFiles.unregister(udsPath)
        readyTokens.deallocate()
    }

    public var readinessSource: Int32 { poller.descriptor }
    public var streamCount: Int { streams.count }

    // Listen only while a driver is there: connections waiting in the backlog before then would
    // keep the event loop's poll readable with nobody to serve them.
    public func startListening() {
        try? poller.add(listener.descriptor, token: Self.listenerToken, events: Poller.input | Poller.edgeTriggered)
    }

    public func stopListening() { poller.remove(listener.descriptor) }

    public func pollEvents(_ handle: (VsockHostEvent) -> Void) -> Int {
        let n = poller.readyNow(into: readyTokens)
        for token in readyTokens.prefix(n) {
            if token == Self.listenerToken { acceptClients(handle); continue }
            guard let stream = streams[token] else { continue }
            if stream.awaitingCommand { readCommand(token, handle) } else { handle(.ready(stream: token)) }
        }
        return n
    }

    public func connect(port: UInt32) -> UInt64? {
        guard streams.count < VirtioVsock.maximumConnections,
              let socket = StreamSocket.connect(path: "\(udsPath)_\(port)") else { return nil }
        return add(socket, awaitingCommand: false)
    }

    public func accepted(_ stream: UInt64, localPort: UInt32) -> Bool {
        guard let socket = streams[stream]?.socket else { return false }
        let ok = Array("OK \(localPort)\n".utf8)
        return ok.withUnsafeBytes { socket.send($0) } == ok.count
    }

    public func receive(_ stream: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> VsockTransfer {
        guard let socket = streams[stream]?.socket else { return .closed }
        let n = socket.receive(into: buffer)
        if n > 0 { return .bytes(n) }
        return n == -Int(EAGAIN) ? .wouldBlock : .closed
    }

    public func send(_ stream: UInt64, _ bytes: UnsafeRawBufferPointer) -> VsockTransfer {
        guard let socket = streams[stream]?.socket else { return .closed }
        let n = socket.send(bytes)
        if n >= 0 { return .bytes(n) }
        return n == -Int(EAGAIN) ? .wouldBlock : .closed
    }

    public func shutdownWrite(_ stream: UInt64) { streams[stream]?.socket.shutdownWrite() }

    /// Closing the socket also takes it out of the epoll set.
    public func close(_ stream: UInt64) { streams[stream] = nil }

    public func closeAll() { streams = [:] }

    private func add(_ socket: StreamSocket, awaitingCommand: Bool) -> UInt64 {
        let token = nextToken
        nextToken += 1
        streams[token] = Stream(socket: socket, awaitingCommand: awaitingCommand)
        try? poller.add(socket.descriptor, token: token, events: Self.streamEvents)
        return token
    }

    private func acceptClients(_ handle: (VsockHostEvent) -> Void) {
        while let socket = listener.accept() {
            guard streams.count < VirtioVsock.maximumConnections else { continue }  // dropped: closes
            readCommand(add(socket, awaitingCommand: true), handle)
        }
    }

    /// Reads `CONNECT <port>\n` (peeking, so bytes after the line stay in the socket).
    private func readCommand(_ token: UInt64, _ handle: (VsockHostEvent) -> Void) {
        guard let socket = streams[token]?.socket else { return }
        let n = line.withUnsafeMutableBytes { socket.receive(into: $0, peek: true) }
        if n == -Int(EAGAIN) { return }
        guard n > 0 else { close(token); return }
        guard let newline = line.prefix(n).firstIndex(of: UInt8(ascii: "\n")) else {
            if n >= Self.maximumCommandLine { close(token) }
            return
        }
        _ = line.withUnsafeMutableBytes { socket.receive(into: UnsafeMutableRawBufferPointer(rebasing: $0[0...newline])) }
        var text = String(decoding: line[..<newline], as: UTF8.self)
        if text.hasSuffix("\r") { text.removeLast() }
        let words = text.split(separator: " ", omittingEmptySubsequences: true)
        guard words.count == 2, words[0] == "CONNECT", let port = UInt32(words[1]) else {
            close(token)
            return
        }
        streams[token]?.awaitingCommand = false
        handle(.connectRequest(stream: token, port: port))
    }
}

extension VirtioVsock {
    /// A device for guest `guestCID` whose host side listens on `udsPath` (a stale socket file
    /// there is removed first); see `VsockMuxer`.
    public convenience init(guestCID: UInt64, udsPath: String) throws(VirtioDeviceError) {
        try Self.checkGuestCID(guestCID)
        try self.init(guestCID: guestCID, host: try VsockMuxer(udsPath: udsPath))
    }
}

/// Listening socket files to remove when the process exits (the VMM ends with exit(3), so device
/// deinitialisers do not run).
enum VsockSocketFiles {
    private static let paths = Mutex<(registered: Bool, paths: Set<String>)>((false, []))

    static func register(_ path: String) {
        let first = paths.withLock { state -> Bool in
            state.paths.insert(path)
            defer { state.registered = true }
            return !state.registered
        }
        if first { atexit { VsockSocketFiles.removeAll() } }
    }

    static func unregister(_ path: String) { paths.withLock { _ = $0.paths.remove(path) } }

    static func removeAll() { FileSystem.removeIfPresent(Array(paths.withLock { $0.paths })) }
}
