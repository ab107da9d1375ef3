import Devices

extension FuzzTargets {
    /// virtio-vsock's packet processing (Devices' VirtioVsock and VsockConnection) behind the
    /// real virtio-pci transport, over fuzzed guest RAM and queue state, with a fake host: guest
    /// packets (REQUEST, RESPONSE, RW, CREDIT_UPDATE/REQUEST, SHUTDOWN, RST, garbage) from the tx
    /// queue, host connection requests and readiness as back-end events, host streams that hand
    /// out data, would block or close as the input says, and the rx queue filled with what the
    /// device sends back.
    ///
    /// Checks, besides no trap, no ASan report (guest RAM is `VirtioFuzzRAM`) and no timeout:
    /// - the device only reads, writes, accepts, shuts down and closes streams the host has open,
    ///   asks for at most 64 KiB per read and writes at most its 256 KiB buffer at once;
    /// - the `VirtioFuzzDriver` promises (no guest RAM written after a queue broke, one-line
    ///   DEVICE_NEEDS_RESET reasons).
    ///
    /// The guest's CID is 3. Input: 1 host byte (bit 0: connections to the host are refused,
    /// bit 1: telling a host program its connection was accepted fails), the `VirtioFuzzDriver`
    /// part (three queues: rx, tx, event), then guest RAM from address 0 (64 KiB). A backend event
    /// with even arg is a host program asking for guest port b (its stream behaves as `a` says,
    /// see `FuzzVsockHost.Stream`); with odd arg, stream number a % 8 + 1 becomes ready.
    /// A guest connection to host port P gets a stream that behaves as P says.
    static let virtioVsock = FuzzTarget(
        name: "virtio-vsock",
        summary: "virtio-vsock packets over fuzzed guest RAM and queue state, a fake host"
    ) { bytes in
        var input = FuzzInput(bytes)
        let host = FuzzVsockHost.shared
        host.reset(flags: input.byte())
        let device = try! VirtioVsock(guestCID: 3, host: host)
        var driver = VirtioFuzzDriver(device: device)
        driver.read(&input)
        _ = VirtioFuzzRAM.shared.fill(with: input.remaining)
        driver.play { event in
            if event.arg & 1 == 0 {
                host.connectRequest(port: event.b, behaviour: UInt32(event.a))
            } else {
                host.ready(stream: UInt64(event.a % 8) + 1)
            }
            device.eventSourceReady(0)
            fuzzLog("virtio-vsock: after event \(event.kind): \(device.connectionCount) streams")
        }
        fuzzLog("virtio-vsock: \(host.log.joined(separator: ", "))")
    }
}

/// The host side of virtio-vsock for the fuzzer: streams that do what the input says, and checks
/// on every call the device makes. Reset per input.
final class FuzzVsockHost: VsockHost, @unchecked Sendable {
    static let shared = FuzzVsockHost()
    static let streamLimit = 32

    /// How one stream behaves, from a 32-bit value: bits 0-1 reads (data every time, would block,
    /// closed, data once then would block), bits 2-13 bytes per read - 1, bits 14-15 writes (take
    /// everything, take half, would block, closed).
    struct Stream {
        var readMode: UInt32
        var readCount: Int
        var sendMode: UInt32
        var hasRead = false

        init(_ behaviour: UInt32) {
            readMode = behaviour & 3
            readCount = Int((behaviour >> 2) & 0xFFF) + 1
            sendMode = (behaviour >> 14) & 3
        }
    }

    private var streams: [UInt64: Stream] = [:]
    private var nextToken: UInt64 = 1
    private var events: [VsockHostEvent] = []
    private var refusesConnections = false
    private var acceptFails = false
    private(set) var listening = false
    /// What the device did, for `fuzzLog` (kept only when verbose).
    private(set) var log: [String] = []

    private func note(_ line: @autoclosure () -> String) {
        if fuzzVerbose { log.append(line()) }
    }

    func reset(flags: UInt8) {
        streams.removeAll()
        events.removeAll()
        nextToken = 1
        refusesConnections = flags & 1 != 0
        acceptFails = flags & 2 != 0
        listening = false
        log.removeAll()
    }

    private func open(_ behaviour: UInt32) -> UInt64? {
        guard streams.count < Self.streamLimit else { return nil }
        let token = nextToken
        nextToken += 1
        streams[token] = Stream(behaviour)
        return token
    }

    private func requireOpen(_ stream: UInt64, _ what: String) {
        if streams[stream] == nil { fatalError("virtio-vsock: \(what) on stream \(stream), which is not open") }
    }

    /// A host program connects and asks for guest port `port`.
    func connectRequest(port: UInt32, behaviour: UInt32) {
        guard listening, let token = open(behaviour) else { return }
        events.append(.connectRequest(stream: token, port: port))
    }

    /// `stream` may be readable or writable again.
    func ready(stream: UInt64) {
        guard streams[stream] != nil else { return }
        streams[stream]!.hasRead = false
        events.append(.ready(stream: stream))
    }

    var readinessSource: Int32 { -1 }
    var streamCount: Int { streams.count }
    func startListening() { listening = true }
    func stopListening() { listening = false }

    func pollEvents(_ handle: (VsockHostEvent) -> Void) -> Int {
        let pending = events
        events.removeAll()
        for event in pending { handle(event) }
        return pending.count
    }

    func connect(port: UInt32) -> UInt64? {
        let token = refusesConnections ? nil : open(port)
        note("connect(\(port)) = \(String(describing: token))")
        return token
    }

    func accepted(_ stream: UInt64, localPort: UInt32) -> Bool {
        requireOpen(stream, "accepted")
        note("accepted(\(stream), \(localPort))")
        return !acceptFails
    }

    func receive(_ stream: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> VsockTransfer {
        requireOpen(stream, "receive")
        guard buffer.count >= 1, buffer.count <= VirtioVsock.maximumPayload else {
            fatalError("virtio-vsock: a read of \(buffer.count) bytes")
        }
        let s = streams[stream]!
        switch s.readMode {
        case 1: return .wouldBlock
        case 2: return .closed
        case 3 where s.hasRead: return .wouldBlock
        default:
            streams[stream]!.hasRead = true
            let n = min(buffer.count, s.readCount)
            note("receive(\(stream)) = \(n)")
            fillPattern(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n]), seed: UInt8(truncatingIfNeeded: stream))
            return .bytes(n)
        }
    }

    func send(_ stream: UInt64, _ bytes: UnsafeRawBufferPointer) -> VsockTransfer {
        requireOpen(stream, "send")
        if bytes.count > Int(VirtioVsock.bufferAllocation) { fatalError("virtio-vsock: a write of \(bytes.count) bytes") }
        _ = touch(bytes)
        note("send(\(stream), \(bytes.count))")
        switch streams[stream]!.sendMode {
        case 0: return .bytes(bytes.count)
        case 1: return .bytes(bytes.count / 2)
        case 2: return .wouldBlock
        default: return .closed
        }
    }

    func shutdownWrite(_ stream: UInt64) {
        requireOpen(stream, "shutdownWrite")
        note("shutdownWrite(\(stream))")
    }

    func close(_ stream: UInt64) {
        requireOpen(stream, "close")
        note("close(\(stream))")
        streams[stream] = nil
    }

    func closeAll() { streams.removeAll() }
}
