import Glibc
import Testing
@testable import Host

@Suite struct HostTests {
    @Test func fileRoundTripAndStatus() throws {
        let path = "/tmp/swiftlet-host-test-\(getpid())"
        defer { unlink(path) }
        let fd = try FileDescriptor.open(path, flags: O_RDWR | O_CREAT | O_TRUNC)
        let data: [UInt8] = Array(0..<200).map { UInt8($0) }
        try data.withUnsafeBytes { try fd.pwrite($0, at: 1000) }
        #expect(try fd.status().size == 1200)
        var back = [UInt8](repeating: 0, count: 300)
        let n = try back.withUnsafeMutableBytes { try fd.pread(into: $0, at: 1000) }
        #expect(n == 200)
        #expect(Array(back.prefix(200)) == data)
        #expect(try readWholeFile(path).count == 1200)
    }

    @Test func missingFileIsATypedError() {
        #expect(throws: HostError("/nonexistent/x", errno: ENOENT)) { try readWholeFile("/nonexistent/x") }
        #expect(throws: HostError.self) { try readWholeFile("/tmp") }
    }

    @Test func pollerTimesOutAndReportsReadyDescriptors() throws {
        let poller = try Poller()
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        try poller.add(fds[0], token: 5)
        var seen: [UInt64] = []
        #expect(poller.wait(timeoutNanoseconds: 1_000_000) { seen.append($0) })
        #expect(seen.isEmpty)
        #expect(write(fds[1], "x", 1) == 1)
        #expect(poller.wait(timeoutNanoseconds: 1_000_000_000) { seen.append($0) })
        #expect(seen == [5])
    }

    @Test func randomBytesVary() {
        #expect(randomBytes(16) != randomBytes(16))
    }
}
