import GuestMemory
import Synchronization

/// What the driver programmed for one virtqueue through the transport (queue_size, queue_desc,
/// queue_driver, queue_device, queue_enable) plus the negotiated VIRTIO_F_EVENT_IDX. Plain values:
/// a transport keeps one per queue while the driver writes the registers one by one.
public struct VirtqueueConfiguration: Sendable, Equatable {
    /// Queue Size: a power of two in 1...32768 (2.7).
    public var size: UInt16
    /// Guest address of the descriptor table ("Descriptor Area"), 16-byte aligned.
    public var descriptorTable: GuestAddress
    /// Guest address of the available ring ("Driver Area"), 2-byte aligned.
    public var availableRing: GuestAddress
    /// Guest address of the used ring ("Device Area"), 4-byte aligned.
    public var usedRing: GuestAddress
    /// VIRTIO_F_EVENT_IDX was negotiated: notifications use used_event/avail_event (2.7.7, 2.7.10)
    /// instead of the flags fields.
    public var eventIndex: Bool
    /// The driver enabled the queue. A queue that is not ready hands out no chains.
    public var ready: Bool

    public init(
        size: UInt16,
        descriptorTable: GuestAddress,
        availableRing: GuestAddress,
        usedRing: GuestAddress,
        eventIndex: Bool = false,
        ready: Bool = true
    ) {
        self.size = size
        self.descriptorTable = descriptorTable
        self.availableRing = availableRing
        self.usedRing = usedRing
        self.eventIndex = eventIndex
        self.ready = ready
    }
}

/// The device side of one split virtqueue (VIRTIO 1.2 section 2.7).
///
/// One device owns it and drives it from one thread at a time (it is deliberately not `Sendable`;
/// keep it inside the device's lock or on its event-loop thread). The guest's driver writes the
/// same rings concurrently from its vCPUs, which is why ring indices are read and written with
/// atomics and fences (see SplitVirtqueueLayout.swift) and why everything read from the guest is
/// validated before it is used.
///
/// The rings are checked once, at init, against guest memory with their full sizes (event fields
/// included) and alignments, and their host addresses are kept: guest memory regions never move
/// while `memory` lives, and the queue holds it. Per request nothing is allocated: `nextChain`
/// returns a `DescriptorChain` value that walks descriptors lazily.
///
/// Typical device loop (batching notifications, 2.7.10):
///
///     repeat {
///         queue.disableNotifications()
///         while let chain = try queue.nextChain() { …; try queue.addUsed(head: chain.head, length: n) }
///     } while queue.enableNotifications()
///     if queue.needsNotification() { interrupt.raise() }
public final class SplitVirtqueue {
    /// The guest RAM the rings and buffers live in.
    public let memory: GuestMemory
    /// The layout this queue was set up with (validated).
    public let configuration: VirtqueueConfiguration
    /// Whether the queue hands out chains; a transport clears it when the driver disables the
    /// queue and sets it again when the driver re-enables it.
    public var ready: Bool
    /// avail ring position of the next chain to take: free-running, wraps at 2^16 (2.7.6).
    public private(set) var lastAvailableIndex: UInt16 = 0
    /// used.idx as last published by this queue: free-running, wraps at 2^16 (2.7.8).
    public private(set) var nextUsedIndex: UInt16 = 0
    /// Set when the driver corrupted the queue beyond recovery; every later `nextChain` and
    /// `addUsed` throws it. The device should then set DEVICE_NEEDS_RESET (2.1.2).
    public private(set) var brokenReason: VirtqueueError?

    /// Host addresses of the three areas, valid while `memory` lives.
    private let descriptors: UnsafeMutableRawPointer
    private let available: UnsafeMutableRawPointer
    private let used: UnsafeMutableRawPointer
    /// Whether the device currently wants available-buffer notifications (2.7.10).
    private var notificationsEnabled = true
    /// The avail_event value we last wrote and fenced, so an idle poll does not fence again.
    private var armedAvailableEvent: UInt16?
    /// used.idx when `needsNotification` last decided (vring_need_event's `old`). Both sides start
    /// at 0 after a reset, so 0 is exact before the first decision.
    private var signalledUsedIndex: UInt16 = 0

    /// Checks `configuration` against `memory` and sets the queue up with both indices at 0, as
    /// after a reset. Throws when the size is not a power of two in 1...32768, or when a ring is
    /// misaligned (2.7: descriptor table 16, available ring 2, used ring 4) or not wholly inside one
    /// region of guest memory (sizes 16·N, 6 + 2·N and 6 + 8·N bytes).
    public init(memory: GuestMemory, configuration: VirtqueueConfiguration) throws(VirtqueueError) {
        typealias L = SplitVirtqueueLayout
        let size = configuration.size
        guard L.isValidSize(size) else { throw .invalidQueueSize(size) }
        descriptors = try Self.ring(.descriptorTable, configuration.descriptorTable, L.descriptorTableSize(size),
                                    L.descriptorTableAlignment, in: memory)
        available = try Self.ring(.availableRing, configuration.availableRing, L.availableRingSize(size),
                                  L.availableRingAlignment, in: memory)
        used = try Self.ring(.usedRing, configuration.usedRing, L.usedRingSize(size),
                             L.usedRingAlignment, in: memory)
        self.memory = memory
        self.configuration = configuration
        self.ready = configuration.ready
    }

    /// Resolves one ring to host memory after checking its guest alignment and bounds. The host
    /// alignment is checked too, because ring indices are accessed as atomics.
    private static func ring(
        _ ring: VirtqueueError.Ring, _ address: GuestAddress, _ length: UInt64, _ alignment: UInt64,
        in memory: GuestMemory
    ) throws(VirtqueueError) -> UnsafeMutableRawPointer {
        guard address.rawValue & (alignment - 1) == 0 else {
            throw .misalignedRing(ring, address: address.rawValue, alignment: alignment)
        }
        let bytes: UnsafeMutableRawBufferPointer
        do { bytes = try memory.bytes(at: address, count: length) } catch {
            throw .ringOutOfMemory(ring, address: address.rawValue, length: length)
        }
        // length > 0 always (size >= 1), so the base address exists.
        let host = bytes.baseAddress!
        guard UInt(bitPattern: host) & UInt(alignment - 1) == 0 else { throw .ringHostMisaligned(ring) }
        return host
    }

    /// Queue Size.
    public var size: UInt16 { configuration.size }
    /// VIRTIO_F_EVENT_IDX is in use.
    public var eventIndex: Bool { configuration.eventIndex }
    /// The driver broke the queue; see `brokenReason`.
    public var isBroken: Bool { brokenReason != nil }

    // MARK: Taking chains (2.7.6, 2.7.13)

    /// Takes the next chain the driver made available, or nil when there is none (or the queue is
    /// not ready). Chain errors (a bad head) consume the ring entry and leave the queue usable;
    /// `availableIndexJumped` marks the queue broken.
    public func nextChain() throws(VirtqueueError) -> DescriptorChain? {
        if let brokenReason { throw brokenReason }
        guard ready else { return nil }
        var published = loadAcquire16(available + SplitVirtqueueLayout.availableIndexOffset)
        if published == lastAvailableIndex {
            // Empty. With event index and notifications on, tell the driver where we stand before
            // going idle, then look once more: it may have added a chain while reading the old
            // avail_event, and would not notify us for it (2.7.10).
            guard eventIndex, notificationsEnabled, armAvailableEvent() else { return nil }
            published = loadAcquire16(available + SplitVirtqueueLayout.availableIndexOffset)
            if published == lastAvailableIndex { return nil }
        }
        _ = try outstanding(published: published)
        // size is a power of two, so the mask is "modulo Queue Size" (2.7.6).
        let slot = lastAvailableIndex & (size &- 1)
        let head = UInt16(littleEndian: (available + SplitVirtqueueLayout.availableEntryOffset(slot))
            .loadUnaligned(as: UInt16.self))
        lastAvailableIndex &+= 1
        guard head < size else { throw .headIndexOutOfRange(head: head, size: size) }
        return DescriptorChain(head: head, memory: memory, table: descriptors, size: size)
    }

    /// How many chains the driver has published past the last one taken, given avail.idx
    /// `published`. The driver can have at most Queue Size chains outstanding; an index further
    /// ahead is a corrupted (or hostile) ring, and guessing which entries are real would be worse:
    /// that breaks the queue.
    private func outstanding(published: UInt16) throws(VirtqueueError) -> UInt16 {
        let count = published &- lastAvailableIndex
        guard count <= size else {
            let error = VirtqueueError.availableIndexJumped(lastSeen: lastAvailableIndex, published: published, size: size)
            brokenReason = error
            throw error
        }
        return count
    }

    // MARK: Returning chains (2.7.8, 2.7.14)

    /// Returns chain `head` to the driver with `length` bytes written into its device-writable
    /// buffers, and publishes it at once by advancing used.idx (release: the element is visible
    /// before the index, 2.7.8.2). Call `needsNotification()` afterwards, once per batch.
    public func addUsed(head: UInt16, length: UInt32) throws(VirtqueueError) {
        if let brokenReason { throw brokenReason }
        guard ready else { throw .notReady }
        guard head < size else { throw .usedHeadOutOfRange(head: head, size: size) }
        let element = used + SplitVirtqueueLayout.usedEntryOffset(nextUsedIndex & (size &- 1))
        element.storeBytes(of: UInt32(head).littleEndian, as: UInt32.self)
        element.storeBytes(of: length.littleEndian, toByteOffset: 4, as: UInt32.self)
        nextUsedIndex &+= 1
        storeRelease16(used + SplitVirtqueueLayout.usedIndexOffset, nextUsedIndex)
    }

    /// Whether the driver wants a used-buffer notification (an interrupt) for what `addUsed`
    /// published since the last call (2.7.7). With VIRTIO_F_EVENT_IDX: the spec's
    /// vring_need_event(used_event, new used.idx, used.idx at the last call); otherwise: something
    /// was used and the driver did not set VIRTQ_AVAIL_F_NO_INTERRUPT. Either way a call with
    /// nothing newly used says no, so calling it once per batch is enough.
    public func needsNotification() -> Bool {
        guard ready else { return false }
        // Order our used.idx store before the load of the driver's used_event/flags: the driver
        // writes those, then re-reads used.idx (2.7.7); each side must see the other's update.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        let new = nextUsedIndex
        let old = signalledUsedIndex
        signalledUsedIndex = new
        if eventIndex {
            let event = loadRelaxed16(available + SplitVirtqueueLayout.usedEventOffset(size))
            return SplitVirtqueueLayout.needsEvent(event: event, new: new, old: old)
        }
        if old == new { return false }
        let flags = loadRelaxed16(available + SplitVirtqueueLayout.availableFlagsOffset)
        return flags & SplitVirtqueueLayout.availableFlagNoInterrupt == 0
    }

    // MARK: Suppressing the driver's notifications (2.7.10)

    /// Asks the driver not to notify (kick) the device while it works through the queue. Without
    /// event index this sets VIRTQ_USED_F_NO_NOTIFY. With event index nothing is written: the
    /// driver notifies only when its index crosses avail_event, which stays where it was, so at
    /// most one notification already armed can still arrive (the spec treats both as hints).
    public func disableNotifications() {
        notificationsEnabled = false
        guard !eventIndex else { return }
        storeRelaxed16(used + SplitVirtqueueLayout.usedFlagsOffset, SplitVirtqueueLayout.usedFlagNoNotify)
    }

    /// Asks the driver to notify the device again: clears VIRTQ_USED_F_NO_NOTIFY, or with event
    /// index sets avail_event to the next chain we expect. Returns true when chains arrived while
    /// notifications were off: the driver may not have notified for them, so the device must
    /// process them before it waits. An avail.idx more than Queue Size ahead breaks the queue
    /// here as in `nextChain`, and the answer is false.
    @discardableResult
    public func enableNotifications() -> Bool {
        notificationsEnabled = true
        guard ready, brokenReason == nil else { return false }
        if eventIndex {
            _ = armAvailableEvent()
        } else {
            storeRelaxed16(used + SplitVirtqueueLayout.usedFlagsOffset, 0)
            atomicMemoryFence(ordering: .sequentiallyConsistent)
        }
        // Judge the index here rather than leave it to the next nextChain: a used ring laid over
        // the available ring puts used.flags on avail.idx, so disableNotifications sets it to 1
        // and this function to 0 again, and a device answering "more arrived" with another
        // pass would go round forever without nextChain ever seeing the bad index.
        let published = loadAcquire16(available + SplitVirtqueueLayout.availableIndexOffset)
        do { return try outstanding(published: published) != 0 } catch { return false }
    }

    /// Writes avail_event = lastAvailableIndex ("notify me once you publish past what I took") and
    /// fences it before the caller re-reads avail.idx. Returns false when it was already armed
    /// there, so the caller's earlier read of avail.idx already came after the fence.
    private func armAvailableEvent() -> Bool {
        guard armedAvailableEvent != lastAvailableIndex else { return false }
        storeRelaxed16(used + SplitVirtqueueLayout.availableEventOffset(size), lastAvailableIndex)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        armedAvailableEvent = lastAvailableIndex
        return true
    }
}

/// A queue belongs to one device and one thread at a time; sharing it would race its indices.
@available(*, unavailable)
extension SplitVirtqueue: Sendable {}
