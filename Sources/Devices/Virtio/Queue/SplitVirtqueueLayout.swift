import Synchronization

/// Byte layout of a split virtqueue (VIRTIO 1.2 section 2.7), shared by the device side here and
/// by anything that has to lay rings out (tests playing the driver, a future snapshot format).
/// All fields are little-endian.
public enum SplitVirtqueueLayout {
    /// The largest Queue Size a split virtqueue may have (2.7: "Queue Size ... maximum 32768").
    public static let maximumSize: UInt16 = 32768

    /// struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; } (2.7.5).
    public static let descriptorSize: UInt64 = 16
    /// The buffer continues via the `next` field (2.7.5).
    public static let descriptorFlagNext: UInt16 = 1
    /// The buffer is device-writable; otherwise device-readable (2.7.5).
    public static let descriptorFlagWrite: UInt16 = 2
    /// The buffer holds a table of descriptors (2.7.5.3).
    public static let descriptorFlagIndirect: UInt16 = 4

    /// avail.flags bit: the driver asks for no used-buffer notifications (2.7.7).
    public static let availableFlagNoInterrupt: UInt16 = 1
    /// used.flags bit: the device asks for no available-buffer notifications (2.7.10).
    public static let usedFlagNoNotify: UInt16 = 1

    /// Required guest alignment of each area (the table in 2.7).
    public static let descriptorTableAlignment: UInt64 = 16
    public static let availableRingAlignment: UInt64 = 2
    public static let usedRingAlignment: UInt64 = 4

    /// 16 * Queue Size (2.7).
    public static func descriptorTableSize(_ size: UInt16) -> UInt64 { descriptorSize * UInt64(size) }
    /// flags, idx, ring[size], used_event: 6 + 2 * Queue Size (2.7, 2.7.6). The event field is
    /// counted whether or not VIRTIO_F_EVENT_IDX is negotiated, as the table in 2.7 does.
    public static func availableRingSize(_ size: UInt16) -> UInt64 { 6 + 2 * UInt64(size) }
    /// flags, idx, ring[size] of {le32 id; le32 len}, avail_event: 6 + 8 * Queue Size (2.7, 2.7.8).
    public static func usedRingSize(_ size: UInt16) -> UInt64 { 6 + 8 * UInt64(size) }

    /// Byte offsets inside the available ring (2.7.6).
    public static let availableFlagsOffset = 0
    public static let availableIndexOffset = 2
    public static func availableEntryOffset(_ slot: UInt16) -> Int { 4 + 2 * Int(slot) }
    /// used_event sits right after ring[size] (2.7.6).
    public static func usedEventOffset(_ size: UInt16) -> Int { 4 + 2 * Int(size) }

    /// Byte offsets inside the used ring (2.7.8).
    public static let usedFlagsOffset = 0
    public static let usedIndexOffset = 2
    public static func usedEntryOffset(_ slot: UInt16) -> Int { 4 + 8 * Int(slot) }
    /// avail_event sits right after ring[size] (2.7.8).
    public static func availableEventOffset(_ size: UInt16) -> Int { 4 + 8 * Int(size) }

    /// True when `size` is a valid split-virtqueue Queue Size: a power of two in 1...32768 (2.7).
    public static func isValidSize(_ size: UInt16) -> Bool {
        size != 0 && size <= maximumSize && size & (size &- 1) == 0
    }

    /// The event-index rule of 2.7.7 / 2.7.10 (`vring_need_event` in the spec's example code):
    /// the other side asked to be told once its index `event` has been passed; given that the
    /// index just moved from `old` to `new`, notify exactly when `event` lies in [old, new), all
    /// modulo 2^16. Written as "new - event - 1 < new - old" so the wrap of the free-running 16-bit
    /// indices needs no special case.
    @inline(__always)
    public static func needsEvent(event: UInt16, new: UInt16, old: UInt16) -> Bool {
        new &- event &- 1 < new &- old
    }
}

// Memory ordering for the fields the guest and the device both touch.
//
// The driver runs on other CPUs and writes the rings while we read them, so the 16-bit indices and
// event fields are accessed as atomics (Synchronization's `Atomic<UInt16>` laid over the guest
// bytes; `Atomic` has the layout of its storage, and the rings' guest alignment, checked at setup
// together with the host mapping's, gives the 2-byte alignment that needs). The orderings follow
// the barriers 2.7.13 and 2.7.14 ask of the driver, mirrored on the device side:
// - avail.idx is loaded with acquire: the driver writes ring entries and descriptors, then (after
//   a write barrier) idx; acquire keeps our later reads of those from moving before the idx load.
// - used.idx is stored with release: the used element (id, len) must be visible first (2.7.8.2).
// - A sequentially consistent fence separates a store we make from a load of the driver's field
//   that decides whether someone must be woken (publish used.idx, then read used_event/flags;
//   write avail_event/used.flags, then re-read avail.idx). Acquire/release do not order a store
//   before a later load; without the full fence both sides can miss each other's update and the
//   queue stalls.
// On x86 acquire/release cost nothing beyond forbidding compiler reordering; the fence is MFENCE.
// Descriptors and ring entries are read with plain loads after the acquire, each field once into
// a local, and validated: a driver that changes them concurrently only hurts itself.

@inline(__always)
func sharedWord(_ pointer: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UInt16>> {
    // Guest RAM is raw memory bound to no Swift type; binding these two bytes to the atomic for the
    // access is what the typed-pointer rules ask for, and it compiles to nothing.
    pointer.bindMemory(to: Atomic<UInt16>.self, capacity: 1)
}

@inline(__always)
func loadAcquire16(_ pointer: UnsafeMutableRawPointer) -> UInt16 {
    UInt16(littleEndian: sharedWord(pointer).pointee.load(ordering: .acquiring))
}

@inline(__always)
func loadRelaxed16(_ pointer: UnsafeMutableRawPointer) -> UInt16 {
    UInt16(littleEndian: sharedWord(pointer).pointee.load(ordering: .relaxed))
}

@inline(__always)
func storeRelease16(_ pointer: UnsafeMutableRawPointer, _ value: UInt16) {
    sharedWord(pointer).pointee.store(value.littleEndian, ordering: .releasing)
}

@inline(__always)
func storeRelaxed16(_ pointer: UnsafeMutableRawPointer, _ value: UInt16) {
    sharedWord(pointer).pointee.store(value.littleEndian, ordering: .relaxed)
}
