import GuestMemory

/// One descriptor chain the driver made available: a head index and a lazy, validating walk over
/// its buffers (VIRTIO 1.2 2.7.5, 2.7.5.3, 2.7.4).
///
/// Nothing is read up front and nothing is allocated: `next()` reads one descriptor at a time from
/// guest memory and checks it before returning it, so every buffer a device sees is wholly inside
/// guest RAM. The walk enforces, in order:
/// - every index is inside its table (Queue Size, or length/16 for an indirect table);
/// - a step limit of the table's size, so a loop the guest made (0 → 1 → 0) ends in an error;
/// - indirect tables (2.7.5.3.1): length a non-zero multiple of 16 and inside guest memory, not
///   combined with NEXT, not nested; the WRITE flag of the descriptor pointing at one is ignored;
/// - buffers: address + length does not wrap and lies inside one region of guest memory;
///   zero-length buffers are allowed and yield an empty buffer without touching their address;
/// - all device-readable buffers come before all device-writable ones (2.7.4.2).
///
/// It is a value: a copy walks independently from where the original stood, and the helpers
/// (`lengths`, `copyOut`, `copyIn`) always walk from the head. Since the guest can rewrite its
/// descriptors at any time, two walks may disagree; each is checked on its own, so that only
/// ever hurts the guest's own request.
public struct DescriptorChain {
    /// One buffer of a chain, already checked against guest memory.
    public struct Descriptor {
        /// Guest address of the buffer.
        public let address: GuestAddress
        /// Length in bytes; may be 0.
        public let length: UInt32
        /// The device may write it (VIRTQ_DESC_F_WRITE); otherwise the device only reads it.
        public let isWriteOnly: Bool
        /// Host view of [address, address + length). Empty (nil base) for a zero-length buffer.
        /// Valid while the queue's guest memory lives; the guest may change its contents at any
        /// time, so copy what you validate before trusting it.
        public let bytes: UnsafeMutableRawBufferPointer
    }

    /// Where a walk stands.
    struct Cursor {
        /// The table being walked: the queue's descriptor table, or an indirect table.
        var table: UnsafeMutableRawPointer
        /// Entries in `table`.
        var tableSize: UInt32
        /// Index of the next descriptor to read, nil when the chain has ended.
        var next: UInt32?
        /// Descriptors still allowed from `table` before the walk is declared a loop.
        var stepsLeft: UInt32
        var indirect: Bool
        var seenWritable: Bool
    }

    /// The chain's head: the id to pass to `SplitVirtqueue.addUsed`.
    public let head: UInt16
    private let memory: GuestMemory
    private let start: Cursor
    private var cursor: Cursor

    init(head: UInt16, memory: GuestMemory, table: UnsafeMutableRawPointer, size: UInt16) {
        self.head = head
        self.memory = memory
        // A direct chain may not be longer than Queue Size (2.7.5.2); more steps mean a loop.
        start = Cursor(table: table, tableSize: UInt32(size), next: UInt32(head), stepsLeft: UInt32(size),
                       indirect: false, seenWritable: false)
        cursor = start
    }

    /// The next buffer of the chain, nil after the last one. Throws on the first descriptor that
    /// breaks a rule; the chain should then be returned with length 0 (or the device reset).
    public mutating func next() throws(VirtqueueError) -> Descriptor? {
        typealias L = SplitVirtqueueLayout
        while let index = cursor.next {
            guard index < cursor.tableSize else {
                throw .descriptorIndexOutOfRange(index: index, tableSize: cursor.tableSize, indirect: cursor.indirect)
            }
            guard cursor.stepsLeft > 0 else {
                throw .chainTooLong(limit: cursor.tableSize, indirect: cursor.indirect)
            }
            cursor.stepsLeft -= 1
            // Read each field once: the guest may be rewriting this descriptor right now.
            let entry = cursor.table + Int(index) * Int(L.descriptorSize)
            let address = UInt64(littleEndian: entry.loadUnaligned(as: UInt64.self))
            let length = UInt32(littleEndian: entry.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            let flags = UInt16(littleEndian: entry.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
            let next = UInt16(littleEndian: entry.loadUnaligned(fromByteOffset: 14, as: UInt16.self))

            if flags & L.descriptorFlagIndirect != 0 {
                try enterIndirectTable(address: address, length: length, flags: flags)
                continue
            }

            let isWriteOnly = flags & L.descriptorFlagWrite != 0
            if isWriteOnly {
                cursor.seenWritable = true
            } else if cursor.seenWritable {
                throw .readableAfterWritable(address: address)
            }
            let bytes = try Self.buffer(address: address, length: length, in: memory)
            cursor.next = flags & L.descriptorFlagNext != 0 ? UInt32(next) : nil
            return Descriptor(address: GuestAddress(address), length: length, isWriteOnly: isWriteOnly, bytes: bytes)
        }
        return nil
    }

    /// Switches the walk to the indirect table a descriptor points at (2.7.5.3).
    private mutating func enterIndirectTable(address: UInt64, length: UInt32, flags: UInt16) throws(VirtqueueError) {
        typealias L = SplitVirtqueueLayout
        // 2.7.5.3.1: one table per descriptor (no INDIRECT inside a table), and a descriptor
        // pointing at a table is the chain's last in its own table (no NEXT with INDIRECT).
        guard !cursor.indirect else { throw .nestedIndirect }
        guard flags & L.descriptorFlagNext == 0 else { throw .indirectWithNext }
        guard length != 0, UInt64(length) % L.descriptorSize == 0 else { throw .invalidIndirectLength(length) }
        let table: UnsafeMutableRawBufferPointer
        do { table = try memory.bytes(at: GuestAddress(address), count: UInt64(length)) } catch {
            throw .indirectTableOutOfMemory(address: address, length: length)
        }
        let entries = length / UInt32(L.descriptorSize)
        // Entries are read with unaligned loads, so the table needs no particular alignment. A
        // loop-free walk visits each entry at most once, and `next` (16 bits) reaches at most 2^16
        // of them, which bounds the steps however large the table is.
        cursor = Cursor(table: table.baseAddress!, tableSize: entries, next: 0,
                        stepsLeft: min(entries, 1 << 16), indirect: true, seenWritable: cursor.seenWritable)
    }

    /// Host view of one buffer, checked. A zero-length buffer is not looked up at all: the spec
    /// does not forbid one, and its address may be anything.
    private static func buffer(address: UInt64, length: UInt32, in memory: GuestMemory) throws(VirtqueueError)
        -> UnsafeMutableRawBufferPointer
    {
        guard length != 0 else { return UnsafeMutableRawBufferPointer(start: nil, count: 0) }
        guard GuestAddress(address).adding(UInt64(length)) != nil else {
            throw .descriptorAddressOverflow(address: address, length: length)
        }
        do { return try memory.bytes(at: GuestAddress(address), count: UInt64(length)) } catch {
            throw .descriptorOutOfMemory(address: address, length: length)
        }
    }

    /// A fresh walk from the head, for the helpers below.
    private var fromHead: DescriptorChain {
        var copy = self
        copy.cursor = start
        return copy
    }

    /// Restarts the walk at the head.
    public mutating func rewind() { cursor = start }

    /// Walks the whole chain (checking every descriptor) and sums the device-readable and
    /// device-writable lengths. A device calls this first to validate a request and size it.
    public func lengths() throws(VirtqueueError) -> (readable: Int, writable: Int) {
        var walk = fromHead
        var readable = 0, writable = 0
        // At most 2^16 descriptors of at most 2^32 - 1 bytes: the sums cannot overflow Int.
        while let descriptor = try walk.next() {
            if descriptor.isWriteOnly { writable += Int(descriptor.length) } else { readable += Int(descriptor.length) }
        }
        return (readable, writable)
    }

    /// Copies device-readable bytes, starting `offset` bytes into the readable part of the chain,
    /// into `destination`. Returns how many bytes were copied: less than `destination.count` when
    /// the readable part ends first. Stops walking once `destination` is full.
    public func copyOut(into destination: UnsafeMutableRawBufferPointer, offset: Int = 0) throws(VirtqueueError) -> Int {
        precondition(offset >= 0, "negative offset")
        var walk = fromHead
        var skip = offset
        var copied = 0
        while copied < destination.count, let descriptor = try walk.next() {
            // Readable buffers all come first (checked by the walk), so the first writable one
            // ends the readable part.
            guard !descriptor.isWriteOnly else { break }
            let available = descriptor.bytes.count
            if skip >= available { skip -= available; continue }
            let count = min(available - skip, destination.count - copied)
            (destination.baseAddress! + copied).copyMemory(from: descriptor.bytes.baseAddress! + skip, byteCount: count)
            copied += count
            skip = 0
        }
        return copied
    }

    /// Copies `source` into the device-writable part of the chain, starting `offset` bytes into
    /// that part. Returns how many bytes were written: less than `source.count` when the writable
    /// part ends first. Stops walking once `source` is used up.
    public func copyIn(from source: UnsafeRawBufferPointer, offset: Int = 0) throws(VirtqueueError) -> Int {
        precondition(offset >= 0, "negative offset")
        var walk = fromHead
        var skip = offset
        var written = 0
        while written < source.count, let descriptor = try walk.next() {
            guard descriptor.isWriteOnly else { continue }
            let available = descriptor.bytes.count
            if skip >= available { skip -= available; continue }
            let count = min(available - skip, source.count - written)
            (descriptor.bytes.baseAddress! + skip).copyMemory(from: source.baseAddress! + written, byteCount: count)
            written += count
            skip = 0
        }
        return written
    }
}
