/// A connection's host and guest ports: (local port, peer port) from the device's side.
public struct VsockPorts: Hashable, Sendable {
    public var host: UInt32
    public var guest: UInt32
    public init(host: UInt32, guest: UInt32) { self.host = host; self.guest = guest }
}

/// One vsock stream connection's state machine (VIRTIO 1.2 5.10.6): its phase, the guest's credit
/// and ours (5.10.6.3), guest data waiting for the host, and what each guest packet asks the device
/// to do. Pure: no sockets and no queues, so every transition is unit-tested on its own.
public struct VsockConnection: Sendable {
    public enum Phase: Sendable, Equatable { case connecting, established }

    /// What the device must do after a guest packet (`receive(guest:payloadCount:)`).
    public enum Action: Sendable, Equatable {
        /// Nothing more (credit taken, or data the connection no longer wants).
        case none
        /// RESPONSE to our REQUEST: tell the host program, then `confirmed()`.
        case confirm
        /// Append the packet's payload to `pending` and flush it.
        case deliver
        /// Flush `pending` (it may complete a deferred shutdown or close).
        case flush
        /// Send a CREDIT_UPDATE.
        case creditUpdate
        /// Fully shut down: confirm with RST, then flush (the connection closes once flushed).
        case resetAndFlush
        /// Close without a word (the guest reset a connection not yet established).
        case remove
        /// Answer RST and close.
        case reset
    }

    /// What a flush left to do, once `pending` is as empty as the host allowed.
    public enum FlushOutcome: Sendable, Equatable {
        case keep
        /// Close the stream (the guest reset or fully shut down, and its data is out).
        case close
        /// Shut the host stream's write side (the guest will send no more).
        case shutdownWrite
    }

    /// Receive space advertised per connection (buf_alloc).
    public static let bufferAllocation: UInt32 = 256 << 10
    /// Forwarded bytes after which a CREDIT_UPDATE is sent unasked.
    public static let creditUpdateThreshold: UInt32 = 64 << 10

    public var phase: Phase
    public var ports: VsockPorts
    /// Host-initiated connection: `ports.host` is one of our local ports.
    public var hostInitiated = false
    /// The host stream may have bytes for the guest (edge seen, no would-block since).
    public var readable = true
    /// The host closed its end (EOF); SHUTDOWN went to the guest.
    public var hostClosed = false
    /// The guest will send nothing more: shut the host's write side once `pending` drains.
    public var guestSendDone = false
    /// The guest reset or fully shut down: close once `pending` drains.
    public var closeWhenFlushed = false
    /// Guest's credit (its last buf_alloc and fwd_cnt), and what we sent it.
    public var peerBufferAllocation: UInt32 = 0
    public var peerForwardCount: UInt32 = 0
    public var sentCount: UInt32 = 0
    /// Bytes of guest data written to the host, and the value we last told the guest.
    public var forwardCount: UInt32 = 0
    public var advertisedForwardCount: UInt32 = 0
    /// Guest data the host has not taken yet (≤ bufferAllocation).
    public var pending: [UInt8] = []

    public init(phase: Phase, ports: VsockPorts, hostInitiated: Bool = false) {
        self.phase = phase
        self.ports = ports
        self.hostInitiated = hostInitiated
    }

    /// Bytes the guest can still take (its buf_alloc − (tx_cnt − fwd_cnt)).
    public var credit: Int { Int(peerBufferAllocation) - Int(sentCount &- peerForwardCount) }

    /// Whether host data may go to the guest this round.
    public var hasDataForGuest: Bool { phase == .established && readable && !hostClosed && !closeWhenFlushed && credit > 0 }

    /// Whether enough was forwarded since the guest last heard our fwd_cnt to tell it unasked.
    public var wantsCreditUpdate: Bool {
        phase == .established && !closeWhenFlushed && forwardCount &- advertisedForwardCount >= Self.creditUpdateThreshold
    }

    /// Takes the guest's credit figures from a packet header.
    public mutating func takeCredit(from h: VsockHeader) {
        peerBufferAllocation = h.bufferAllocation
        peerForwardCount = h.forwardCount
    }

    /// The host program was told: data flows both ways now.
    public mutating func confirmed() {
        phase = .established
        readable = true
    }

    /// `count` bytes of host data went to the guest in a packet carrying our fwd_cnt.
    public mutating func sentToGuest(_ count: Int) {
        sentCount &+= UInt32(count)
        advertisedForwardCount = forwardCount
    }

    /// The host took `count` bytes of `pending`.
    public mutating func forwarded(_ count: Int) {
        pending.removeFirst(count)
        forwardCount &+= UInt32(count)
    }

    /// The host end sends no more (EOF): SHUTDOWN goes to the guest.
    public mutating func hostEnded() {
        hostClosed = true
        readable = false
    }

    /// What a flush leaves to do.
    public var flushOutcome: FlushOutcome {
        guard pending.isEmpty else { return .keep }
        if closeWhenFlushed { return .close }
        return guestSendDone ? .shutdownWrite : .keep
    }

    /// Handles a guest packet of this connection (credit already taken with `takeCredit`):
    /// updates the state and says what the device must do.
    public mutating func receive(guest h: VsockHeader, payloadCount: Int) -> Action {
        typealias Spec = VirtioVsockSpec
        switch (h.op, phase) {
        case (Spec.opResponse, .connecting):
            return .confirm
        case (Spec.opReadWrite, .established):
            guard !closeWhenFlushed, !guestSendDone else { return .none }
            // The guest ignored our credit.
            guard pending.count + payloadCount <= Int(Self.bufferAllocation) else { return .reset }
            return .deliver
        case (Spec.opCreditUpdate, .established):
            return .none  // credit taken; the receive path sends what it now allows
        case (Spec.opCreditRequest, .established):
            return .creditUpdate
        case (Spec.opShutdown, .established):
            if h.flags & Spec.shutdownSend != 0 { guestSendDone = true }
            if h.flags & (Spec.shutdownSend | Spec.shutdownReceive) == (Spec.shutdownSend | Spec.shutdownReceive) || hostClosed {
                // Fully shut: confirm with RST (as Linux's own transport does) and close once the
                // buffered data is out.
                closeWhenFlushed = true
                return .resetAndFlush
            }
            return .flush
        case (Spec.opReset, _):
            closeWhenFlushed = true
            return phase == .established ? .flush : .remove
        default:
            // A second REQUEST on a live connection, an unknown op, or one that does not fit the
            // phase.
            return .reset
        }
    }
}
