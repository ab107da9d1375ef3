import GuestMemory
import Synchronization

/// A virtio socket device, virtio-vsock (VIRTIO 1.2 section 5.10), over a `VsockHost` (Backends:
/// Firecracker's hybrid vsock over Unix sockets, `VsockMuxer`; host CID 2, stream sockets only).
///
/// Queues (5.10.2): 0 = rx (device → guest packets), 1 = tx (guest → device), 2 = event (unused:
/// its buffers stay with the device). Configuration (5.10.4): le64 guest_cid. No feature bits:
/// a driver that negotiates none gets stream sockets (5.10.3).
///
/// Host side, as Firecracker's vsock documents it (the muxer speaks the Unix-socket protocol):
/// - Host-initiated: a program connects to the Unix socket `udsPath` and writes `CONNECT <port>\n`.
///   The device sends REQUEST to the guest (dst_port = port, src_port = a fresh local port
///   ≥ 1024); on RESPONSE it writes `OK <local_port>\n` to the program and then relays bytes both
///   ways. RST from the guest closes the program's socket.
/// - Guest-initiated: a guest REQUEST to CID 2, port P connects to the Unix socket `<udsPath>_<P>`;
///   RESPONSE on success, RST otherwise.
///
/// Credit (5.10.6.3): the device never sends the guest more than its buf_alloc − (tx_cnt −
/// fwd_cnt), and advertises buf_alloc = 256 KiB per connection itself: guest data the host
/// socket cannot take at once waits in a per-connection buffer of at most that size; a guest
/// that overruns it gets RST. fwd_cnt counts bytes written to the host socket, and a
/// CREDIT_UPDATE goes out each time another 64 KiB has been forwarded (and on CREDIT_REQUEST).
///
/// Packets the device cannot make sense of never stop it: a header shorter than 44 bytes is
/// dropped, wrong CIDs are dropped, bad types, lengths, ops and unknown connections get RST (never
/// an RST in answer to an RST).
///
/// Each connection's transitions and credit are a `VsockConnection`; this device owns the queues,
/// the table of connections by stream and by ports, and the control packets waiting for receive
/// buffers. The event source is the host's readiness source.
public final class VirtioVsock: VirtioDevice {
    typealias Spec = VirtioVsockSpec
    public static let queueSize: UInt16 = 256
    /// Receive space advertised per connection (buf_alloc).
    public static let bufferAllocation = VsockConnection.bufferAllocation
    /// Most connections at once (pending CONNECT lines included).
    public static let maximumConnections = 1024
    /// Largest payload per packet, either direction.
    public static let maximumPayload = 64 << 10
    /// Control packets waiting for receive buffers (beyond that, new ones are dropped).
    static let maximumControlBacklog = 4096

    typealias PortPair = VsockPorts
    typealias Connection = VsockConnection

    private struct State {
        var receive: SplitVirtqueue?
        var transmit: SplitVirtqueue?
        var event: SplitVirtqueue?
        var interrupt: (any VirtioInterrupt)?
        var needsReset = false
        var active = false
        var connections: [UInt64: Connection] = [:]
        var byPorts: [PortPair: UInt64] = [:]
        var localPorts: Set<UInt32> = []
        var nextLocalPort: UInt32 = 1024
        var control: [VsockHeader] = []
        var controlStart = 0
        /// A receive chain taken from the queue but not filled yet.
        var held: (chain: DescriptorChain, writable: Int)?
        var receiveUsed = false
        /// Connections with data to send this round (kept to reuse its storage).
        var candidates: [UInt64] = []
        /// The transmitq's last drain asked for an interrupt (drain already consulted
        /// needsNotification, which must be asked once per batch).
        var transmitNeedsSignal = false
    }

    private let state: Mutex<State>
    private let host: any VsockHost
    /// Packet staging area, used only under `state`'s lock.
    nonisolated(unsafe) private let scratch: UnsafeMutableRawBufferPointer
    /// A guest packet's header as read from the transmitq, used only under `state`'s lock.
    nonisolated(unsafe) private let transmitHeader: UnsafeMutableRawBufferPointer

    /// The guest's CID (≥ 3).
    public let guestCID: UInt64

    public var deviceType: UInt16 { VirtioDeviceType.vsock }
    public var queueCount: Int { 3 }
    public var maximumQueueSize: UInt16 { Self.queueSize }
    public var deviceFeatures: UInt64 { 0 }
    public var configurationSize: Int { Spec.configurationSize }
    public var eventSources: [Int32] { [host.readinessSource] }
    public var needsReset: Bool { state.withLock { $0.needsReset } }

    /// Refuses a reserved CID (0, 1, 2 and 0xffffffff up): one line.
    public static func checkGuestCID(_ guestCID: UInt64) throws(VirtioDeviceError) {
        guard guestCID >= 3, guestCID < 0xFFFF_FFFF else {
            throw VirtioDeviceError("virtio-vsock: guest CID \(guestCID) is reserved (use 3...4294967294)")
        }
    }

    /// A device for guest `guestCID` over `host`.
    public init(guestCID: UInt64, host: any VsockHost) throws(VirtioDeviceError) {
        try Self.checkGuestCID(guestCID)
        self.guestCID = guestCID
        self.host = host
        // Allocated once: nothing on the packet path allocates.
        scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: VsockHeader.size + Self.maximumPayload, alignment: 16)
        transmitHeader = UnsafeMutableRawBufferPointer.allocate(byteCount: VsockHeader.size, alignment: 16)
        state = Mutex(State())
    }

    deinit {
        scratch.deallocate()
        transmitHeader.deallocate()
        // `host` closes its streams and listener when released.
    }

    /// Open connections (any phase).
    public var connectionCount: Int { state.withLock { _ in host.streamCount } }

    public func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        withUnsafeBytes(of: guestCID.littleEndian) { copyConfiguration($0, offset: offset, into: data) }
    }

    public func activate(features: UInt64, memory: GuestMemory, queues: [SplitVirtqueue?],
                         interrupt: any VirtioInterrupt) throws(VirtioDeviceError) {
        let handover = QueueHandover(queues: queues)
        state.withLock { s in
            closeAll(&s)
            s.receive = handover.take(0)
            s.transmit = handover.take(1)
            s.event = handover.take(2)
            s.interrupt = interrupt
            s.needsReset = false
            s.active = true
            // Listen only while a driver is there: connections waiting in the backlog before then
            // would keep the event loop's poll readable with nobody to serve them.
            host.startListening()
        }
    }

    public func reset() {
        state.withLock { s in
            if s.active { host.stopListening() }
            closeAll(&s)
            s.receive = nil; s.transmit = nil; s.event = nil
            s.interrupt = nil
            s.needsReset = false
            s.active = false
        }
    }

    private func closeAll(_ s: inout State) {
        host.closeAll()
        s.connections = [:]
        s.byPorts = [:]
        s.localPorts = []
        s.control = []
        s.controlStart = 0
        s.held = nil
    }

    public func queueNotified(_ index: Int) {
        let signal: UsedSignals? = state.withLock { s in
            guard s.active, !s.needsReset else { return nil }
            if index == Spec.transmitQueue { processTransmit(&s) }
            processReceive(&s)
            return takeSignals(&s)
        }
        signal?.raise()
    }

    /// The host is ready: take new host connections, note readable streams, flush buffered
    /// guest data, then fill receive buffers.
    public func eventSourceReady(_ index: Int) {
        let signal: UsedSignals? = state.withLock { s in
            guard s.active else { return nil }
            let n = host.pollEvents { event in
                switch event {
                case .connectRequest(let stream, let port):
                    hostConnectRequest(&s, stream, port: port)
                case .ready(let stream):
                    guard var connection = s.connections[stream] else { return }
                    connection.readable = true
                    s.connections[stream] = connection
                    if connection.phase == .established { flush(&s, stream) }
                }
            }
            guard n > 0 else { return nil }
            guard !s.needsReset else { return nil }
            processReceive(&s)
            return takeSignals(&s)
        }
        signal?.raise()
    }

    /// The used-buffer interrupts to raise once the lock is released.
    private struct UsedSignals {
        let interrupt: any VirtioInterrupt
        let receive: Bool
        let transmit: Bool

        func raise() {
            if receive { interrupt.signalUsedBuffers(queue: Spec.receiveQueue) }
            if transmit { interrupt.signalUsedBuffers(queue: Spec.transmitQueue) }
        }
    }

    private func takeSignals(_ s: inout State) -> UsedSignals? {
        guard let interrupt = s.interrupt else { return nil }
        let receive = s.receiveUsed && s.receive?.needsNotification() == true
        let transmit = s.transmitNeedsSignal
        s.receiveUsed = false
        s.transmitNeedsSignal = false
        return receive || transmit ? UsedSignals(interrupt: interrupt, receive: receive, transmit: transmit) : nil
    }

    // MARK: Host side

    /// A host program asked for guest port `port` on `stream`: REQUEST goes to the guest.
    private func hostConnectRequest(_ s: inout State, _ stream: UInt64, port: UInt32) {
        guard let local = allocateLocalPort(&s, guest: port) else { host.close(stream); return }
        let c = Connection(phase: .connecting, ports: PortPair(host: local, guest: port), hostInitiated: true)
        s.connections[stream] = c
        s.byPorts[c.ports] = stream
        s.localPorts.insert(local)
        enqueue(&s, op: Spec.opRequest, ports: c.ports)
    }

    private func allocateLocalPort(_ s: inout State, guest: UInt32) -> UInt32? {
        for _ in 0..<(Self.maximumConnections * 2 + 1) {
            let port = s.nextLocalPort
            s.nextLocalPort = port == UInt32.max ? 1024 : port + 1
            if !s.localPorts.contains(port), s.byPorts[PortPair(host: port, guest: guest)] == nil { return port }
        }
        return nil
    }

    /// Writes buffered guest data to the host stream; completes deferred shutdowns and closes.
    private func flush(_ s: inout State, _ token: UInt64) {
        // Taken out of the table while `pending` changes, so the buffer is uniquely referenced and
        // removeFirst works in place instead of copying it (up to 256 KiB) on every packet.
        guard var c = s.connections.removeValue(forKey: token) else { return }
        if !c.pending.isEmpty {
            switch c.pending.withUnsafeBytes({ host.send(token, $0) }) {
            case .bytes(let n) where n > 0:
                c.forwarded(n)
            case .closed:
                // The host end is gone: nothing more can be delivered.
                s.connections[token] = c
                if !c.closeWhenFlushed { enqueue(&s, op: Spec.opReset, ports: c.ports) }
                remove(&s, token)
                return
            default:
                break
            }
        }
        s.connections[token] = c
        switch c.flushOutcome {
        case .close: remove(&s, token); return
        case .shutdownWrite: host.shutdownWrite(token)
        case .keep: break
        }
        if c.wantsCreditUpdate { enqueue(&s, op: Spec.opCreditUpdate, ports: c.ports) }
    }

    private func remove(_ s: inout State, _ token: UInt64) {
        guard let c = s.connections.removeValue(forKey: token) else { return }
        host.close(token)
        if s.byPorts[c.ports] == token { s.byPorts[c.ports] = nil }
        if c.hostInitiated { s.localPorts.remove(c.ports.host) }
    }

    // MARK: Packets to the guest (rx)

    private func header(op: UInt16, ports: PortPair, length: UInt32 = 0, flags: UInt32 = 0) -> VsockHeader {
        VsockHeader(sourceCID: Spec.hostCID, destinationCID: guestCID, sourcePort: ports.host, destinationPort: ports.guest,
                    length: length, op: op, flags: flags, bufferAllocation: Self.bufferAllocation)
    }

    private func enqueue(_ s: inout State, op: UInt16, ports: PortPair, flags: UInt32 = 0) {
        guard s.control.count - s.controlStart < Self.maximumControlBacklog else { return }
        if s.controlStart > 1024, s.controlStart * 2 > s.control.count {
            s.control.removeFirst(s.controlStart)
            s.controlStart = 0
        }
        s.control.append(header(op: op, ports: ports, flags: flags))
    }

    /// A receive chain with room for a header, or nil when the driver has posted none.
    private func takeReceiveChain(_ s: inout State) -> (chain: DescriptorChain, writable: Int)? {
        if let held = s.held { return held }
        guard let queue = s.receive else { return nil }
        while true {
            let chain: DescriptorChain?
            do { chain = try queue.nextChain() } catch {
                if queue.isBroken { s.needsReset = true; return nil }
                continue
            }
            guard let chain else {
                // Out of buffers: ask for a kick when the driver posts more (2.7.10).
                if queue.enableNotifications() { continue }
                if queue.isBroken { s.needsReset = true }  // avail.idx jumped
                return nil
            }
            let writable: Int
            do { writable = try chain.lengths().writable } catch { writable = 0 }
            if writable < VsockHeader.size {
                // Unusable (bad descriptors or too short): hand it back empty.
                complete(&s, chain.head, 0)
                if s.needsReset { return nil }
                continue
            }
            s.held = (chain, writable)
            return s.held
        }
    }

    private func complete(_ s: inout State, _ head: UInt16, _ length: Int) {
        guard let queue = s.receive else { return }
        do { try queue.addUsed(head: head, length: UInt32(length)) } catch { s.needsReset = true }
        s.receiveUsed = true
    }

    /// Fills receive buffers: control packets first, then one data packet per readable
    /// connection per round, while buffers last.
    private func processReceive(_ s: inout State) {
        guard s.receive != nil else { return }
        var progress = true
        outer: while progress, !s.needsReset {
            progress = false
            while s.controlStart < s.control.count {
                guard let (chain, _) = takeReceiveChain(&s) else { break outer }
                var h = s.control[s.controlStart]
                s.controlStart += 1
                if s.controlStart == s.control.count { s.control.removeAll(keepingCapacity: true); s.controlStart = 0 }
                // Fresh credit figures for a live connection.
                if let token = s.byPorts[PortPair(host: h.sourcePort, guest: h.destinationPort)],
                   var c = s.connections[token] {
                    h.forwardCount = c.forwardCount
                    c.advertisedForwardCount = c.forwardCount
                    s.connections[token] = c
                }
                deliver(&s, chain, h, payload: 0)
                progress = true
            }
            s.candidates.removeAll(keepingCapacity: true)
            for (token, c) in s.connections where c.hasDataForGuest { s.candidates.append(token) }
            for token in s.candidates {
                guard let (chain, writable) = takeReceiveChain(&s) else { break outer }
                guard var c = s.connections[token] else { continue }
                let room = min(writable - VsockHeader.size, Self.maximumPayload, c.credit)
                guard room > 0 else { continue }
                let payload = UnsafeMutableRawBufferPointer(rebasing: scratch[VsockHeader.size..<(VsockHeader.size + room)])
                switch host.receive(token, into: payload) {
                case .bytes(let n):
                    c.sentToGuest(n)
                    s.connections[token] = c
                    var h = header(op: Spec.opReadWrite, ports: c.ports, length: UInt32(n))
                    h.forwardCount = c.forwardCount
                    deliver(&s, chain, h, payload: n)
                    progress = true
                case .wouldBlock:
                    c.readable = false
                    s.connections[token] = c
                case .closed:
                    // EOF (or a read error): the host sends no more (it may still read, after a
                    // half-close). The guest sees end of stream; once it shuts down or closes too,
                    // the connection ends with RST. Writes to a host end that is gone fail,
                    // which resets the connection.
                    c.hostEnded()
                    s.connections[token] = c
                    var h = header(op: Spec.opShutdown, ports: c.ports, flags: Spec.shutdownSend)
                    h.forwardCount = c.forwardCount
                    deliver(&s, chain, h, payload: 0)
                    progress = true
                }
            }
        }
        if !s.needsReset, s.held == nil, let queue = s.receive {
            queue.enableNotifications()
            if queue.isBroken { s.needsReset = true }
        }
    }

    /// Writes `h` (and `payload` bytes already in scratch after the header) into `chain`.
    private func deliver(_ s: inout State, _ chain: DescriptorChain, _ h: VsockHeader, payload: Int) {
        s.held = nil
        h.encode(into: scratch)
        let total = VsockHeader.size + payload
        let written: Int
        do { written = try chain.copyIn(from: UnsafeRawBufferPointer(rebasing: scratch[0..<total])) } catch { written = 0 }
        complete(&s, chain.head, written)
    }

    // MARK: Packets from the guest (tx)

    private func processTransmit(_ s: inout State) {
        guard let queue = s.transmit else { return }
        // 5.10.6.6: the device writes nothing into a transmit buffer.
        let result = queue.drain { chain in
            handleTransmitChain(&s, chain)
            return 0
        }
        if result.broken { s.needsReset = true }
        s.transmitNeedsSignal = s.transmitNeedsSignal || result.needsNotification
    }

    private func handleTransmitChain(_ s: inout State, _ chain: DescriptorChain) {
        let readable: Int
        do { readable = try chain.lengths().readable } catch { return }
        guard readable >= VsockHeader.size else { return }  // not even a header: drop
        let got: Int
        do { got = try chain.copyOut(into: transmitHeader) } catch { return }
        guard got == VsockHeader.size else { return }
        let h = VsockHeader(UnsafeRawBufferPointer(transmitHeader))
        // Only guest → host traffic exists here; anything else is dropped (5.10.6.1: the device
        // must not deliver packets with a wrong source CID).
        guard h.sourceCID == guestCID, h.destinationCID == Spec.hostCID else { return }
        guard h.type == Spec.typeStream else { reply(&s, resetFor: h); return }
        let length = Int(h.length)
        guard length <= Self.maximumPayload, length <= readable - VsockHeader.size else {
            reply(&s, resetFor: h)
            if let token = s.byPorts[PortPair(host: h.destinationPort, guest: h.sourcePort)] { remove(&s, token) }
            return
        }
        var payload = 0
        if length > 0, h.op == Spec.opReadWrite {
            let area = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<length])
            do { payload = try chain.copyOut(into: area, offset: VsockHeader.size) } catch { payload = 0 }
            guard payload == length else { reply(&s, resetFor: h); return }
        }
        handlePacket(&s, h, payload: UnsafeRawBufferPointer(rebasing: scratch[0..<payload]))
    }

    /// RST for a packet that has no place (never in answer to an RST).
    private func reply(_ s: inout State, resetFor h: VsockHeader) {
        guard h.op != Spec.opReset else { return }
        enqueue(&s, op: Spec.opReset, ports: PortPair(host: h.destinationPort, guest: h.sourcePort))
    }

    private func handlePacket(_ s: inout State, _ h: VsockHeader, payload: UnsafeRawBufferPointer) {
        let ports = PortPair(host: h.destinationPort, guest: h.sourcePort)
        guard let token = s.byPorts[ports], var c = s.connections[token] else {
            if h.op == Spec.opRequest { connectToHost(&s, h, ports) } else { reply(&s, resetFor: h) }
            return
        }
        c.takeCredit(from: h)
        let action = c.receive(guest: h, payloadCount: payload.count)
        s.connections[token] = c
        switch action {
        case .none:
            break
        case .confirm:
            guard host.accepted(token, localPort: c.ports.host) else {
                enqueue(&s, op: Spec.opReset, ports: ports)
                remove(&s, token)
                return
            }
            c.confirmed()
            s.connections[token] = c
        case .deliver:
            s.connections[token] = nil  // the table's copy shares `pending`: drop it so append does not copy
            c.pending.append(contentsOf: payload)
            s.connections[token] = c
            flush(&s, token)
        case .flush:
            flush(&s, token)
        case .creditUpdate:
            enqueue(&s, op: Spec.opCreditUpdate, ports: ports)
        case .resetAndFlush:
            enqueue(&s, op: Spec.opReset, ports: ports)
            flush(&s, token)
        case .remove:
            remove(&s, token)
        case .reset:
            enqueue(&s, op: Spec.opReset, ports: ports)
            remove(&s, token)
        }
    }

    /// Guest-initiated connection to the host's port `h.destinationPort`.
    private func connectToHost(_ s: inout State, _ h: VsockHeader, _ ports: PortPair) {
        guard let token = host.connect(port: h.destinationPort) else {
            enqueue(&s, op: Spec.opReset, ports: ports)
            return
        }
        var c = Connection(phase: .established, ports: ports)
        c.takeCredit(from: h)
        s.connections[token] = c
        s.byPorts[ports] = token
        enqueue(&s, op: Spec.opResponse, ports: ports)
    }
}


