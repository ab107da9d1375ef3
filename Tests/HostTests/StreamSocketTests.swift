import Host
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct StreamSocketTests {
    @Test func listenConnectTransferAndShutdown() throws {
        let path = "/tmp/swiftlet-stream-\(CurrentProcess.id)-\(UInt32.random(in: 0...UInt32.max)).sock"
        defer { FileSystem.removeIfPresent([path]) }
        let listener = try StreamSocket.listen(path: path)
        #expect(listener.accept() == nil, "nothing waiting: no blocking")
        let client = try #require(StreamSocket.connect(path: path))
        let server = try #require(listener.accept())
        var buffer = [UInt8](repeating: 0, count: 8)
        #expect(buffer.withUnsafeMutableBytes { server.receive(into: $0) } == -Int(EAGAIN))
        #expect(Array("abc".utf8).withUnsafeBytes { client.send($0) } == 3)
        #expect(buffer.withUnsafeMutableBytes { server.receive(into: $0, peek: true) } == 3)
        #expect(buffer.withUnsafeMutableBytes { server.receive(into: $0) } == 3)
        client.shutdownWrite()
        #expect(buffer.withUnsafeMutableBytes { server.receive(into: $0) } == 0)
        // A stale socket file is replaced; the path's length is checked.
        #expect(throws: HostError.self) { try StreamSocket.listen(path: "/tmp/" + String(repeating: "x", count: 120)) }
    }

    @Test func connectToNobodyIsNil() {
        #expect(StreamSocket.connect(path: "/tmp/swiftlet-nobody-\(CurrentProcess.id).sock") == nil)
    }

    @Test func sendToAClosedPeerFailsWithoutSIGPIPE() throws {
        let path = "/tmp/swiftlet-stream-\(CurrentProcess.id)-\(UInt32.random(in: 0...UInt32.max)).sock"
        defer { FileSystem.removeIfPresent([path]) }
        let listener = try StreamSocket.listen(path: path)
        let client = try #require(StreamSocket.connect(path: path))
        var server = listener.accept()
        #expect(server != nil)
        server = nil
        #expect(Array("x".utf8).withUnsafeBytes { client.send($0) } == -Int(EPIPE))
    }
}

@Suite struct VectoredIOTests {
    @Test func gathersAndScatters() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        var a: [UInt8] = [1, 2], b: [UInt8] = [3, 4, 5]
        var c = [UInt8](repeating: 0, count: 1), d = [UInt8](repeating: 0, count: 8)
        let sent = a.withUnsafeMutableBytes { pa in
            b.withUnsafeMutableBytes { pb in
                var vectors = [iovec(iov_base: pa.baseAddress, iov_len: 2), iovec(iov_base: pb.baseAddress, iov_len: 3)]
                return VectoredIO.write(fds[0], &vectors, count: 2)
            }
        }
        #expect(sent == 5)
        let got = c.withUnsafeMutableBytes { pc in
            d.withUnsafeMutableBytes { pd in
                var vectors = [iovec(iov_base: pc.baseAddress, iov_len: 1), iovec(iov_base: pd.baseAddress, iov_len: 8)]
                return VectoredIO.read(fds[1], &vectors, count: 2)
            }
        }
        #expect(got == 5)
        #expect(c == [1] && Array(d.prefix(4)) == [2, 3, 4, 5])
        #expect(VectoredIO.read(-1, UnsafeMutablePointer<iovec>.allocate(capacity: 1), count: 0) == -Int(EBADF))
    }
}
