import Testing
@testable import Devices

// VsockConnection's transitions and credit, without sockets or queues.

private typealias Spec = VirtioVsockSpec

private func packet(_ op: UInt16, flags: UInt32 = 0, bufAlloc: UInt32 = 1000, fwd: UInt32 = 0) -> VsockHeader {
    VsockHeader(sourceCID: 3, destinationCID: 2, sourcePort: 5000, destinationPort: 1024, op: op, flags: flags,
                bufferAllocation: bufAlloc, forwardCount: fwd)
}

private func established() -> VsockConnection {
    var c = VsockConnection(phase: .established, ports: VsockPorts(host: 1024, guest: 5000))
    c.takeCredit(from: packet(Spec.opRequest))
    return c
}

@Suite struct VsockConnectionTests {
    @Test func creditFollowsTheGuestsFigures() {
        var c = established()
        #expect(c.credit == 1000)
        c.sentToGuest(400)
        #expect(c.credit == 600)
        c.takeCredit(from: packet(Spec.opCreditUpdate, bufAlloc: 1000, fwd: 400))
        #expect(c.credit == 1000)
        c.sentToGuest(1000)
        #expect(c.credit == 0)
        #expect(!c.hasDataForGuest)
    }

    @Test func creditCountersWrap() {
        var c = established()
        c.sentCount = .max - 9
        c.peerForwardCount = .max - 9
        c.sentToGuest(20)
        #expect(c.credit == 980)
    }

    @Test func responseConfirmsOnlyWhileConnecting() {
        var c = VsockConnection(phase: .connecting, ports: VsockPorts(host: 1024, guest: 5000), hostInitiated: true)
        #expect(c.receive(guest: packet(Spec.opResponse), payloadCount: 0) == .confirm)
        #expect(!c.hasDataForGuest)
        c.takeCredit(from: packet(Spec.opResponse))
        c.confirmed()
        #expect(c.phase == .established && c.hasDataForGuest)
        #expect(c.receive(guest: packet(Spec.opResponse), payloadCount: 0) == .reset)
    }

    @Test func dataIsDeliveredWithinOurBuffer() {
        var c = established()
        #expect(c.receive(guest: packet(Spec.opReadWrite), payloadCount: 10) == .deliver)
        c.pending = [UInt8](repeating: 0, count: Int(VsockConnection.bufferAllocation) - 10)
        #expect(c.receive(guest: packet(Spec.opReadWrite), payloadCount: 10) == .deliver)
        #expect(c.receive(guest: packet(Spec.opReadWrite), payloadCount: 11) == .reset, "the guest ignored our credit")
    }

    @Test func forwardingAdvertisesCreditAfterTheThreshold() {
        var c = established()
        c.pending = [UInt8](repeating: 1, count: Int(VsockConnection.creditUpdateThreshold))
        c.forwarded(Int(VsockConnection.creditUpdateThreshold) - 1)
        #expect(!c.wantsCreditUpdate)
        c.forwarded(1)
        #expect(c.wantsCreditUpdate && c.pending.isEmpty)
        c.sentToGuest(0)
        #expect(!c.wantsCreditUpdate, "a packet carried the new fwd_cnt")
        #expect(c.receive(guest: packet(Spec.opCreditRequest), payloadCount: 0) == .creditUpdate)
        #expect(c.receive(guest: packet(Spec.opCreditUpdate), payloadCount: 0) == VsockConnection.Action.none)
    }

    @Test func halfShutdownWaitsForPendingData() {
        var c = established()
        c.pending = [1, 2, 3]
        #expect(c.receive(guest: packet(Spec.opShutdown, flags: Spec.shutdownSend), payloadCount: 0) == .flush)
        #expect(c.guestSendDone && !c.closeWhenFlushed)
        #expect(c.flushOutcome == .keep)
        c.forwarded(3)
        #expect(c.flushOutcome == .shutdownWrite)
        #expect(c.receive(guest: packet(Spec.opReadWrite), payloadCount: 1) == VsockConnection.Action.none)
    }

    @Test func fullShutdownOrHostGoneResets() {
        var c = established()
        #expect(c.receive(guest: packet(Spec.opShutdown, flags: Spec.shutdownSend | Spec.shutdownReceive), payloadCount: 0) == .resetAndFlush)
        #expect(c.flushOutcome == .close)
        var d = established()
        d.hostEnded()
        #expect(!d.readable && !d.hasDataForGuest)
        #expect(d.receive(guest: packet(Spec.opShutdown, flags: Spec.shutdownReceive), payloadCount: 0) == .resetAndFlush)
    }

    @Test func resetClosesQuietly() {
        var c = established()
        #expect(c.receive(guest: packet(Spec.opReset), payloadCount: 0) == .flush)
        #expect(c.closeWhenFlushed && c.flushOutcome == .close)
        var d = VsockConnection(phase: .connecting, ports: VsockPorts(host: 1024, guest: 5000), hostInitiated: true)
        #expect(d.receive(guest: packet(Spec.opReset), payloadCount: 0) == .remove)
    }

    @Test func unexpectedOpsReset() {
        var c = established()
        #expect(c.receive(guest: packet(Spec.opRequest), payloadCount: 0) == .reset)
        #expect(c.receive(guest: packet(99), payloadCount: 0) == .reset)
        var d = VsockConnection(phase: .connecting, ports: VsockPorts(host: 1024, guest: 5000))
        #expect(d.receive(guest: packet(Spec.opReadWrite), payloadCount: 1) == .reset)
    }
}
