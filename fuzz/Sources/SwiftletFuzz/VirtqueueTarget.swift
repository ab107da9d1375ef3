import Devices
import GuestMemory
#if canImport(Glibc)
import Glibc
#endif

extension FuzzTargets {
    /// The split-virtqueue walker (Devices' SplitVirtqueue and DescriptorChain) over a fuzzed guest
    /// RAM image and queue state, driven as a device drives it: chains popped and kept, walked
    /// lazily a few steps at a time and whole (`lengths`, `copyOut`, `copyIn`), returned with
    /// `addUsed` (also with heads the device never got), notifications suppressed and re-armed,
    /// `drain`, the queue disabled and enabled, and the driver rewriting RAM in between.
    ///
    /// Checks, besides no trap and no ASan report (guest RAM is `VirtioFuzzRAM`: heap blocks with
    /// red zones, two regions that touch in guest-physical space only):
    /// - every buffer a walk yields is `length` bytes inside one region, at the host address of
    ///   its guest address (an empty one has no address), and no readable buffer follows a
    ///   writable one;
    /// - every walk ends (the end, or an error) within Queue Size + 65536 buffers;
    /// - `lengths` agrees with a walk, and `copyOut` copies exactly the readable bytes a walk sees;
    /// - `addUsed` publishes the element and used.idx it was given, and throws exactly when the
    ///   head is out of range, the queue is not ready or broken; `enableNotifications` reports
    ///   more work exactly when avail.idx is 1 to Queue Size ahead, and breaks the queue beyond;
    /// - a broken queue stays broken (every `nextChain` and `addUsed` throws its reason), and a
    ///   `drain` over rings that do not overlap takes at most Queue Size entries;
    /// - every error is one line.
    ///
    /// Input: le16 size, flags (bit 0 event index, bit 1 not ready, bit 2 raw size; otherwise the
    /// size is 2^(size % 12)), le32 descriptor table, available ring and used ring addresses, the
    /// op count (mod 33), 32 six-byte op slots [op, arg, le16 x, le16 y] (see `VirtqueueOp`), then
    /// guest RAM from address 0 (64 KiB).
    static let virtqueue = FuzzTarget(
        name: "virtqueue",
        summary: "split virtqueue: chains popped, walked, copied and used over fuzzed guest RAM and queue state"
    ) { bytes in
        var input = FuzzInput(bytes)
        let rawSize = input.integer(UInt16.self)
        let flags = input.byte()
        let size = flags & 4 != 0 ? rawSize : 1 << (rawSize % 12)
        let configuration = VirtqueueConfiguration(
            size: size, descriptorTable: GuestAddress(UInt64(input.integer(UInt32.self))),
            availableRing: GuestAddress(UInt64(input.integer(UInt32.self))),
            usedRing: GuestAddress(UInt64(input.integer(UInt32.self))),
            eventIndex: flags & 1 != 0, ready: flags & 2 == 0)
        let count = Int(input.byte()) % (VirtqueueFuzzer.opSlots + 1)
        let ops = (0..<VirtqueueFuzzer.opSlots).map { _ in VirtqueueOp(&input) }.prefix(count)
        let ram = VirtioFuzzRAM.shared
        let memory = ram.fill(with: input.remaining)

        let queue: SplitVirtqueue
        do { queue = try SplitVirtqueue(memory: memory, configuration: configuration) } catch {
            requireOneLine("\(error)", "SplitVirtqueue.init")
            return
        }
        var fuzzer = VirtqueueFuzzer(queue: queue, ram: ram)
        for op in ops { fuzzer.run(op) }
        fuzzLog("virtqueue: size \(size), took \(queue.lastAvailableIndex), used \(queue.nextUsedIndex), broken \(String(describing: queue.brokenReason)), walks \(fuzzer.walks)")
    }
}

/// One step of the virtqueue target's script.
struct VirtqueueOp {
    enum Kind: CaseIterable {
        case take, walk, step, lengths, copyOut, copyIn, addUsed, addUsedAnyHead
        case disableNotifications, enableNotifications, needsNotification, drain, store16, toggleReady
    }

    var kind: Kind
    var arg: UInt8
    var x: UInt16
    var y: UInt16

    init(_ input: inout FuzzInput) {
        kind = input.pick(Kind.allCases)
        arg = input.byte()
        x = input.integer()
        y = input.integer()
    }
}

/// The device side of the virtqueue target: the queue, the chains it holds, and the checks.
struct VirtqueueFuzzer {
    static let opSlots = 32
    static let maximumHeld = 8

    let queue: SplitVirtqueue
    let ram: VirtioFuzzRAM
    var held: [DescriptorChain] = []
    /// Whole walks that ended well and badly, for `fuzzLog`.
    private(set) var walks = (ended: 0, failed: 0)
    /// Scratch for copies (the largest a copy op asks for, twice), allocated once.
    nonisolated(unsafe) private static let scratchSpace = UnsafeMutableRawBufferPointer.allocate(byteCount: 2 * 8192, alignment: 16)
    private var scratch: UnsafeMutableRawBufferPointer { Self.scratchSpace }

    init(queue: SplitVirtqueue, ram: VirtioFuzzRAM) {
        self.queue = queue
        self.ram = ram
    }

    private var memory: GuestMemory { queue.memory }
    private var size: UInt16 { queue.size }

    mutating func run(_ op: VirtqueueOp) {
        let index = held.isEmpty ? 0 : Int(op.arg) % held.count
        switch op.kind {
        case .take:
            guard let chain = nextChain() else { return }
            if held.count < Self.maximumHeld { held.append(chain) } else { held[index] = chain }
        case .walk:
            guard !held.isEmpty else { return }
            if case .success = walk(held[index]) { walks.ended += 1 } else { walks.failed += 1 }
        case .step:
            guard !held.isEmpty else { return }
            if op.arg & 0x80 != 0 { held[index].rewind() }
            for _ in 0..<(Int(op.x) % 4 + 1) {
                do {
                    guard let descriptor = try held[index].next() else { break }
                    check(descriptor)
                } catch {
                    requireOneLine(error.description, "DescriptorChain.next")
                    break
                }
            }
        case .lengths:
            guard !held.isEmpty else { return }
            checkLengths(held[index])
        case .copyOut:
            guard !held.isEmpty else { return }
            checkCopyOut(held[index], count: Int(op.x) % 8192, offset: Int(op.y))
        case .copyIn:
            guard !held.isEmpty else { return }
            let source = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<(Int(op.x) % 8192)])
            fillPattern(source, seed: op.arg)
            do {
                let written = try held[index].copyIn(from: UnsafeRawBufferPointer(source), offset: Int(op.y))
                if written < 0 || written > source.count { fatalError("copyIn wrote \(written) of \(source.count) bytes") }
            } catch {
                requireOneLine(error.description, "DescriptorChain.copyIn")
            }
        case .addUsed:
            guard !held.isEmpty else { return }
            let chain = held.remove(at: index)
            addUsed(head: chain.head, length: UInt32(op.x) | UInt32(op.y) << 16)
        case .addUsedAnyHead:
            addUsed(head: op.x, length: UInt32(op.y))
        case .disableNotifications:
            queue.disableNotifications()
        case .enableNotifications:
            checkEnableNotifications()
        case .needsNotification:
            _ = queue.needsNotification()
        case .drain:
            drain(length: UInt32(op.x))
        case .store16:
            try? memory.store(op.y, at: GuestAddress(UInt64(op.x)))
        case .toggleReady:
            queue.ready.toggle()
        }
    }

    /// `nextChain`, checking that a broken queue stays broken.
    private func nextChain() -> DescriptorChain? {
        let reason = queue.brokenReason
        do {
            let chain = try queue.nextChain()
            if let reason { fatalError("nextChain handed out a chain after the queue broke: \(reason)") }
            if let chain, chain.head >= size { fatalError("nextChain: head \(chain.head) of a queue of \(size)") }
            return chain
        } catch {
            requireOneLine(error.description, "SplitVirtqueue.nextChain")
            if let reason, error != reason { fatalError("nextChain after \(reason) threw \(error)") }
            if case .availableIndexJumped = error, !queue.isBroken { fatalError("\(error) did not break the queue") }
            return nil
        }
    }

    /// `enableNotifications` says "more arrived" exactly when avail.idx, as it left it, is 1 to
    /// Queue Size ahead; further ahead breaks the queue. Anything else sent device loops round
    /// forever when the queue's own writes moved avail.idx (rings that overlap).
    private func checkEnableNotifications() {
        let usable = queue.ready && !queue.isBroken
        let more = queue.enableNotifications()
        let published = try! memory.load(UInt16.self, at: GuestAddress(queue.configuration.availableRing.rawValue + 2))
        let ahead = published &- queue.lastAvailableIndex
        let expected = usable && ahead != 0 && ahead <= size
        if more != expected || (usable && (ahead > size) != queue.isBroken) {
            fatalError("enableNotifications said \(more) with avail.idx \(published) \(ahead) ahead of a queue of \(size), broken: \(queue.isBroken)")
        }
    }

    /// `addUsed`, checking when it may throw and what it published.
    private func addUsed(head: UInt16, length: UInt32) {
        let shouldFail = queue.isBroken || !queue.ready || head >= size
        do {
            try queue.addUsed(head: head, length: length)
            if shouldFail { fatalError("addUsed(head: \(head)) succeeded on a queue of \(size) (ready \(queue.ready), broken \(queue.isBroken))") }
        } catch {
            requireOneLine(error.description, "SplitVirtqueue.addUsed")
            if !shouldFail { fatalError("addUsed(head: \(head)) threw \(error)") }
            return
        }
        let used = queue.configuration.usedRing.rawValue
        let published = try! memory.load(UInt16.self, at: GuestAddress(used + 2))
        let slot = UInt64((queue.nextUsedIndex &- 1) & (size &- 1))
        let id = try! memory.load(UInt32.self, at: GuestAddress(used + 4 + 8 * slot))
        let usedLength = try! memory.load(UInt32.self, at: GuestAddress(used + 8 + 8 * slot))
        if published != queue.nextUsedIndex || id != UInt32(head) || usedLength != length {
            fatalError("addUsed(\(head), \(length)) published idx \(published) (expected \(queue.nextUsedIndex)), element (\(id), \(usedLength))")
        }
    }

    /// `drain` with a device that reads each request; checks the bound on what one pass takes.
    private func drain(length: UInt32) {
        let before = queue.lastAvailableIndex
        let wasBroken = queue.isBroken
        var processed = 0
        let result = queue.drain { chain in
            processed += 1
            if processed > 1 << 17 { fatalError("drain: \(processed) chains in one pass of a queue of \(size)") }
            checkLengths(chain)
            checkCopyOut(chain, count: 64, offset: 0)
            return length
        }
        if wasBroken, !result.broken || processed > 0 { fatalError("drain served a broken queue") }
        let taken = Int(queue.lastAvailableIndex &- before)
        if !ringsOverlap, taken > Int(size) {
            fatalError("drain took \(taken) entries from a queue of \(size) whose rings do not overlap")
        }
    }

    /// Whether the used ring overlaps the available ring: then the device's own writes can publish
    /// entries, and a drain may legitimately go round more than once.
    private var ringsOverlap: Bool {
        typealias L = SplitVirtqueueLayout
        let available = queue.configuration.availableRing.rawValue, used = queue.configuration.usedRing.rawValue
        return available < used + L.usedRingSize(size) && used < available + L.availableRingSize(size)
    }

    // MARK: Walks

    /// One buffer as the walk handed it out.
    private func check(_ descriptor: DescriptorChain.Descriptor) {
        let bytes = descriptor.bytes
        guard bytes.count == Int(descriptor.length) else {
            fatalError("descriptor length \(descriptor.length) but \(bytes.count) bytes")
        }
        if descriptor.length == 0 {
            if bytes.baseAddress != nil { fatalError("an empty descriptor has an address") }
            return
        }
        ram.requireInside(bytes.baseAddress, count: bytes.count, "descriptor at \(descriptor.address)")
        let expected = try? memory.bytes(at: descriptor.address, count: UInt64(descriptor.length)).baseAddress
        if expected != bytes.baseAddress { fatalError("descriptor at \(descriptor.address) maps to the wrong host address") }
    }

    /// A whole walk from the head with every check; the sums of its buffers, or its error.
    private func walk(_ chain: DescriptorChain) -> Result<(readable: Int, writable: Int), VirtqueueError> {
        var cursor = chain
        cursor.rewind()
        var readable = 0, writable = 0, count = 0
        var seenWritable = false
        while true {
            let descriptor: DescriptorChain.Descriptor
            do {
                guard let next = try cursor.next() else { break }
                descriptor = next
            } catch {
                requireOneLine(error.description, "DescriptorChain.next")
                return .failure(error)
            }
            count += 1
            if count > Int(size) + 65536 { fatalError("a walk of a queue of \(size) did not end") }
            check(descriptor)
            if descriptor.isWriteOnly {
                seenWritable = true
                writable += Int(descriptor.length)
            } else {
                if seenWritable { fatalError("readable descriptor after a writable one") }
                readable += Int(descriptor.length)
            }
        }
        return .success((readable, writable))
    }

    /// `lengths` must agree with a walk (nothing writes guest RAM between the two).
    private func checkLengths(_ chain: DescriptorChain) {
        let walked = walk(chain)
        let lengths: Result<(readable: Int, writable: Int), VirtqueueError>
        do { lengths = .success(try chain.lengths()) } catch { lengths = .failure(error) }
        switch (walked, lengths) {
        case let (.success(a), .success(b)) where a == b: break
        case let (.failure(a), .failure(b)) where a == b: break
        default: fatalError("lengths() \(lengths) disagrees with a walk \(walked)")
        }
    }

    /// `copyOut` must copy exactly the readable bytes a walk sees, from `offset` on.
    private func checkCopyOut(_ chain: DescriptorChain, count: Int, offset: Int) {
        let destination = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<count])
        let copied: Int
        do { copied = try chain.copyOut(into: destination, offset: offset) } catch {
            requireOneLine(error.description, "DescriptorChain.copyOut")
            return
        }
        guard case let .success(sums) = walk(chain) else { return }  // failed past what it copied
        let expected = min(count, max(0, sums.readable - offset))
        guard copied == expected else { fatalError("copyOut copied \(copied) bytes, the walk says \(expected)") }
        // The same bytes, gathered again buffer by buffer into the other half of scratch.
        let gathered = UnsafeMutableRawBufferPointer(rebasing: scratch[8192..<(8192 + copied)])
        var cursor = chain
        cursor.rewind()
        var skip = offset, at = 0
        while at < copied, let descriptor = try? cursor.next(), !descriptor.isWriteOnly {
            if skip >= descriptor.bytes.count { skip -= descriptor.bytes.count; continue }
            let n = min(descriptor.bytes.count - skip, copied - at)
            (gathered.baseAddress! + at).copyMemory(from: descriptor.bytes.baseAddress! + skip, byteCount: n)
            at += n
            skip = 0
        }
        if copied > 0, memcmp(destination.baseAddress!, gathered.baseAddress!, copied) != 0 {
            fatalError("copyOut copied other bytes than the chain's readable part")
        }
    }
}
