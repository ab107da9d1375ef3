import Backends
import Devices
import Host
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Firecracker's hybrid vsock protocol on real Unix sockets, without a device.

private func uniquePath(_ tag: String) -> String {
    "/tmp/swiftlet-mux-\(CurrentProcess.id)-\(tag)-\(UInt32.random(in: 0...UInt32.max)).sock"
}

/// Polls the muxer until `done` or about two seconds pass; returns the events seen.
private func events(_ muxer: VsockMuxer, until done: ([VsockHostEvent]) -> Bool) -> [VsockHostEvent] {
    var seen: [VsockHostEvent] = []
    for _ in 0..<200 {
        _ = muxer.pollEvents { seen.append($0) }
        if done(seen) { break }
        Clock.sleep(milliseconds: 10)
    }
    return seen
}

private func write(_ socket: StreamSocket, _ text: String) {
    let bytes = Array(text.utf8)
    #expect(bytes.withUnsafeBytes { socket.send($0) } == bytes.count)
}

private func read(_ socket: StreamSocket) -> String {
    var buffer = [UInt8](repeating: 0, count: 256)
    for _ in 0..<200 {
        let n = buffer.withUnsafeMutableBytes { socket.receive(into: $0) }
        if n > 0 { return String(decoding: buffer.prefix(n), as: UTF8.self) }
        Clock.sleep(milliseconds: 10)
    }
    return ""
}

/// A listening muxer and a program connected to it.
private func listeningMuxer(_ tag: String) throws -> (VsockMuxer, StreamSocket) {
    let path = uniquePath(tag)
    let muxer = try VsockMuxer(udsPath: path)
    muxer.startListening()
    return (muxer, try #require(StreamSocket.connect(path: path)))
}

@Suite struct VsockMuxerTests {
    @Test func connectLineBecomesARequestAndOKGoesBack() throws {
        let (muxer, client) = try listeningMuxer("connect")
        write(client, "CONNECT 52\nhello")
        let seen = events(muxer) { !$0.isEmpty }
        guard case .connectRequest(let stream, let port)? = seen.first else {
            Issue.record("no CONNECT seen: \(seen)")
            return
        }
        #expect(port == 52)
        #expect(muxer.streamCount == 1)
        #expect(muxer.accepted(stream, localPort: 1024))
        #expect(read(client) == "OK 1024\n")
        // Bytes after the line stay for the stream.
        var buffer = [UInt8](repeating: 0, count: 16)
        let got = buffer.withUnsafeMutableBytes { muxer.receive(stream, into: $0) }
        #expect(got == .bytes(5))
        #expect(String(decoding: buffer.prefix(5), as: UTF8.self) == "hello")
        muxer.close(stream)
        #expect(muxer.streamCount == 0)
    }

    @Test func badCommandsCloseTheClient() throws {
        let (muxer, client) = try listeningMuxer("bad")
        write(client, "LISTEN 52\n")
        let seen = events(muxer) { _ in muxer.streamCount == 0 }
        #expect(seen.isEmpty)
        #expect(muxer.streamCount == 0)
        var buffer = [UInt8](repeating: 0, count: 4)
        #expect(buffer.withUnsafeMutableBytes { client.receive(into: $0) } == 0, "closed by the muxer")
    }

    @Test func guestConnectionsReachPathUnderscorePort() throws {
        let path = uniquePath("guest")
        let muxer = try VsockMuxer(udsPath: path)
        #expect(muxer.connect(port: 7) == nil, "nobody listens")
        let listener = try StreamSocket.listen(path: "\(path)_7")
        defer { FileSystem.removeIfPresent(["\(path)_7"]) }
        let stream = try #require(muxer.connect(port: 7))
        var peer: StreamSocket?
        for _ in 0..<200 where peer == nil {
            peer = listener.accept()
            if peer == nil { Clock.sleep(milliseconds: 10) }
        }
        let host = try #require(peer)
        #expect(Array("ping".utf8).withUnsafeBytes { muxer.send(stream, $0) } == .bytes(4))
        #expect(read(host) == "ping")
        muxer.shutdownWrite(stream)
        var buffer = [UInt8](repeating: 0, count: 4)
        #expect(buffer.withUnsafeMutableBytes { muxer.receive(stream, into: $0) } == .wouldBlock)
        host.shutdownWrite()
        _ = events(muxer) { !$0.isEmpty }
        #expect(buffer.withUnsafeMutableBytes { muxer.receive(stream, into: $0) } == .closed)
    }

    @Test func listenRefusesAFileThatIsNotASocket() throws {
        let path = uniquePath("file")
        let file = try FileDescriptor.open(path, flags: O_CREAT | O_WRONLY | O_CLOEXEC, mode: 0o600)
        _ = file
        defer { FileSystem.removeIfPresent([path]) }
        #expect(throws: VirtioDeviceError("virtio-vsock: \(path): exists and is not a socket")) { try VsockMuxer(udsPath: path) }
    }
}
