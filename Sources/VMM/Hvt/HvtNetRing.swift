import GuestMemory
import Host
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where ring frames go and come from: a tap, or an in-memory port in unit tests.
protocol HvtFramePort: AnyObject {
    /// Sends one frame.
    func send(_ frame: UnsafeRawBufferPointer) throws(HostError)
    /// Receives one frame into `buffer`; nil when none is waiting.
    func receive(into buffer: UnsafeMutableRawBufferPointer) throws(HostError) -> Int?
}

extension TapDevice: HvtFramePort {
    func send(_ frame: UnsafeRawBufferPointer) throws(HostError) { try write(frame) }
    func receive(into buffer: UnsafeMutableRawBufferPointer) throws(HostError) -> Int? { try read(into: buffer) }
}

/// The hvt ABI-2 network ring (Solo5 v0.11+, `include/hvt_ring.h` of v0.12.1), tender side: a
/// single-producer ring of entries the guest writes and a ring of commits the tender writes, in
/// 49,280 bytes of guest memory right after guest RAM.
///
/// ```
/// 0x00   u32 ent_tail   u32 com_head        cache line 0: the guest's
/// 0x40   u32 ent_head   u32 com_tail   u32 needs_kick   cache line 1: ours
/// 0x80   entry[1024]: u32 operation (1 write, 2 read), u32 handle, u64 data GPA, u32 len, u32 id, u64 -
/// 0x8080 commit[1024]: u32 id, i32 ret, u32 len, u32 -
/// ```
/// Indices run freely (u32, wrapping); slot = index & 1023. Writes are fire-and-forget (no
/// commit); each read gets exactly one commit at once (OK with the frame, AGAIN when none waits,
/// EINVAL for a bad handle, EUNSPEC when the tap fails). The guest kicks port 0x600 (an ioeventfd) only when `needs_kick`
/// says this thread is about to sleep.
///
/// Everything in the ring is untrusted. Our own indices live here, never read back from guest
/// memory; the guest's are checked on every batch. As solo5-hvt does, an entry with an unknown
/// operation, or a write with a bad handle, is skipped; a read with a bad handle gets EINVAL.
/// Beyond solo5-hvt, a write longer than the device's largest frame is skipped too. What breaks
/// the ring itself ends the run with one line: a buffer outside guest RAM, more than 1,024
/// entries published, or 1,024 read commits left unconsumed. Processing allocates nothing.
final class HvtNetRing: @unchecked Sendable {
    static let size: UInt32 = 1024
    static let mask: UInt32 = size - 1
    /// Bytes of `struct hvt_ring`.
    static let byteCount = 0x80 + Int(size) * (entrySize + commitSize)
    static let entrySize = 32, commitSize = 16
    static let entriesOffset = 0x80, commitsOffset = 0x80 + Int(size) * 32
    static let entTailOffset = 0x00, comHeadOffset = 0x04
    static let entHeadOffset = 0x40, comTailOffset = 0x44, needsKickOffset = 0x48
    /// Spins of the I/O thread before it sleeps (HVT_RING_POLL_ITERS).
    static let pollIterations = 4096
    /// The port the guest kicks (a 32-bit OUT, any value).
    static let kickPort: UInt64 = 0x600
    static let opWrite: UInt32 = 1, opRead: UInt32 = 2

    /// One attached network device, by manifest handle.
    struct Port {
        let io: any HvtFramePort
        let maxFrame: UInt64
        let counters: DeviceCounters
    }

    private let ring: UnsafeMutableRawPointer
    private let ram: GuestMemory
    private let ports: [Port?]
    /// Our indices: the truth, whatever the guest writes into our cache line.
    private var head: UInt32 = 0
    private var commitTail: UInt32 = 0
    /// Entries skipped (unknown operation, bad handle, oversized write), for diagnostics.
    let skipped = Atomic<UInt64>(0)
    private let warnedSkip = Atomic<Bool>(false)
    private let log: VMMLog

    /// - Parameters:
    ///   - ring: host address of the ring (zeroed, `byteCount` bytes, outside `ram`).
    ///   - ram: guest RAM, where every buffer an entry names must lie.
    ///   - ports: attached net devices by manifest index.
    init(ring: UnsafeMutableRawPointer, ram: GuestMemory, ports: [Port?], log: VMMLog) {
        self.ring = ring
        self.ram = ram
        self.ports = ports
        self.log = log
    }

    /// Why processing stopped for good: one line for the user.
    struct Fault: Error {
        let message: String
    }

    /// Processes what the guest has published, at most one ring's worth (so a guest that never
    /// stops producing cannot keep the caller from checking for a stop). Returns how many entries
    /// it consumed.
    func processBatch() throws(Fault) -> Int {
        let tail = SharedMemory.load32(ring + Self.entTailOffset)
        let pending = tail &- head
        if pending == 0 { return 0 }
        guard pending <= Self.size else {
            throw Fault(message: "net ring: the guest published \(pending) entries (ent_tail \(tail), ent_head \(head)); the ring holds \(Self.size)")
        }
        for _ in 0..<pending {
            let entry = ring + Self.entriesOffset + Int(head & Self.mask) * Self.entrySize
            let operation = entry.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
            let handle = entry.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
            let data = entry.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            let length = UInt64(entry.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
            let id = entry.loadUnaligned(fromByteOffset: 20, as: UInt32.self)
            switch operation {
            case Self.opWrite:
                try write(handle: handle, data: data, length: length)
            case Self.opRead:
                try read(handle: handle, data: data, length: length, id: id)
            default:
                skip("an unknown operation \(operation)")
            }
            head &+= 1
            // Publish per entry: a guest waiting for ring space (or for a read's commit, which
            // `read` published already) sees progress at once.
            SharedMemory.store32(ring + Self.entHeadOffset, head)
        }
        return Int(pending)
    }

    private func port(_ handle: UInt32) -> Port? {
        Int(handle) < ports.count ? ports[Int(handle)] : nil
    }

    private func buffer(_ data: UInt64, _ length: UInt64) throws(Fault) -> UnsafeMutableRawBufferPointer {
        do { return try ram.bytes(at: GuestAddress(data), count: length) } catch {
            throw Fault(message: "invalid guest buffer in net ring entry \(head & Self.mask): \(error)")
        }
    }

    private func write(handle: UInt32, data: UInt64, length: UInt64) throws(Fault) {
        guard let port = port(handle) else { return skip("a write to handle \(handle), which is no network device") }
        guard length > 0, length <= port.maxFrame else { return skip("a write of \(length) bytes (largest frame \(port.maxFrame))") }
        let frame = try buffer(data, length)
        do {
            try port.io.send(UnsafeRawBufferPointer(frame))
            port.counters.record(fromGuest: length)
        } catch {
            // A tap that refuses a frame (down, full): the frame is lost, as on a wire.
            skip("a frame the tap refused (\(error))")
        }
    }

    private func read(handle: UInt32, data: UInt64, length: UInt64, id: UInt32) throws(Fault) {
        let comHead = SharedMemory.load32(ring + Self.comHeadOffset)
        guard commitTail &- comHead < Self.size else {
            throw Fault(message: "net ring: the guest left \(commitTail &- comHead) read completions unconsumed (the ring holds \(Self.size))")
        }
        var result = HvtHypercalls.invalid, received: UInt64 = 0
        if let port = port(handle) {
            let frame = try buffer(data, length)
            do {
                if let n = try port.io.receive(into: frame), n > 0 {
                    result = HvtHypercalls.ok
                    // A tap returns a longer frame's full length although it copied only what
                    // fits: never tell the guest more than its buffer holds.
                    received = min(UInt64(n), length)
                    port.counters.record(intoGuest: received)
                } else {
                    result = HvtHypercalls.again
                }
            } catch {
                result = HvtHypercalls.unspecified
            }
        }
        let commit = ring + Self.commitsOffset + Int(commitTail & Self.mask) * Self.commitSize
        commit.storeBytes(of: id, toByteOffset: 0, as: UInt32.self)
        commit.storeBytes(of: result, toByteOffset: 4, as: Int32.self)
        commit.storeBytes(of: UInt32(received), toByteOffset: 8, as: UInt32.self)
        commitTail &+= 1
        SharedMemory.store32(ring + Self.comTailOffset, commitTail)
    }

    private func skip(_ what: @autoclosure () -> String) {
        skipped.add(1, ordering: .relaxed)
        if !warnedSkip.exchange(true, ordering: .relaxed) {
            log.warn("net ring: skipped \(what()) (further skips are counted, not logged)")
        }
    }

    // MARK: The I/O thread

    /// Whether work is waiting (for the sleep handshake).
    private var hasWork: Bool { SharedMemory.load32(ring + Self.entTailOffset) != head }

    /// The longest the I/O thread sleeps without looking at the ring (milliseconds).
    static let longestSleep: Int32 = 1000

    /// The I/O thread's loop: spin briefly for entries, then set `needs_kick`, look once more
    /// (after a full barrier, so a guest that published just before reads `needs_kick` = 1) and
    /// sleep on the kick eventfd. Returns when `stop` is signalled or on a fault. Before it
    /// returns on a stop it sends what the guest queued last: a unikernel that writes its final
    /// frames and halts at once must not lose them (the vCPU has stopped by then).
    ///
    /// The sleep is bounded (1 ms, doubling while idle up to `longestSleep`): the handshake needs
    /// the guest's `mfence` to be a real one, and a guest whose fence is not (one a KVM emulates
    /// instruction by instruction may not be) or a guest that never kicks would otherwise stall for good. A lost kick now costs
    /// at most the current sleep; an idle guest costs about one wake-up a second.
    func serve(kick: EventFD, stop: EventFD, stopping: () -> Bool) throws(Fault) {
        defer { _ = try? processBatch() }
        var idle = 0
        var sleep: Int32 = 1
        while !stopping() {
            if try processBatch() > 0 {
                idle = 0
                sleep = 1
                continue
            }
            idle += 1
            if idle < Self.pollIterations {
                SharedMemory.cpuRelax()
                continue
            }
            SharedMemory.store32(ring + Self.needsKickOffset, 1)
            SharedMemory.fullBarrier()
            if !hasWork {
                let ready = kick.waitReadable(or: stop, timeoutMilliseconds: sleep)
                if ready.this {
                    _ = kick.drain()
                    sleep = 1
                } else {
                    sleep = min(sleep * 2, Self.longestSleep)
                }
            }
            SharedMemory.store32(ring + Self.needsKickOffset, 0)
            idle = 0
        }
    }
}
