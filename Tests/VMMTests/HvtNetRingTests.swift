import Foundation
import GuestMemory
import Host
import Synchronization
import Testing
@testable import VMM

/// The ABI-2 network ring against plain memory and an in-memory port: no KVM, no tap. Entries
/// are written here as a guest driver (Solo5's bindings) writes them.
@Suite struct HvtNetRingTests {
    /// An in-memory "tap": frames sent, and frames waiting to be received.
    /// A frame port the ring's I/O thread uses while the test reads it: behind a lock
    /// (ThreadSanitizer reported the unguarded array).
    final class FakePort: HvtFramePort, @unchecked Sendable {
        private let frames = Mutex<(sent: [[UInt8]], incoming: [[UInt8]])>(([], []))
        var sent: [[UInt8]] { frames.withLock { $0.sent } }
        var incoming: [[UInt8]] {
            get { frames.withLock { $0.incoming } }
            set { frames.withLock { $0.incoming = newValue } }
        }
        func send(_ frame: UnsafeRawBufferPointer) throws(HostError) { frames.withLock { $0.sent.append(Array(frame)) } }
        func receive(into buffer: UnsafeMutableRawBufferPointer) throws(HostError) -> Int? {
            frames.withLock { f -> Int? in
                guard !f.incoming.isEmpty else { return nil }
                let frame = f.incoming.removeFirst()
                let n = min(frame.count, buffer.count)
                buffer.copyBytes(from: frame.prefix(n))
                return n
            }
        }
    }

    /// 1 MiB of guest RAM, a ring outside it, device handle 1 = the fake port.
    final class Fixture: @unchecked Sendable {
        let ram = try! GuestMemory(size: 1 << 20)
        let ringMemory = UnsafeMutableRawPointer.allocate(byteCount: HvtNetRing.byteCount, alignment: 64)
        let port = FakePort()
        let counters = DeviceCounters()
        let ring: HvtNetRing

        init() {
            ringMemory.initializeMemory(as: UInt8.self, repeating: 0, count: HvtNetRing.byteCount)
            ring = HvtNetRing(ring: ringMemory, ram: ram,
                              ports: [nil, .init(io: port, maxFrame: 1518, counters: counters)],
                              log: VMMLog(level: .quiet))
        }

        func u32(_ offset: Int) -> UInt32 { ringMemory.load(fromByteOffset: offset, as: UInt32.self) }
        func setU32(_ offset: Int, _ v: UInt32) { ringMemory.storeBytes(of: v, toByteOffset: offset, as: UInt32.self) }

        /// Publishes one entry at ent_tail, as the guest does.
        func submit(op: UInt32, handle: UInt32, data: UInt64, len: UInt32, id: UInt32) {
            let tail = u32(HvtNetRing.entTailOffset)
            let e = HvtNetRing.entriesOffset + Int(tail & HvtNetRing.mask) * HvtNetRing.entrySize
            ringMemory.storeBytes(of: op, toByteOffset: e, as: UInt32.self)
            ringMemory.storeBytes(of: handle, toByteOffset: e + 4, as: UInt32.self)
            ringMemory.storeBytes(of: data, toByteOffset: e + 8, as: UInt64.self)
            ringMemory.storeBytes(of: len, toByteOffset: e + 16, as: UInt32.self)
            ringMemory.storeBytes(of: id, toByteOffset: e + 20, as: UInt32.self)
            setU32(HvtNetRing.entTailOffset, tail &+ 1)
        }

        /// The next commit (id, ret, len), consumed as the guest does.
        func takeCommit() -> (id: UInt32, ret: Int32, len: UInt32)? {
            let head = u32(HvtNetRing.comHeadOffset)
            guard head != u32(HvtNetRing.comTailOffset) else { return nil }
            let c = HvtNetRing.commitsOffset + Int(head & HvtNetRing.mask) * HvtNetRing.commitSize
            setU32(HvtNetRing.comHeadOffset, head &+ 1)
            return (ringMemory.load(fromByteOffset: c, as: UInt32.self), ringMemory.load(fromByteOffset: c + 4, as: Int32.self),
                    ringMemory.load(fromByteOffset: c + 8, as: UInt32.self))
        }
    }

    @Test func layoutIsSolo5s() {
        #expect(HvtNetRing.byteCount == 0xC080)
        #expect(HvtNetRing.commitsOffset == 0x8080)
        #expect(HvtNetRing.byteCount <= Int(2 << 20))
    }

    @Test func writesGoOutWithoutCommitsAndReadsGetOneEach() throws {
        let f = Fixture()
        try f.ram.write([UInt8](repeating: 0xAB, count: 60), at: GuestAddress(0x1000))
        f.submit(op: 1, handle: 1, data: 0x1000, len: 60, id: 7)
        f.submit(op: 1, handle: 1, data: 0x1000, len: 42, id: 8)
        #expect(try f.ring.processBatch() == 2)
        #expect(f.port.sent.map(\.count) == [60, 42])
        #expect(f.takeCommit() == nil, "writes are fire-and-forget")
        #expect(f.u32(HvtNetRing.entHeadOffset) == 2)

        f.submit(op: 2, handle: 1, data: 0x2000, len: 1514, id: 9)
        #expect(try f.ring.processBatch() == 1)
        let again = try #require(f.takeCommit())
        #expect(again == (9, 1, 0), "nothing waiting: AGAIN")

        f.port.incoming = [[UInt8](repeating: 0x5A, count: 98)]
        f.submit(op: 2, handle: 1, data: 0x2000, len: 1514, id: 10)
        #expect(try f.ring.processBatch() == 1)
        let got = try #require(f.takeCommit())
        #expect(got == (10, 0, 98))
        #expect(try f.ram.read(at: GuestAddress(0x2000), count: 98) == [UInt8](repeating: 0x5A, count: 98))
        #expect(f.counters.statistics(id: "n", kind: "net") == .init(id: "n", kind: "net", requests: 3, bytesIn: 98, bytesOut: 102))
    }

    @Test func badEntriesAreRefusedOneByOne() throws {
        let f = Fixture()
        f.submit(op: 7, handle: 1, data: 0x1000, len: 60, id: 1)       // unknown operation: skipped
        f.submit(op: 1, handle: 0, data: 0x1000, len: 60, id: 2)       // no device at 0: skipped
        f.submit(op: 1, handle: 1, data: 0x1000, len: 4096, id: 3)     // bigger than a frame: skipped
        f.submit(op: 1, handle: 1, data: 0x1000, len: 0, id: 4)        // empty: skipped
        f.submit(op: 2, handle: 99, data: 0x1000, len: 60, id: 5)      // read, no device: EINVAL
        #expect(try f.ring.processBatch() == 5)
        #expect(f.port.sent.isEmpty)
        #expect(f.ring.skipped.load(ordering: .relaxed) == 4)
        let commit = try #require(f.takeCommit())
        #expect(commit == (5, 2, 0))
        // The ring goes on working.
        f.submit(op: 1, handle: 1, data: 0x1000, len: 60, id: 6)
        #expect(try f.ring.processBatch() == 1)
        #expect(f.port.sent.count == 1)
    }

    func fault(_ f: Fixture) -> String {
        do { _ = try f.ring.processBatch(); return "" } catch { return error.message }
    }

    @Test func buffersOutsideRAMEndTheRun() {
        for (op, data, len) in [(UInt32(1), UInt64(1 << 20), UInt32(60)), (1, (1 << 20) - 30, 60), (2, UInt64.max - 10, 60),
                                (2, 0xFFFF_F000, 64)] {
            let f = Fixture()
            f.submit(op: op, handle: 1, data: data, len: len, id: 1)
            #expect(fault(f).contains("invalid guest buffer in net ring entry 0"), "\(op) \(data)")
        }
    }

    @Test func indicesPastTheRingEndTheRun() {
        let f = Fixture()
        f.setU32(HvtNetRing.entTailOffset, 5000)
        #expect(fault(f).contains("the guest published 5000 entries"))
        // Wrapping indices are fine: a ring that starts near UInt32.max.
        let g = Fixture()
        g.ringMemory.storeBytes(of: UInt32.max, toByteOffset: HvtNetRing.entTailOffset, as: UInt32.self)
        #expect(fault(g).contains("published"))
    }

    @Test func unconsumedCommitsEndTheRun() throws {
        let f = Fixture()
        for i in 0..<1024 {
            f.submit(op: 2, handle: 1, data: 0x1000, len: 64, id: UInt32(i))
            if i % 512 == 511 { _ = try f.ring.processBatch() }
        }
        f.submit(op: 2, handle: 1, data: 0x1000, len: 64, id: 1024)
        #expect(fault(f).contains("1024 read completions unconsumed"))
    }

    @Test func guestWritesToOurIndicesAreIgnored() throws {
        let f = Fixture()
        f.setU32(HvtNetRing.entHeadOffset, 900)     // the guest scribbles on our cache line
        f.submit(op: 1, handle: 1, data: 0x1000, len: 60, id: 1)
        #expect(try f.ring.processBatch() == 1)
        #expect(f.u32(HvtNetRing.entHeadOffset) == 1)
    }

    @Test func framesQueuedBeforeAStopAreStillSent() throws {
        // A unikernel that writes its last replies and halts at once: nothing it queued is lost.
        let f = Fixture()
        f.submit(op: 1, handle: 1, data: 0x1000, len: 60, id: 1)
        f.submit(op: 1, handle: 1, data: 0x1000, len: 61, id: 2)
        try f.ring.serve(kick: try EventFD(), stop: try EventFD()) { true }
        #expect(f.port.sent.map(\.count) == [60, 61])
    }

    @Test func theIOThreadSleepsWithNeedsKickAndWakesOnAKick() throws {
        let f = Fixture()
        let kick = try EventFD(), stop = try EventFD()
        final class Flags: Sendable { let stopping = Atomic<Bool>(false); let done = Atomic<Bool>(false) }
        let flags = Flags()
        let thread = Thread {
            try? f.ring.serve(kick: kick, stop: stop) { flags.stopping.load(ordering: .relaxed) }
            flags.done.store(true, ordering: .relaxed)
        }
        thread.start()
        // After its spins it says it sleeps.
        var waited = 0
        while f.u32(HvtNetRing.needsKickOffset) != 1 && waited < 2000 { usleep(1000); waited += 1 }
        #expect(f.u32(HvtNetRing.needsKickOffset) == 1)
        try f.ram.write([UInt8](repeating: 1, count: 60), at: GuestAddress(0x1000))
        f.submit(op: 1, handle: 1, data: 0x1000, len: 60, id: 1)
        kick.signal()
        waited = 0
        while f.u32(HvtNetRing.entHeadOffset) != 1 && waited < 2000 { usleep(1000); waited += 1 }
        #expect(f.port.sent.count == 1, "the kick woke it")
        flags.stopping.store(true, ordering: .relaxed)
        stop.signal()
        waited = 0
        while !flags.done.load(ordering: .relaxed) && waited < 2000 { usleep(1000); waited += 1 }
        let ended = flags.done.load(ordering: .relaxed)
        #expect(ended, "stop ends the thread")
    }
}
