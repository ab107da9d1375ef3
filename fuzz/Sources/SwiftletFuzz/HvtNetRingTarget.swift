import GuestMemory
import Host
@testable import VMM
#if canImport(Glibc)
import Glibc
#endif

extension FuzzTargets {
    /// The hvt ABI-2 network ring (`HvtNetRing.processBatch`, the tender side of Solo5 v0.12.1's
    /// hvt_ring.h) over a fuzzed ring and fuzzed guest indices: up to four batches, the guest
    /// moving ent_tail and com_head (and scribbling on the tender's cache line) between them. The
    /// ring sits right below a guard page and guest RAM (64 KiB) between two, so nothing may be
    /// written outside either. Device handles: 1 an in-memory port, 2 a port whose every send
    /// and receive fails (a tap that is down); the rest are no devices.
    ///
    /// Input: a flags byte (bit 0: port 1's sends fail, bit 1: its receives fail, bit 2: the guest
    /// scribbles on ent_head/com_tail/needs_kick before each batch), a byte for the frames port 1
    /// has waiting, a u16 for the length its receive reports (it may exceed the buffer, which the
    /// ring must clamp), a byte b (1 + b % 4 batches), per batch a u32 ent_tail, a u32 com_head and
    /// a u32 scribble; the rest is the entry array from ring offset 0x80 (32 bytes an entry).
    ///
    /// Checks per batch: a fault is one line and ends the run; otherwise every published entry is
    /// consumed (ent_head = ent_tail, whatever the guest scribbled), each read gets exactly one
    /// commit in order, with the entry's id, a Solo5 code and a length no longer than its buffer.
    static let hvtNetRing = FuzzTarget(
        name: "hvt-net-ring",
        summary: "Solo5 hvt ABI-2 network ring: fuzzed entries and guest indices over guarded RAM"
    ) { bytes in
        var input = FuzzInput(bytes)
        let flags = input.byte()
        let fixture = HvtNetRingFixture.shared
        fixture.port.sendFails = flags & 1 != 0
        fixture.port.receiveFails = flags & 2 != 0
        fixture.port.framesWaiting = Int(input.byte())
        fixture.port.reportedLength = Int(input.integer(UInt16.self))
        let batches = (0..<(1 + Int(input.byte()) % 4)).map { _ in
            (tail: input.integer(UInt32.self), comHead: input.integer(UInt32.self), scribble: input.integer(UInt32.self))
        }
        _ = fixture.ram.zeroed()
        _ = fixture.ringArea.zeroed()
        let ring = fixture.ringArea.host + fixture.ringOffset
        let entries = input.remaining
        if !entries.isEmpty {
            let n = min(entries.count, HvtNetRing.byteCount - HvtNetRing.entriesOffset)
            (ring + HvtNetRing.entriesOffset).copyMemory(from: entries.baseAddress!, byteCount: n)
        }
        // A fresh ring per input: its own indices start at 0, as at boot.
        let netRing = HvtNetRing(ring: ring, ram: fixture.ram.memory, ports: fixture.ports, log: VMMLog(level: .quiet))
        var head: UInt32 = 0, commitTail: UInt32 = 0

        for batch in batches {
            ring.storeBytes(of: batch.tail, toByteOffset: HvtNetRing.entTailOffset, as: UInt32.self)
            ring.storeBytes(of: batch.comHead, toByteOffset: HvtNetRing.comHeadOffset, as: UInt32.self)
            if flags & 4 != 0 {
                for offset in [HvtNetRing.entHeadOffset, HvtNetRing.comTailOffset, HvtNetRing.needsKickOffset] {
                    ring.storeBytes(of: batch.scribble, toByteOffset: offset, as: UInt32.self)
                }
            }
            // What the batch will consume, read before it runs (the ring never writes entries).
            let pending = batch.tail &- head
            let reads: [(id: UInt32, length: UInt32)] = pending > HvtNetRing.size ? [] : (0..<pending).compactMap { i in
                let entry = ring + HvtNetRing.entriesOffset + Int((head &+ i) & HvtNetRing.mask) * HvtNetRing.entrySize
                guard entry.loadUnaligned(fromByteOffset: 0, as: UInt32.self) == HvtNetRing.opRead else { return nil }
                return (entry.loadUnaligned(fromByteOffset: 20, as: UInt32.self), entry.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
            }
            let consumed: Int
            do throws(HvtNetRing.Fault) { consumed = try netRing.processBatch() } catch {
                requireOneLine(error.message, "net ring")
                return
            }
            guard consumed == Int(pending) else { fatalError("net ring consumed \(consumed) of \(pending) entries") }
            guard pending > 0 else { continue }
            head = batch.tail
            let published = ring.load(fromByteOffset: HvtNetRing.entHeadOffset, as: UInt32.self)
            guard published == head else { fatalError("net ring published ent_head \(published), expected \(head)") }
            for read in reads {
                let commit = ring + HvtNetRing.commitsOffset + Int(commitTail & HvtNetRing.mask) * HvtNetRing.commitSize
                let id = commit.load(fromByteOffset: 0, as: UInt32.self)
                let result = commit.load(fromByteOffset: 4, as: Int32.self)
                let length = commit.load(fromByteOffset: 8, as: UInt32.self)
                guard id == read.id, [HvtHypercalls.ok, HvtHypercalls.again, HvtHypercalls.invalid,
                                      HvtHypercalls.unspecified].contains(result), length <= read.length else {
                    fatalError("net ring commit \(commitTail): id \(id) result \(result) length \(length) for a read of id \(read.id) into \(read.length) bytes")
                }
                commitTail &+= 1
            }
            let comTail = ring.load(fromByteOffset: HvtNetRing.comTailOffset, as: UInt32.self)
            guard reads.isEmpty || comTail == commitTail else { fatalError("net ring published com_tail \(comTail), expected \(commitTail)") }
        }
    }
}

/// What the ring target builds once: guest RAM, the ring's area and the ports.
final class HvtNetRingFixture: @unchecked Sendable {
    static let shared = HvtNetRingFixture()

    /// A port whose behaviour each input sets.
    final class FuzzPort: HvtFramePort {
        var sendFails = false, receiveFails = false
        var framesWaiting = 0, reportedLength = 0
        private(set) var checksum: UInt8 = 0

        func send(_ frame: UnsafeRawBufferPointer) throws(HostError) {
            if sendFails { throw HostError("write swfuzz0", errno: EIO) }
            // Read the frame whole, as a tap's write does: it must be guest RAM.
            for byte in frame { checksum &+= byte }
        }

        func receive(into buffer: UnsafeMutableRawBufferPointer) throws(HostError) -> Int? {
            if receiveFails { throw HostError("read swfuzz0", errno: EIO) }
            guard framesWaiting > 0 else { return nil }
            framesWaiting -= 1
            let n = min(reportedLength, buffer.count)
            if n > 0 { buffer.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0xEE, count: n) }
            return reportedLength
        }
    }

    /// A tap that is down: every frame fails.
    final class FailingPort: HvtFramePort {
        func send(_ frame: UnsafeRawBufferPointer) throws(HostError) { throw HostError("write swfuzz1", errno: EIO) }
        func receive(into buffer: UnsafeMutableRawBufferPointer) throws(HostError) -> Int? { throw HostError("read swfuzz1", errno: EIO) }
    }

    let ram = GuardedGuestRAM(regionSizes: [64 << 10])
    /// The ring's pages; the ring ends where the upper guard page starts.
    let ringArea: GuardedGuestRAM
    let ringOffset: Int
    let port = FuzzPort()
    let ports: [HvtNetRing.Port?]

    private init() {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let pages = (HvtNetRing.byteCount + page - 1) / page * page
        ringArea = GuardedGuestRAM(regionSizes: [UInt64(pages)])
        ringOffset = pages - HvtNetRing.byteCount
        ports = [nil, .init(io: port, maxFrame: 1518, counters: DeviceCounters()),
                 .init(io: FailingPort(), maxFrame: 1518, counters: DeviceCounters()), nil]
    }
}
