import VMSpec

/// Why a split virtqueue refused its configuration, a descriptor chain or a call from its device.
///
/// Almost every case is something the guest's driver did wrong, so each message says what it did
/// and which rule of the VIRTIO 1.2 specification it broke. Only `availableIndexJumped` breaks the
/// queue itself (see `SplitVirtqueue.brokenReason`); the rest concern one chain, and the device
/// decides whether to return that chain unused or to ask for a reset (DEVICE_NEEDS_RESET, 2.1.2).
public enum VirtqueueError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The three areas of a split virtqueue (2.7), named in errors about them.
    public enum Ring: String, Sendable {
        case descriptorTable = "descriptor table"
        case availableRing = "available ring"
        case usedRing = "used ring"
    }

    /// Queue Size is not a power of two in 1...32768 (2.7).
    case invalidQueueSize(UInt16)
    /// A ring's guest address breaks the alignment of 2.7 (descriptor table 16, available 2, used 4).
    case misalignedRing(Ring, address: UInt64, alignment: UInt64)
    /// A ring, with its event field, does not lie wholly inside one region of guest RAM.
    case ringOutOfMemory(Ring, address: UInt64, length: UInt64)
    /// A ring's host mapping is less aligned than the atomics on it need (only possible with guest
    /// memory that borrows an oddly aligned host buffer; never the guest's fault).
    case ringHostMisaligned(Ring)
    /// The device used a queue that is not ready (queue_ready is 0).
    case notReady
    /// avail.idx moved more than Queue Size past the last chain the device took: the driver
    /// claims more outstanding chains than the ring can hold (2.7.6, 2.7.13). Breaks the queue.
    case availableIndexJumped(lastSeen: UInt16, published: UInt16, size: UInt16)
    /// The available ring named a chain head that is not in the descriptor table (2.7.6).
    case headIndexOutOfRange(head: UInt16, size: UInt16)
    /// A descriptor's `next` (or an indirect chain's) points past the end of its table (2.7.5).
    case descriptorIndexOutOfRange(index: UInt32, tableSize: UInt32, indirect: Bool)
    /// A chain visited more descriptors than its table holds: a loop the guest made (2.7.5.2,
    /// "MUST NOT create a descriptor chain longer than the Queue Size").
    case chainTooLong(limit: UInt32, indirect: Bool)
    /// A buffer's address plus length runs past 2^64.
    case descriptorAddressOverflow(address: UInt64, length: UInt32)
    /// A buffer is not wholly inside one region of guest RAM.
    case descriptorOutOfMemory(address: UInt64, length: UInt32)
    /// A device-readable buffer follows a device-writable one (2.7.4.2).
    case readableAfterWritable(address: UInt64)
    /// An indirect table's length is zero or not a multiple of 16 bytes (2.7.5.3.1).
    case invalidIndirectLength(UInt32)
    /// An indirect table is not wholly inside one region of guest RAM (2.7.5.3).
    case indirectTableOutOfMemory(address: UInt64, length: UInt32)
    /// A descriptor inside an indirect table sets VIRTQ_DESC_F_INDIRECT (2.7.5.3.1).
    case nestedIndirect
    /// A descriptor sets both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT (2.7.5.3.1).
    case indirectWithNext
    /// The device returned a head that is not in the descriptor table: a device bug.
    case usedHeadOutOfRange(head: UInt16, size: UInt16)

    public var description: String {
        switch self {
        case let .invalidQueueSize(size):
            "virtqueue: queue size \(size) is not a power of two in 1...32768 (VIRTIO 2.7)"
        case let .misalignedRing(ring, address, alignment):
            "virtqueue: \(ring.rawValue) at \(address.hexString) is not \(alignment)-byte aligned (VIRTIO 2.7)"
        case let .ringOutOfMemory(ring, address, length):
            "virtqueue: \(ring.rawValue) at \(address.hexString) length \(length) is outside guest memory"
        case let .ringHostMisaligned(ring):
            "virtqueue: host mapping of the \(ring.rawValue) is misaligned for atomic access"
        case .notReady:
            "virtqueue: the queue is not ready"
        case let .availableIndexJumped(lastSeen, published, size):
            "virtqueue: driver moved avail.idx from \(lastSeen) to \(published), more than queue size \(size) ahead (VIRTIO 2.7.6)"
        case let .headIndexOutOfRange(head, size):
            "virtqueue: available ring names head \(head), but the queue has \(size) descriptors (VIRTIO 2.7.6)"
        case let .descriptorIndexOutOfRange(index, tableSize, indirect):
            "virtqueue: descriptor chain points to index \(index) of a \(indirect ? "indirect " : "")table of \(tableSize) (VIRTIO 2.7.5)"
        case let .chainTooLong(limit, indirect):
            "virtqueue: \(indirect ? "indirect " : "")descriptor chain is longer than \(limit) descriptors: a loop (VIRTIO 2.7.5.2)"
        case let .descriptorAddressOverflow(address, length):
            "virtqueue: descriptor at \(address.hexString) length \(length) wraps past the end of the address space"
        case let .descriptorOutOfMemory(address, length):
            "virtqueue: descriptor at \(address.hexString) length \(length) is outside guest memory"
        case let .readableAfterWritable(address):
            "virtqueue: device-readable descriptor at \(address.hexString) follows a device-writable one (VIRTIO 2.7.4.2)"
        case let .invalidIndirectLength(length):
            "virtqueue: indirect table length \(length) is not a non-zero multiple of 16 (VIRTIO 2.7.5.3.1)"
        case let .indirectTableOutOfMemory(address, length):
            "virtqueue: indirect table at \(address.hexString) length \(length) is outside guest memory"
        case .nestedIndirect:
            "virtqueue: descriptor inside an indirect table sets VIRTQ_DESC_F_INDIRECT (VIRTIO 2.7.5.3.1)"
        case .indirectWithNext:
            "virtqueue: descriptor sets both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT (VIRTIO 2.7.5.3.1)"
        case let .usedHeadOutOfRange(head, size):
            "virtqueue: device returned head \(head) to a queue of \(size) descriptors"
        }
    }
}

