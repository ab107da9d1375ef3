import GuestMemory
import Synchronization
import Testing
import Backends
@testable import Devices
#if canImport(Glibc)
import Glibc
#endif

// virtio-vsock (VIRTIO 1.2 section 5.10) against a fake guest driver and real Unix sockets.

private final class VsockTestInterrupt: VirtioInterrupt {
    private let counts = Mutex<[Int: Int]>([:])
    func signalUsedBuffers(queue: Int) { counts.withLock { $0[queue, default: 0] += 1 } }
    func signalConfigurationChange() {}
    func count(_ queue: Int) -> Int { counts.withLock { $0[queue] ?? 0 } }
}


private struct Packet {
    var header: VsockHeader
    var payload: [UInt8]
    var text: String { String(decoding: payload, as: UTF8.self) }
}

private let rxBufferSize: UInt32 = 4096
private let rxBase: UInt64 = 0x100000
private let txBase: UInt64 = 0x200000
private let guestCID: UInt64 = 3

private func uniquePath(_ tag: String) -> String {
    "/tmp/swiftlet-vsock-\(getpid())-\(tag)-\(UInt32.random(in: 0...UInt32.max)).sock"
}

/// A device with its three queues set up in 4 MiB of guest memory, rx buffers posted.
private final class Rig {
    let memory: GuestMemory
    let rx: VirtqueueTestDriver, tx: VirtqueueTestDriver, event: VirtqueueTestDriver
    let device: VirtioVsock
    let interrupt = VsockTestInterrupt()
    let path: String
    var received: [Packet] = []

    init(tag: String, rxBuffers: Int = 32) throws {
        path = uniquePath(tag)
        memory = try GuestMemory(size: 4 << 20)
        rx = VirtqueueTestDriver(memory: memory, size: 64, base: 0x1000)
        tx = VirtqueueTestDriver(memory: memory, size: 64, base: 0x8000)
        event = VirtqueueTestDriver(memory: memory, size: 16, base: 0xF000)
        device = try VirtioVsock(guestCID: guestCID, udsPath: path)
        try device.activate(features: VirtioFeature.version1, memory: memory,
                            queues: [try rx.makeQueue(), try tx.makeQueue(), try event.makeQueue()],
                            interrupt: interrupt)
        try postReceiveBuffers(rxBuffers)
    }

    func postReceiveBuffers(_ count: Int) throws {
        for _ in 0..<count {
            let head = rx.nextDescriptor
            try rx.post([.init(address: rxBase + UInt64(head) * UInt64(rxBufferSize), length: rxBufferSize, writable: true)])
        }
    }

    /// Sends one packet from the guest (header and payload in separate descriptors).
    func send(_ header: VsockHeader, _ payload: [UInt8] = [], headerBytes: [UInt8]? = nil) throws {
        var h = header
        if headerBytes == nil, h.length == 0 { h.length = UInt32(payload.count) }
        let bytes = headerBytes ?? h.bytes
        try memory.write(bytes, at: GuestAddress(txBase))
        var buffers: [VirtqueueTestDriver.Buffer] = [.init(address: txBase, length: UInt32(bytes.count))]
        if !payload.isEmpty {
            try memory.write(payload, at: GuestAddress(txBase + 0x1000))
            buffers.append(.init(address: txBase + 0x1000, length: UInt32(payload.count)))
        }
        try tx.post(buffers)
        device.queueNotified(VirtioVsockSpec.transmitQueue)
    }

    func guestHeader(op: UInt16, src: UInt32, dst: UInt32, bufAlloc: UInt32 = 64 << 10, fwd: UInt32 = 0,
                     flags: UInt32 = 0) -> VsockHeader {
        VsockHeader(sourceCID: guestCID, destinationCID: 2, sourcePort: src, destinationPort: dst, op: op,
                    flags: flags, bufferAllocation: bufAlloc, forwardCount: fwd)
    }

    /// Collects what the device put in the rx queue, reposting the buffers.
    func collect() throws {
        while try rx.seenUsed != rx.usedIndex {
            let element = try rx.usedElement(rx.seenUsed)
            rx.seenUsed &+= 1
            let address = rxBase + UInt64(element.id) * UInt64(rxBufferSize)
            let bytes = try memory.read(at: GuestAddress(address), count: UInt64(element.length))
            #expect(bytes.count >= VsockHeader.size)
            if bytes.count >= VsockHeader.size {
                let header = VsockHeader(bytes: Array(bytes.prefix(VsockHeader.size)))
                #expect(Int(header.length) == bytes.count - VsockHeader.size)
                received.append(Packet(header: header, payload: Array(bytes.dropFirst(VsockHeader.size))))
            }
            try postReceiveBuffers(1)
        }
        device.queueNotified(VirtioVsockSpec.receiveQueue)
    }

    /// Lets the device serve its sockets for up to `milliseconds` or until `done`.
    func pump(milliseconds: Int = 2000, until done: () -> Bool = { false }) throws {
        let deadline = milliseconds / 10
        for _ in 0..<max(deadline, 1) {
            try collect()
            if done() { return }
            var p = pollfd(fd: device.eventSources[0], events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 10) == 1 { device.eventSourceReady(0) }
        }
        try collect()
    }

    /// The next packet the device sends the guest.
    func next(milliseconds: Int = 2000) throws -> Packet? {
        try pump(milliseconds: milliseconds) { !received.isEmpty }
        return received.isEmpty ? nil : received.removeFirst()
    }
}

// MARK: Unix-socket helpers (blocking, with timeouts)

/// Calls `body` with a sockaddr_un for `path`.
private func withUnixAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let utf8 = Array(path.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, byte) in utf8.enumerated() { raw[i] = byte }
        raw[utf8.count] = 0
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sa_family_t>.size + utf8.count + 1)) }
    }
}

private func unixSocket(timeoutMilliseconds: Int = 2000) -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var tv = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

private func connectUnix(_ path: String) throws -> Int32 {
    let fd = unixSocket()
    let ok = withUnixAddress(path) { connect(fd, $0, $1) }
    guard ok == 0 else { close(fd); throw VirtioDeviceError("connect \(path): \(errno)") }
    return fd
}

private func listenUnix(_ path: String) throws -> Int32 {
    let fd = unixSocket()
    unlink(path)
    guard withUnixAddress(path, { bind(fd, $0, $1) }) == 0, listen(fd, 8) == 0 else {
        throw VirtioDeviceError("listen \(path): \(errno)")
    }
    return fd
}

private func acceptUnix(_ listener: Int32) -> Int32 {
    var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
    guard poll(&p, 1, 2000) == 1 else { return -1 }
    let fd = accept(listener, nil, nil)
    var tv = timeval(tv_sec: 2, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

private func writeAll(_ fd: Int32, _ text: String) { writeAll(fd, Array(text.utf8)) }
private func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    precondition(n == bytes.count)
}

/// Reads exactly `count` bytes (or fewer at EOF / timeout).
private func readBytes(_ fd: Int32, _ count: Int) -> [UInt8] {
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: count)
    while out.count < count {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - out.count, 0) }
        guard n > 0 else { break }
        out += buffer.prefix(n)
    }
    return out
}

private func readText(_ fd: Int32, _ count: Int) -> String { String(decoding: readBytes(fd, count), as: UTF8.self) }

/// True when the peer closed (recv returns 0).
private func atEOF(_ fd: Int32) -> Bool {
    var byte: UInt8 = 0
    return recv(fd, &byte, 1, 0) == 0
}

@Suite struct VirtioVsockTests {
    typealias Spec = VirtioVsockSpec

    @Test func identityConfigurationAndSocketFile() throws {
        let path: String
        do {
            let rig = try Rig(tag: "id")
            path = rig.path
            #expect(rig.device.deviceType == 19)
            #expect(rig.device.queueCount == 3)
            #expect(rig.device.configurationSize == 8)
            var config = [UInt8](repeating: 0xAA, count: 8)
            config.withUnsafeMutableBytes { rig.device.readConfiguration(offset: 0, into: $0) }
            #expect(config == [3, 0, 0, 0, 0, 0, 0, 0])
            #expect(access(path, F_OK) == 0)
            // A stale socket file is replaced.
            let again = try VirtioVsock(guestCID: 4, udsPath: uniquePath("stale"))
            _ = again
        }
        #expect(access(path, F_OK) != 0, "socket file removed with the device")
        #expect(throws: VirtioDeviceError.self) { try VirtioVsock(guestCID: 2, udsPath: uniquePath("cid")) }
    }

    @Test func staleSocketFileIsReplaced() throws {
        let path = uniquePath("stale")
        let old = try listenUnix(path)
        close(old)  // leaves the file behind
        let device = try VirtioVsock(guestCID: 3, udsPath: path)
        let client = try connectUnix(path)
        close(client)
        _ = device
    }

    @Test func hostInitiatedConnection() throws {
        let rig = try Rig(tag: "host")
        let client = try connectUnix(rig.path)
        defer { close(client) }
        writeAll(client, "CONNECT 1234\n")
        let request = try #require(try rig.next())
        #expect(request.header.op == Spec.opRequest)
        #expect(request.header.sourceCID == 2 && request.header.destinationCID == 3)
        #expect(request.header.destinationPort == 1234)
        #expect(request.header.sourcePort >= 1024)
        #expect(request.header.type == Spec.typeStream)
        #expect(request.header.bufferAllocation == VirtioVsock.bufferAllocation)
        let local = request.header.sourcePort

        try rig.send(rig.guestHeader(op: Spec.opResponse, src: 1234, dst: local))
        let ok = "OK \(local)\n"
        #expect(readText(client, ok.utf8.count) == ok)

        writeAll(client, "hello guest")
        let data = try #require(try rig.next())
        #expect(data.header.op == Spec.opReadWrite)
        #expect(data.header.sourcePort == local && data.header.destinationPort == 1234)
        #expect(data.text == "hello guest")

        try rig.send(rig.guestHeader(op: Spec.opReadWrite, src: 1234, dst: local), Array("hello host".utf8))
        #expect(readText(client, 10) == "hello host")
        #expect(rig.interrupt.count(0) > 0)
        // Every tx packet the device consumed is returned with an interrupt (the driver frees
        // its buffers then; without it a guest that sends a lot stalls).
        #expect(rig.interrupt.count(Spec.transmitQueue) == 2, "tx interrupts: \(rig.interrupt.count(Spec.transmitQueue))")

        try rig.send(rig.guestHeader(op: Spec.opReset, src: 1234, dst: local))
        #expect(atEOF(client))
        #expect(rig.device.connectionCount == 0)
    }

    @Test func hostInitiatedBadCommandIsClosed() throws {
        let rig = try Rig(tag: "badcmd")
        let client = try connectUnix(rig.path)
        defer { close(client) }
        writeAll(client, "HELLO 1\n")
        try rig.pump(milliseconds: 300)
        #expect(atEOF(client))
        #expect(rig.received.isEmpty)
        #expect(rig.device.connectionCount == 0)
    }

    @Test func hostInitiatedRefusedByGuest() throws {
        let rig = try Rig(tag: "refused")
        let client = try connectUnix(rig.path)
        defer { close(client) }
        writeAll(client, "CONNECT 99\n")
        let request = try #require(try rig.next())
        try rig.send(rig.guestHeader(op: Spec.opReset, src: 99, dst: request.header.sourcePort))
        #expect(atEOF(client))
    }

    @Test func guestInitiatedConnection() throws {
        let rig = try Rig(tag: "guest")
        let listener = try listenUnix("\(rig.path)_5000")
        defer { close(listener); unlink("\(rig.path)_5000") }
        try rig.send(rig.guestHeader(op: Spec.opRequest, src: 777, dst: 5000))
        let response = try #require(try rig.next())
        #expect(response.header.op == Spec.opResponse)
        #expect(response.header.sourcePort == 5000 && response.header.destinationPort == 777)
        #expect(response.header.destinationCID == 3)
        let server = acceptUnix(listener)
        #expect(server >= 0)
        defer { close(server) }

        writeAll(server, "ping")
        let data = try #require(try rig.next())
        #expect(data.header.op == Spec.opReadWrite && data.text == "ping")

        try rig.send(rig.guestHeader(op: Spec.opReadWrite, src: 777, dst: 5000), Array("pong".utf8))
        #expect(readText(server, 4) == "pong")

        // Full shutdown from the guest: RST back, the host end sees EOF.
        try rig.send(rig.guestHeader(op: Spec.opShutdown, src: 777, dst: 5000, flags: 3))
        let reset = try #require(try rig.next())
        #expect(reset.header.op == Spec.opReset)
        #expect(atEOF(server))
        #expect(rig.device.connectionCount == 0)
    }

    @Test func hostCloseSendsShutdown() throws {
        let rig = try Rig(tag: "hclose")
        let listener = try listenUnix("\(rig.path)_6000")
        defer { close(listener); unlink("\(rig.path)_6000") }
        try rig.send(rig.guestHeader(op: Spec.opRequest, src: 800, dst: 6000))
        _ = try #require(try rig.next())
        let server = acceptUnix(listener)
        writeAll(server, "bye")
        close(server)
        let data = try #require(try rig.next())
        #expect(data.text == "bye")
        let shutdown = try #require(try rig.next())
        #expect(shutdown.header.op == Spec.opShutdown && shutdown.header.flags == Spec.shutdownSend)
        // The guest writes to the closed host end: RST.
        try rig.send(rig.guestHeader(op: Spec.opReadWrite, src: 800, dst: 6000), Array("late".utf8))
        #expect(try rig.next()?.header.op == Spec.opReset)
        #expect(rig.device.connectionCount == 0)
    }

    @Test func hostHalfCloseStillReceives() throws {
        let rig = try Rig(tag: "half")
        let client = try connectUnix(rig.path)
        defer { close(client) }
        writeAll(client, "CONNECT 42\nquestion")
        let request = try #require(try rig.next())
        let local = request.header.sourcePort
        try rig.send(rig.guestHeader(op: Spec.opResponse, src: 42, dst: local))
        #expect(readText(client, "OK \(local)\n".utf8.count) == "OK \(local)\n")
        shutdown(client, Int32(SHUT_WR))
        let data = try #require(try rig.next())
        #expect(data.text == "question")
        let eof = try #require(try rig.next())
        #expect(eof.header.op == Spec.opShutdown && eof.header.flags == Spec.shutdownSend)
        try rig.send(rig.guestHeader(op: Spec.opReadWrite, src: 42, dst: local), Array("answer".utf8))
        #expect(readText(client, 6) == "answer")
        try rig.send(rig.guestHeader(op: Spec.opShutdown, src: 42, dst: local, flags: 3))
        #expect(try rig.next()?.header.op == Spec.opReset)
        #expect(atEOF(client))
        #expect(rig.device.connectionCount == 0)
    }

    @Test func resetsForUnknownPortsAndBadPackets() throws {
        let rig = try Rig(tag: "rst")
        // Nobody listens on <uds>_5999.
        try rig.send(rig.guestHeader(op: Spec.opRequest, src: 777, dst: 5999))
        let reset = try #require(try rig.next())
        #expect(reset.header.op == Spec.opReset)
        #expect(reset.header.sourcePort == 5999 && reset.header.destinationPort == 777)

        // Data for a connection that does not exist.
        try rig.send(rig.guestHeader(op: Spec.opReadWrite, src: 1, dst: 2), [1, 2, 3])
        #expect(try rig.next()?.header.op == Spec.opReset)
        // Wrong type (SEQPACKET).
        var seqpacket = rig.guestHeader(op: Spec.opRequest, src: 3, dst: 4)
        seqpacket.type = 2
        try rig.send(seqpacket)
        #expect(try rig.next()?.header.op == Spec.opReset)
        // Unknown op.
        try rig.send(rig.guestHeader(op: 99, src: 5, dst: 6))
        #expect(try rig.next()?.header.op == Spec.opReset)
        // len larger than the payload present, and larger than any packet.
        var long = rig.guestHeader(op: Spec.opReadWrite, src: 7, dst: 8)
        long.length = 1000
        try rig.send(long, [1, 2, 3])
        #expect(try rig.next()?.header.op == Spec.opReset)
        long.length = UInt32.max
        try rig.send(long, [1, 2, 3])
        #expect(try rig.next()?.header.op == Spec.opReset)

        // Dropped silently: RST to nothing, a short header, wrong CIDs.
        try rig.send(rig.guestHeader(op: Spec.opReset, src: 9, dst: 10))
        try rig.send(VsockHeader(), headerBytes: [1, 2, 3])
        var wrongSource = rig.guestHeader(op: Spec.opRequest, src: 11, dst: 12)
        wrongSource.sourceCID = 7
        try rig.send(wrongSource)
        var wrongDestination = rig.guestHeader(op: Spec.opRequest, src: 11, dst: 12)
        wrongDestination.destinationCID = 5
        try rig.send(wrongDestination)
        try rig.pump(milliseconds: 100)
        #expect(rig.received.isEmpty)
        #expect(try rig.tx.usedIndex == rig.tx.availableIndex, "every tx chain was returned")
        #expect(!rig.device.needsReset)
    }

    @Test func guestCreditIsRespected() throws {
        let rig = try Rig(tag: "credit")
        let listener = try listenUnix("\(rig.path)_7000")
        defer { close(listener); unlink("\(rig.path)_7000") }
        try rig.send(rig.guestHeader(op: Spec.opRequest, src: 900, dst: 7000, bufAlloc: 10))
        #expect(try rig.next()?.header.op == Spec.opResponse)
        let server = acceptUnix(listener)
        defer { close(server) }
        writeAll(server, [UInt8](repeating: 0x5A, count: 100))

        let first = try #require(try rig.next())
        #expect(first.header.op == Spec.opReadWrite && first.payload.count == 10)
        try rig.pump(milliseconds: 200)
        #expect(rig.received.isEmpty, "no credit left")

        // The guest consumed 10 bytes.
        try rig.send(rig.guestHeader(op: Spec.opCreditUpdate, src: 900, dst: 7000, bufAlloc: 10, fwd: 10))
        let second = try #require(try rig.next())
        #expect(second.payload.count == 10)
        try rig.pump(milliseconds: 100)
        #expect(rig.received.isEmpty)

        // A bigger buffer: the remaining 80 bytes flow.
        try rig.send(rig.guestHeader(op: Spec.opCreditUpdate, src: 900, dst: 7000, bufAlloc: 1000, fwd: 20))
        var total = 0
        try rig.pump(milliseconds: 1000) { rig.received.reduce(0) { $0 + $1.payload.count } >= 80 }
        total = rig.received.reduce(0) { $0 + $1.payload.count }
        #expect(total == 80)
    }

    @Test func deviceCreditAdvertisedAndEnforced() throws {
        let rig = try Rig(tag: "ourcredit")
        let listener = try listenUnix("\(rig.path)_7100")
        defer { close(listener); unlink("\(rig.path)_7100") }
        try rig.send(rig.guestHeader(op: Spec.opRequest, src: 901, dst: 7100))
        let response = try #require(try rig.next())
        #expect(response.header.bufferAllocation == VirtioVsock.bufferAllocation)
        #expect(response.header.forwardCount == 0)
        let server = acceptUnix(listener)
        defer { close(server) }

        // 2 x 40000 bytes, read by the host: fwd_cnt passes 64 KiB, a CREDIT_UPDATE follows unasked.
        let chunk = [UInt8](repeating: 1, count: 40000)
        try rig.send(rig.guestHeader(op: Spec.opReadWrite, src: 901, dst: 7100), chunk)
        try rig.send(rig.guestHeader(op: Spec.opReadWrite, src: 901, dst: 7100), chunk)
        #expect(readBytes(server, 80000).count == 80000)
        let update = try #require(try rig.next())
        #expect(update.header.op == Spec.opCreditUpdate && update.header.forwardCount == 80000)

        // CREDIT_REQUEST is answered.
        try rig.send(rig.guestHeader(op: Spec.opCreditRequest, src: 901, dst: 7100))
        let answer = try #require(try rig.next())
        #expect(answer.header.op == Spec.opCreditUpdate && answer.header.forwardCount == 80000)

        // A guest that ignores the credit (the host never reads) is reset.
        let big = [UInt8](repeating: 2, count: 60000)
        var reset = false
        for _ in 0..<12 where !reset {
            try rig.send(rig.guestHeader(op: Spec.opReadWrite, src: 901, dst: 7100), big)
            try rig.collect()
            reset = rig.received.contains { $0.header.op == Spec.opReset }
        }
        #expect(reset)
        #expect(rig.device.connectionCount == 0)
    }

    @Test func resetClosesConnections() throws {
        let rig = try Rig(tag: "reset")
        let client = try connectUnix(rig.path)
        defer { close(client) }
        writeAll(client, "CONNECT 1\n")
        _ = try #require(try rig.next())
        #expect(rig.device.connectionCount == 1)
        rig.device.reset()
        #expect(rig.device.connectionCount == 0)
        #expect(atEOF(client))
    }

    /// A transmit queue whose used ring lies over its available ring (`overlappingRingsQueue`):
    /// the drain asked for notifications again, saw avail.idx moved by that very write, and went
    /// round forever (found by the virtio-vsock fuzz target). The queue must break instead.
    @Test func transmitQueueOverlappingItsRingsNeedsReset() throws {
        let memory = try GuestMemory(size: 4 << 20)
        let rx = VirtqueueTestDriver(memory: memory, size: 64, base: 0x8000)
        let event = VirtqueueTestDriver(memory: memory, size: 16, base: 0xF000)
        let device = try VirtioVsock(guestCID: guestCID, udsPath: uniquePath("overlap"))
        try device.activate(features: VirtioFeature.version1, memory: memory,
                            queues: [try rx.makeQueue(), try overlappingRingsQueue(memory: memory), try event.makeQueue()],
                            interrupt: VsockTestInterrupt())
        try #require(finishes(within: 10) { device.queueNotified(Spec.transmitQueue) } != nil, "the transmit queue was served forever")
        #expect(device.needsReset)
    }
}
