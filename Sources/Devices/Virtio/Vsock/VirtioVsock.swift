import Host
import CHost
import GuestMemory
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A virtio socket device, virtio-vsock (VIRTIO 1.2 section 5.10), with a Firecracker-style
/// Unix-socket backend on the host side (host CID 2, stream sockets only).
///
/// Queues (5.10.2): 0 = rx (device → guest packets), 1 = tx (guest → device), 2 = event (unused:
/// its buffers stay with the device). Configuration (5.10.4): le64 guest_cid. No feature bits:
/// a driver that negotiates none gets stream sockets (5.10.3).
///
/// Backend, as Firecracker's vsock documents it:
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
/// The event source is one private epoll set (edge-triggered) holding the listening socket and
/// every connection socket; connections come and go inside it.
public final class VirtioVsock: VirtioDevice {
    typealias Spec = VirtioVsockSpec
    public static let queueSize: UInt16 = 256
    /// Receive space advertised per connection (buf_alloc).
    public static let bufferAllocation: UInt32 = 256 << 10
    /// Forwarded bytes after which a CREDIT_UPDATE is sent unasked.
    static let creditUpdateThreshold: UInt32 = 64 << 10
    /// Most connections at once (pending CONNECT lines included).
    public static let maximumConnections = 1024
    /// Largest payload per packet, either direction.
    public static let maximumPayload = 64 << 10
    /// Control packets waiting for receive buffers (beyond that, new ones are dropped).
    static let maximumControlBacklog = 4096
    /// Longest `CONNECT <port>\n` line accepted.
    static let maximumCommandLine = 64

    struct PortPair: Hashable { var host: UInt32; var guest: UInt32 }

    struct Connection {
        enum Phase { case awaitingCommand, connecting, established }
        let fd: Int32
        var phase: Phase
        var ports = PortPair(host: 0, guest: 0)
        /// Host-initiated connection: `ports.host` is one of our local ports.
        var hostInitiated = false
        /// The socket may have bytes for the guest (edge seen, no EAGAIN since).
        var readable = true
        /// The host closed its end (EOF); SHUTDOWN went to the guest.
        var hostClosed = false
        /// The guest will send nothing more: shut the socket's write side once `pending` drains.
        var guestSendDone = false
        /// The guest reset or fully shut down: close once `pending` drains.
        var closeWhenFlushed = false
        /// Guest's credit (its last buf_alloc and fwd_cnt), and what we sent it.
        var peerBufferAllocation: UInt32 = 0
        var peerForwardCount: UInt32 = 0
        var sentCount: UInt32 = 0
        /// Bytes of guest data written to the host socket, and the value we last told the guest.
        var forwardCount: UInt32 = 0
        var advertisedForwardCount: UInt32 = 0
        /// Guest data the host socket has not taken yet (≤ bufferAllocation).
        var pending: [UInt8] = []

        var credit: Int { Int(peerBufferAllocation) - Int(sentCount &- peerForwardCount) }
    }

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
        var nextToken: UInt64 = 1
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
    private let epoll: Int32
    private let listener: Int32
    /// Packet staging area, used only under `state`'s lock.
    nonisolated(unsafe) private let scratch: UnsafeMutableRawBufferPointer
    /// A guest packet's header as read from the transmitq, used only under `state`'s lock.
    nonisolated(unsafe) private let transmitHeader: UnsafeMutableRawBufferPointer
    /// epoll's ready tokens, used only under `state`'s lock.
    nonisolated(unsafe) private let readyTokens: UnsafeMutableBufferPointer<UInt64>
    static let readyTokenLimit = 64
    private let lifetime = Mutex(false)

    /// The guest's CID (≥ 3).
    public let guestCID: UInt64
    /// The Unix socket host programs connect to; `<udsPath>_<port>` for guest-initiated ones.
    public let udsPath: String

    public var deviceType: UInt16 { VirtioDeviceType.vsock }
    public var queueCount: Int { 3 }
    public var maximumQueueSize: UInt16 { Self.queueSize }
    public var deviceFeatures: UInt64 { 0 }
    public var configurationSize: Int { Spec.configurationSize }
    public var eventSources: [Int32] { [epoll] }
    public var needsReset: Bool { state.withLock { $0.needsReset } }

    /// Listens on `udsPath` (a stale socket file there is removed first).
    public init(guestCID: UInt64, udsPath: String) throws(VirtioDeviceError) {
        guard guestCID >= 3, guestCID < 0xFFFF_FFFF else {
            throw VirtioDeviceError("virtio-vsock: guest CID \(guestCID) is reserved (use 3...4294967294)")
        }
        self.guestCID = guestCID
        self.udsPath = udsPath
        let poll = chost_epoll_create()
        guard poll >= 0 else { throw VirtioDeviceError("virtio-vsock: epoll_create1: \(HostError.text(errno: errno))") }
        do { listener = try VsockSocket.listen(path: udsPath) } catch {
            close(poll)
            throw error
        }
        epoll = poll
        // Allocated once: nothing on the packet path allocates.
        scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: VsockHeader.size + Self.maximumPayload, alignment: 16)
        transmitHeader = UnsafeMutableRawBufferPointer.allocate(byteCount: VsockHeader.size, alignment: 16)
        readyTokens = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: Self.readyTokenLimit)
        state = Mutex(State())
        VsockSocketFiles.register(udsPath)
    }

    deinit {
        state.withLock { s in
            for connection in s.connections.values { close(connection.fd) }
            s.connections = [:]
        }
        close(listener)
        unlink(udsPath)
        VsockSocketFiles.unregister(udsPath)
        close(epoll)
        scratch.deallocate()
        transmitHeader.deallocate()
        readyTokens.deallocate()
    }

    /// Open connections (any phase).
    public var connectionCount: Int { state.withLock { $0.connections.count } }

    public func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        withUnsafeBytes(of: guestCID.littleEndian) { copyConfiguration($0, offset: offset, into: data) }
    }

    public func writeConfiguration(offset: Int, data: UnsafeRawBufferPointer) {}

    public func activate(features: UInt64, memory: GuestMemory, queues: [SplitVirtqueue?],
                         interrupt: any VirtioInterrupt) throws(VirtioDeviceError) {
        let handover = QueueHandover(queues: queues)
        let epoll = self.epoll, listener = self.listener
        state.withLock { s in
            Self.closeAll(&s, epoll: epoll)
            s.receive = handover.take(0)
            s.transmit = handover.take(1)
            s.event = handover.take(2)
            s.interrupt = interrupt
            s.needsReset = false
            s.active = true
            // Listen only while a driver is there: connections waiting in the backlog before then
            // would keep the event loop's poll readable with nobody to serve them.
            VsockSocket.epollAdd(epoll, listener, token: 0, events: VsockSocket.epollIn | VsockSocket.epollET)
        }
    }

    public func reset() {
        let epoll = self.epoll, listener = self.listener
        state.withLock { s in
            if s.active { VsockSocket.epollRemove(epoll, listener) }
            Self.closeAll(&s, epoll: epoll)
            s.receive = nil; s.transmit = nil; s.event = nil
            s.interrupt = nil
            s.needsReset = false
            s.active = false
        }
    }

    private static func closeAll(_ s: inout State, epoll: Int32) {
        for connection in s.connections.values { close(connection.fd) }
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

    /// The epoll set is readable: accept clients, read CONNECT lines, note readable sockets,
    /// flush buffered guest data, then fill receive buffers.
    public func eventSourceReady(_ index: Int) {
        let signal: UsedSignals? = state.withLock { s in
            guard s.active else { return nil }
            let n = chost_epoll_wait_tokens(epoll, readyTokens.baseAddress, Int32(Self.readyTokenLimit), 0)
            guard n > 0 else { return nil }
            for token in readyTokens.prefix(Int(n)) {
                if token == 0 { acceptClients(&s); continue }
                guard var connection = s.connections[token] else { continue }
                connection.readable = true
                s.connections[token] = connection
                switch connection.phase {
                case .awaitingCommand: readCommand(&s, token)
                case .connecting: break
                case .established: flush(&s, token)
                }
            }
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

    private func acceptClients(_ s: inout State) {
        while let fd = VsockSocket.accept(listener) {
            guard s.connections.count < Self.maximumConnections else { close(fd); continue }
            let token = s.nextToken
            s.nextToken += 1
            s.connections[token] = Connection(fd: fd, phase: .awaitingCommand)
            VsockSocket.epollAdd(epoll, fd, token: token)
            readCommand(&s, token)
        }
    }

    /// Reads `CONNECT <port>\n` (peeking, so bytes after the line stay in the socket).
    private func readCommand(_ s: inout State, _ token: UInt64) {
        guard let connection = s.connections[token] else { return }
        var line = [UInt8](repeating: 0, count: Self.maximumCommandLine)
        let n = line.withUnsafeMutableBytes { VsockSocket.receive(connection.fd, $0, flags: Int32(MSG_PEEK)) }
        if n == -Int(EAGAIN) { return }
        guard n > 0 else { remove(&s, token); return }
        guard let newline = line.prefix(n).firstIndex(of: UInt8(ascii: "\n")) else {
            if n >= Self.maximumCommandLine { remove(&s, token) }
            return
        }
        _ = line.withUnsafeMutableBytes { VsockSocket.receive(connection.fd, UnsafeMutableRawBufferPointer(rebasing: $0[0...newline])) }
        var text = String(decoding: line[..<newline], as: UTF8.self)
        if text.hasSuffix("\r") { text.removeLast() }
        let words = text.split(separator: " ", omittingEmptySubsequences: true)
        guard words.count == 2, words[0] == "CONNECT", let port = UInt32(words[1]) else {
            remove(&s, token)
            return
        }
        guard let local = allocateLocalPort(&s, guest: port) else { remove(&s, token); return }
        var c = connection
        c.phase = .connecting
        c.hostInitiated = true
        c.ports = PortPair(host: local, guest: port)
        s.connections[token] = c
        s.byPorts[c.ports] = token
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

    /// Writes buffered guest data to the host socket; completes deferred shutdowns and closes.
    private func flush(_ s: inout State, _ token: UInt64) {
        // Taken out of the table while `pending` changes, so the buffer is uniquely referenced and
        // removeFirst works in place instead of copying it (up to 256 KiB) on every packet.
        guard var c = s.connections.removeValue(forKey: token) else { return }
        if !c.pending.isEmpty {
            let n = c.pending.withUnsafeBytes { VsockSocket.send(c.fd, $0) }
            if n > 0 {
                c.pending.removeFirst(n)
                c.forwardCount &+= UInt32(n)
            } else if n < 0, n != -Int(EAGAIN) {
                // The host end is gone: nothing more can be delivered.
                s.connections[token] = c
                if !c.closeWhenFlushed { enqueue(&s, op: Spec.opReset, ports: c.ports) }
                remove(&s, token)
                return
            }
        }
        s.connections[token] = c
        if c.pending.isEmpty {
            if c.closeWhenFlushed { remove(&s, token); return }
            if c.guestSendDone { shutdown(c.fd, Int32(SHUT_WR)) }
        }
        if c.phase == .established, !c.closeWhenFlushed,
           c.forwardCount &- c.advertisedForwardCount >= Self.creditUpdateThreshold {
            enqueue(&s, op: Spec.opCreditUpdate, ports: c.ports)
        }
    }

    private func remove(_ s: inout State, _ token: UInt64) {
        guard let c = s.connections.removeValue(forKey: token) else { return }
        close(c.fd)  // also leaves the epoll set
        if c.phase != .awaitingCommand, s.byPorts[c.ports] == token { s.byPorts[c.ports] = nil }
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
            for (token, c) in s.connections
            where c.phase == .established && c.readable && !c.hostClosed && !c.closeWhenFlushed && c.credit > 0 {
                s.candidates.append(token)
            }
            for token in s.candidates {
                guard let (chain, writable) = takeReceiveChain(&s) else { break outer }
                guard var c = s.connections[token] else { continue }
                let room = min(writable - VsockHeader.size, Self.maximumPayload, c.credit)
                guard room > 0 else { continue }
                let payload = UnsafeMutableRawBufferPointer(rebasing: scratch[VsockHeader.size..<(VsockHeader.size + room)])
                let n = VsockSocket.receive(c.fd, payload)
                if n > 0 {
                    c.sentCount &+= UInt32(n)
                    c.advertisedForwardCount = c.forwardCount
                    s.connections[token] = c
                    var h = header(op: Spec.opReadWrite, ports: c.ports, length: UInt32(n))
                    h.forwardCount = c.forwardCount
                    deliver(&s, chain, h, payload: n)
                    progress = true
                } else if n == -Int(EAGAIN) {
                    c.readable = false
                    s.connections[token] = c
                } else {
                    // EOF (or a read error): the host sends no more (it may still read, after a
                    // half-close). The guest sees end of stream; once it shuts down or closes too,
                    // the connection ends with RST. Writes to a host end that is gone fail with
                    // EPIPE, which resets the connection.
                    c.hostClosed = true
                    c.readable = false
                    s.connections[token] = c
                    var h = header(op: Spec.opShutdown, ports: c.ports, flags: Spec.shutdownSend)
                    h.forwardCount = c.forwardCount
                    deliver(&s, chain, h, payload: 0)
                    progress = true
                }
            }
        }
        if !s.needsReset, s.held == nil { _ = s.receive?.enableNotifications() }
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
        c.peerBufferAllocation = h.bufferAllocation
        c.peerForwardCount = h.forwardCount
        s.connections[token] = c
        switch (h.op, c.phase) {
        case (Spec.opResponse, .connecting):
            let ok = Array("OK \(c.ports.host)\n".utf8)
            let n = ok.withUnsafeBytes { VsockSocket.send(c.fd, $0) }
            guard n == ok.count else {
                enqueue(&s, op: Spec.opReset, ports: ports)
                remove(&s, token)
                return
            }
            c.phase = .established
            c.readable = true
            s.connections[token] = c
        case (Spec.opReadWrite, .established):
            guard !c.closeWhenFlushed, !c.guestSendDone else { return }
            guard c.pending.count + payload.count <= Int(Self.bufferAllocation) else {
                // The guest ignored our credit.
                enqueue(&s, op: Spec.opReset, ports: ports)
                remove(&s, token)
                return
            }
            s.connections[token] = nil  // the table's copy shares `pending`: drop it so append does not copy
            c.pending.append(contentsOf: payload)
            s.connections[token] = c
            flush(&s, token)
        case (Spec.opCreditUpdate, .established):
            break  // credit taken above; processReceive sends what it now allows
        case (Spec.opCreditRequest, .established):
            enqueue(&s, op: Spec.opCreditUpdate, ports: ports)
        case (Spec.opShutdown, .established):
            if h.flags & Spec.shutdownSend != 0 { c.guestSendDone = true }
            if h.flags & (Spec.shutdownSend | Spec.shutdownReceive) == (Spec.shutdownSend | Spec.shutdownReceive) || c.hostClosed {
                // Fully shut: confirm with RST (as Linux's own transport does) and close once the
                // buffered data is out.
                c.closeWhenFlushed = true
                s.connections[token] = c
                enqueue(&s, op: Spec.opReset, ports: ports)
            } else {
                s.connections[token] = c
            }
            flush(&s, token)
        case (Spec.opReset, _):
            c.closeWhenFlushed = true
            s.connections[token] = c
            if c.phase == .established { flush(&s, token) } else { remove(&s, token) }
        case (Spec.opRequest, _):
            // A second REQUEST on a live connection: reset it.
            enqueue(&s, op: Spec.opReset, ports: ports)
            remove(&s, token)
        default:
            // Unknown op, or one that does not fit the connection's phase.
            enqueue(&s, op: Spec.opReset, ports: ports)
            remove(&s, token)
        }
    }

    /// Guest-initiated connection to `<udsPath>_<port>`.
    private func connectToHost(_ s: inout State, _ h: VsockHeader, _ ports: PortPair) {
        guard s.connections.count < Self.maximumConnections,
              let fd = VsockSocket.connect(path: "\(udsPath)_\(h.destinationPort)") else {
            enqueue(&s, op: Spec.opReset, ports: ports)
            return
        }
        let token = s.nextToken
        s.nextToken += 1
        var c = Connection(fd: fd, phase: .established)
        c.ports = ports
        c.peerBufferAllocation = h.bufferAllocation
        c.peerForwardCount = h.forwardCount
        s.connections[token] = c
        s.byPorts[ports] = token
        VsockSocket.epollAdd(epoll, fd, token: token)
        enqueue(&s, op: Spec.opResponse, ports: ports)
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

    static func removeAll() {
        for path in paths.withLock({ $0.paths }) { unlink(path) }
    }
}
