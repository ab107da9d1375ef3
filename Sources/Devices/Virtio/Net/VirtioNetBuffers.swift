#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Frame counters of a virtio-net device, updated on the event-loop thread, read without a lock.
final class NetCounters: Sendable {
    let receivedFrames = Atomic<UInt64>(0)
    let receivedBytes = Atomic<UInt64>(0)
    let transmittedFrames = Atomic<UInt64>(0)
    let transmittedBytes = Atomic<UInt64>(0)
    let dropped = Atomic<UInt64>(0)
}

/// Receive buffers the device took from the receiveq but has not used yet, oldest first, with
/// their device-writable buffers laid out as one iovec array so that a single readv can scatter a
/// frame across several of them (VIRTIO 1.2 5.1.6.4: with VIRTIO_NET_F_MRG_RXBUF a frame spans
/// `num_buffers` chains, used in order).
///
/// Taking chains ahead of need is what lets the device read a frame of unknown size straight into
/// guest memory: the tap cannot say how big its next frame is, so the device holds enough buffers
/// for the largest one, and a frame that uses fewer leaves the rest here for the next frame. A
/// split virtqueue lets the device hold buffers as long as it likes (2.7.8). Everything is
/// preallocated; nothing is allocated per frame. Not thread-safe: it lives in the device's lock.
final class NetReceiveBuffers {
    /// readv takes at most IOV_MAX (1024) vectors.
    static let vectorCapacity = 1024
    /// A chain with more non-empty buffers than this is refused (the Linux driver uses at most
    /// MAX_SKB_FRAGS + 2 = 19, in its "big packets" mode).
    static let vectorsPerChainLimit = 128

    /// The stashed chains' buffers, chain after chain.
    let vectors: UnsafeMutablePointer<iovec>
    private(set) var vectorCount = 0
    private let heads: UnsafeMutablePointer<UInt16>
    private let vectorsInChain: UnsafeMutablePointer<Int>
    private let bytesInChain: UnsafeMutablePointer<Int>
    /// Chains stashed.
    private(set) var chainCount = 0
    /// Writable bytes of all stashed chains.
    private(set) var byteCount = 0

    init() {
        vectors = .allocate(capacity: Self.vectorCapacity)
        vectors.initialize(repeating: iovec(iov_base: nil, iov_len: 0), count: Self.vectorCapacity)
        // Every chain has at least one vector, so there are never more chains than vectors.
        heads = .allocate(capacity: Self.vectorCapacity)
        heads.initialize(repeating: 0, count: Self.vectorCapacity)
        vectorsInChain = .allocate(capacity: Self.vectorCapacity)
        vectorsInChain.initialize(repeating: 0, count: Self.vectorCapacity)
        bytesInChain = .allocate(capacity: Self.vectorCapacity)
        bytesInChain.initialize(repeating: 0, count: Self.vectorCapacity)
    }

    deinit {
        vectors.deallocate()
        heads.deallocate()
        vectorsInChain.deallocate()
        bytesInChain.deallocate()
    }

    /// Room for one more chain of the largest accepted size.
    var canTake: Bool { Self.vectorCapacity - vectorCount >= Self.vectorsPerChainLimit }

    func head(_ index: Int) -> UInt16 { heads[index] }
    func bytes(_ index: Int) -> Int { bytesInChain[index] }
    func vectors(_ index: Int) -> Int { vectorsInChain[index] }

    /// Stashes `chain`'s buffers. Returns false, stashing nothing, for a chain that cannot be a
    /// receive buffer: one the queue refuses, one with a device-readable buffer (receive buffers
    /// are device-writable, 5.1.6.3), one with too many buffers, or one smaller than the 12-byte
    /// header (5.1.6.3.1: each buffer is at least the header's size). Its caller returns it
    /// unused (length 0).
    func append(_ chain: DescriptorChain) -> Bool {
        precondition(canTake, "no room for a chain")
        var walk = chain
        var count = 0
        var total = 0
        do {
            while let descriptor = try walk.next() {
                guard descriptor.isWriteOnly else { return false }
                guard descriptor.length != 0 else { continue }
                guard count < Self.vectorsPerChainLimit else { return false }
                vectors[vectorCount + count] = iovec(iov_base: descriptor.bytes.baseAddress, iov_len: descriptor.bytes.count)
                count += 1
                total += descriptor.bytes.count
            }
        } catch { return false }
        guard total >= VirtioNetSpec.headerSize else { return false }
        heads[chainCount] = chain.head
        vectorsInChain[chainCount] = count
        bytesInChain[chainCount] = total
        chainCount += 1
        vectorCount += count
        byteCount += total
        return true
    }

    /// Forgets the first `count` chains (they were used).
    func removeFirst(_ count: Int) {
        precondition(count <= chainCount)
        var vectorsUsed = 0
        var bytesUsed = 0
        for i in 0..<count {
            vectorsUsed += vectorsInChain[i]
            bytesUsed += bytesInChain[i]
        }
        let chainsLeft = chainCount - count
        let vectorsLeft = vectorCount - vectorsUsed
        // Overlapping moves towards the front: memmove.
        memmove(vectors, vectors + vectorsUsed, vectorsLeft * MemoryLayout<iovec>.stride)
        memmove(heads, heads + count, chainsLeft * MemoryLayout<UInt16>.stride)
        memmove(vectorsInChain, vectorsInChain + count, chainsLeft * MemoryLayout<Int>.stride)
        memmove(bytesInChain, bytesInChain + count, chainsLeft * MemoryLayout<Int>.stride)
        chainCount = chainsLeft
        vectorCount = vectorsLeft
        byteCount -= bytesUsed
    }

    /// Forgets every chain (the queue they came from is gone).
    func removeAll() {
        chainCount = 0
        vectorCount = 0
        byteCount = 0
    }

    /// Writes le16 num_buffers into the header at the start of the first chain (5.1.6.4: the
    /// tap writes only the first 10 bytes of the 12-byte header and skips this field). The chain
    /// holds at least the whole header (`append`), possibly split across buffers.
    func setNumberOfBuffers(_ value: UInt16) {
        var skip = VirtioNetSpec.numBuffersOffset
        var written = 0
        var index = 0
        while written < 2, index < vectorsInChain[0] {
            let vector = vectors[index]
            index += 1
            if skip >= vector.iov_len { skip -= vector.iov_len; continue }
            let base = vector.iov_base!.assumingMemoryBound(to: UInt8.self)
            while written < 2, skip < vector.iov_len {
                base[skip] = UInt8(truncatingIfNeeded: value >> (8 * written))
                skip += 1
                written += 1
            }
            skip = 0
        }
    }
}
