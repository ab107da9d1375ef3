#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Request counters of a virtio-blk device, updated as requests complete and read without a lock.
final class BlockCounters: Sendable {
    let requests = Atomic<UInt64>(0)
    let bytesRead = Atomic<UInt64>(0)
    let bytesWritten = Atomic<UInt64>(0)
    let errors = Atomic<UInt64>(0)
}

/// Executes virtio-blk requests (VIRTIO 1.2 5.2.6) against a `BlockBackend`, reading and writing
/// the guest's buffers in place (preadv/pwritev over a disk image). Owns preallocated scratch (an iovec array for
/// seg_max + 2 descriptors, header and segment bytes, a zero buffer), so a request allocates
/// nothing. Not thread-safe: it lives inside the device's lock.
final class BlockRequestProcessor {
    typealias Spec = VirtioBlockSpec

    let file: any BlockBackend
    let readOnly: Bool
    /// Capacity in 512-byte sectors.
    let capacity: UInt64
    let counters: BlockCounters
    /// Limits advertised in the configuration space, enforced here.
    let maxDiscardSectors: UInt32
    let maxWriteZeroesSectors: UInt32
    /// The 20-byte GET_ID answer: the serial, NUL-padded.
    private let identifier: UnsafeMutableRawBufferPointer
    /// One iovec per non-empty descriptor of a chain.
    private let iovecs: UnsafeMutablePointer<iovec>
    private let iovecCapacity: Int
    /// Header and segment bytes copied out of guest memory before they are trusted.
    private let scratch: UnsafeMutableRawBufferPointer
    /// Zeros for WRITE_ZEROES when the file system cannot fallocate them.
    private let zeros: UnsafeMutableRawBufferPointer

    init(file: any BlockBackend, readOnly: Bool, serial: [UInt8], maxDescriptors: Int, counters: BlockCounters,
         maxDiscardSectors: UInt32, maxWriteZeroesSectors: UInt32) {
        self.file = file
        self.readOnly = readOnly
        capacity = file.size / UInt64(Spec.sectorSize)
        self.counters = counters
        self.maxDiscardSectors = maxDiscardSectors
        self.maxWriteZeroesSectors = maxWriteZeroesSectors
        identifier = .allocate(byteCount: Spec.idBytes, alignment: 8)
        identifier.initializeMemory(as: UInt8.self, repeating: 0)
        for (i, byte) in serial.prefix(Spec.idBytes).enumerated() { identifier[i] = byte }
        iovecCapacity = maxDescriptors
        iovecs = .allocate(capacity: maxDescriptors)
        iovecs.initialize(repeating: iovec(iov_base: nil, iov_len: 0), count: maxDescriptors)
        scratch = .allocate(byteCount: 32, alignment: 8)
        scratch.initializeMemory(as: UInt8.self, repeating: 0)
        zeros = .allocate(byteCount: 64 << 10, alignment: 4096)
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
    }

    deinit {
        identifier.deallocate()
        iovecs.deallocate()
        scratch.deallocate()
        zeros.deallocate()
    }

    /// Executes the request in `chain` and returns the used length: the bytes written into the
    /// chain's device-writable part (data plus the status byte), or 0 for a chain the device
    /// could not even put a status in (2.7.8.1).
    func process(_ chain: DescriptorChain) -> UInt32 {
        counters.requests.add(1, ordering: .relaxed)
        // Walk and validate the whole chain first (the queue checks every buffer against guest
        // memory and the readable-before-writable order of 2.7.4.2). Zero-length buffers carry
        // nothing and are skipped. The device makes no assumption about how the request is split
        // into buffers (2.6.4, message framing).
        var walk = chain
        var count = 0
        var readableCount = 0
        var readableBytes = 0
        var writableBytes = 0
        var tooManyBuffers = false
        var statusBuffer: UnsafeMutableRawBufferPointer?
        do {
            while let descriptor = try walk.next() {
                guard descriptor.length != 0 else { continue }
                if descriptor.isWriteOnly {
                    writableBytes += descriptor.bytes.count
                    statusBuffer = descriptor.bytes
                } else {
                    readableBytes += descriptor.bytes.count
                    if count < iovecCapacity { readableCount += 1 }
                }
                if count < iovecCapacity {
                    iovecs[count] = iovec(iov_base: descriptor.bytes.baseAddress, iov_len: descriptor.bytes.count)
                    count += 1
                } else {
                    // More buffers than seg_max + 2: refuse it, but keep walking for the status byte.
                    tooManyBuffers = true
                }
            }
        } catch {
            // A chain the queue refused: nothing in it can be trusted, including where its status
            // byte would be. Return it unused.
            counters.errors.add(1, ordering: .relaxed)
            return 0
        }
        // The status is the last byte of the writable part (5.2.6). Without one, there is nowhere
        // to report the error.
        guard let statusBuffer else {
            counters.errors.add(1, ordering: .relaxed)
            return 0
        }
        let status = statusBuffer.baseAddress! + (statusBuffer.count - 1)
        let (result, dataWritten) = execute(count: count, readableCount: readableCount, readableBytes: readableBytes,
                                            writableBytes: writableBytes, tooManyBuffers: tooManyBuffers)
        status.storeBytes(of: result, as: UInt8.self)
        if result != Spec.statusOK { counters.errors.add(1, ordering: .relaxed) }
        return UInt32(dataWritten + 1)
    }

    /// Decodes and runs one request whose buffers are in `iovecs[0..<count]`, the first
    /// `readableCount` device-readable. Returns the status and the data bytes written to the guest
    /// (not counting the status byte).
    private func execute(count: Int, readableCount: Int, readableBytes: Int, writableBytes: Int, tooManyBuffers: Bool)
        -> (status: UInt8, written: Int)
    {
        // The used length is 32-bit (2.7.8): writable buffers that add up to more (overlapping
        // descriptors can) would make a read the reply cannot describe.
        guard !tooManyBuffers, readableBytes >= Spec.headerSize, writableBytes <= Int(UInt32.max) else {
            return (Spec.statusIOError, 0)
        }
        // Copy the header out once: the guest may rewrite its buffers while we work.
        gather(Spec.headerSize, from: 0, count: readableCount, skip: 0)
        let type = UInt32(littleEndian: scratch.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        let sector = UInt64(littleEndian: scratch.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        // Payload after the header in the readable part (OUT data, discard segments), and data
        // before the status byte in the writable part (IN data, GET_ID).
        let readablePayload = readableBytes - Spec.headerSize
        let writablePayload = writableBytes - 1

        switch type {
        case Spec.requestIn:
            guard let offset = range(sector: sector, bytes: writablePayload) else { return (Spec.statusIOError, 0) }
            let (start, end) = writableData(count: count, readableCount: readableCount)
            let (moved, complete) = file.transfer(write: false, iovecs + start, count: end - start,
                                                  offset: offset, total: writablePayload)
            counters.bytesRead.add(UInt64(moved), ordering: .relaxed)
            return (complete ? Spec.statusOK : Spec.statusIOError, moved)

        case Spec.requestOut:
            // 5.2.6.2: a write to a read-only device fails with IOERR and writes nothing.
            guard !readOnly else { return (Spec.statusIOError, 0) }
            guard let offset = range(sector: sector, bytes: readablePayload) else { return (Spec.statusIOError, 0) }
            let start = skipHeader()
            let (moved, complete) = file.transfer(write: true, iovecs + start, count: readableCount - start,
                                                  offset: offset, total: readablePayload)
            counters.bytesWritten.add(UInt64(moved), ordering: .relaxed)
            return (complete ? Spec.statusOK : Spec.statusIOError, 0)

        case Spec.requestFlush:
            // The sector field is ignored: it is "unused and set to 0 for commands other than read or
            // write" (5.2.6).
            return (file.flush() ? Spec.statusOK : Spec.statusIOError, 0)

        case Spec.requestGetID:
            let (start, end) = writableData(count: count, readableCount: readableCount)
            let written = scatter(min(Spec.idBytes, writablePayload), from: UnsafeRawBufferPointer(identifier),
                                  into: start, end: end)
            return (Spec.statusOK, written)

        case Spec.requestDiscard, Spec.requestWriteZeroes:
            return (discardOrZero(discard: type == Spec.requestDiscard, readableCount: readableCount,
                                  payload: readablePayload), 0)

        default:
            return (Spec.statusUnsupported, 0)
        }
    }

    /// Byte offset of `sector` when [sector, sector + bytes/512) lies inside the disk and `bytes`
    /// is whole sectors (5.2.6.1); nil otherwise. Written so that nothing can overflow.
    private func range(sector: UInt64, bytes: Int) -> Int64? {
        guard bytes >= 0, bytes % Spec.sectorSize == 0, sector <= capacity,
              UInt64(bytes / Spec.sectorSize) <= capacity - sector else { return nil }
        // capacity * 512 <= file size <= Int64.max.
        return Int64(sector * UInt64(Spec.sectorSize))
    }

    /// DISCARD and WRITE_ZEROES (5.2.6): exactly one segment (max_*_seg is 1), checked, then
    /// fallocate, with a fallback to writing zeros for WRITE_ZEROES.
    private func discardOrZero(discard: Bool, readableCount: Int, payload: Int) -> UInt8 {
        guard !readOnly else { return Spec.statusIOError }
        guard payload == Spec.segmentSize else { return Spec.statusIOError }
        gather(Spec.segmentSize, from: 0, count: readableCount, skip: Spec.headerSize)
        let sector = UInt64(littleEndian: scratch.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        let sectors = UInt32(littleEndian: scratch.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let flags = UInt32(littleEndian: scratch.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        // 5.2.6.2: UNSUPP for unknown flags, and for unmap on a discard.
        guard flags & ~Spec.segmentFlagUnmap == 0 else { return Spec.statusUnsupported }
        if discard, flags & Spec.segmentFlagUnmap != 0 { return Spec.statusUnsupported }
        guard sectors <= (discard ? maxDiscardSectors : maxWriteZeroesSectors) else { return Spec.statusIOError }
        guard let offset = range(sector: sector, bytes: Int(sectors) * Spec.sectorSize) else {
            return Spec.statusIOError
        }
        guard sectors > 0 else { return Spec.statusOK }
        let length = Int64(sectors) * Int64(Spec.sectorSize)
        if discard {
            // The device MAY deallocate (5.2.6.2): a file system without hole punching still
            // answers OK, the data simply stays.
            return file.punchHole(offset: offset, length: length) == .failed ? Spec.statusIOError : Spec.statusOK
        }
        // WRITE_ZEROES: afterwards the range MUST read as zeros (5.2.6.2). With unmap, punching a
        // hole does both; otherwise ZERO_RANGE; and when the file system supports neither, write.
        if flags & Spec.segmentFlagUnmap != 0,
           file.punchHole(offset: offset, length: length) == .done {
            counters.bytesWritten.add(UInt64(length), ordering: .relaxed)
            return Spec.statusOK
        }
        if file.zeroRange(offset: offset, length: length) {
            counters.bytesWritten.add(UInt64(length), ordering: .relaxed)
            return Spec.statusOK
        }
        guard file.writeZeros(offset: offset, length: length, from: UnsafeRawBufferPointer(zeros)) else {
            return Spec.statusIOError
        }
        counters.bytesWritten.add(UInt64(length), ordering: .relaxed)
        return Spec.statusOK
    }

    // MARK: Scratch iovec helpers

    /// Trims the status byte off the last writable iovec; returns the writable data iovecs'
    /// range (possibly empty).
    private func writableData(count: Int, readableCount: Int) -> (start: Int, end: Int) {
        guard count > readableCount else { return (count, count) }
        iovecs[count - 1].iov_len -= 1
        return (readableCount, iovecs[count - 1].iov_len == 0 ? count - 1 : count)
    }

    /// Advances the readable iovecs past the 16-byte header; returns the first one with payload.
    private func skipHeader() -> Int {
        var index = 0
        var skip = Spec.headerSize
        while skip > 0 {
            let length = iovecs[index].iov_len
            if length <= skip {
                skip -= length
                index += 1
            } else {
                iovecs[index].iov_base = iovecs[index].iov_base.map { $0 + skip }
                iovecs[index].iov_len = length - skip
                skip = 0
            }
        }
        return index
    }

    /// Copies `byteCount` bytes starting `skip` bytes into iovecs[from..<from+count] to scratch.
    /// The caller checked that the readable part holds them.
    private func gather(_ byteCount: Int, from first: Int, count: Int, skip: Int) {
        var skip = skip
        var copied = 0
        var index = first
        while copied < byteCount, index < first + count {
            let vector = iovecs[index]
            index += 1
            if skip >= vector.iov_len { skip -= vector.iov_len; continue }
            let take = min(vector.iov_len - skip, byteCount - copied)
            (scratch.baseAddress! + copied).copyMemory(from: vector.iov_base! + skip, byteCount: take)
            copied += take
            skip = 0
        }
    }

    /// Copies the first `byteCount` bytes of `source` into iovecs[start..<end]; returns how many fit.
    private func scatter(_ byteCount: Int, from source: UnsafeRawBufferPointer, into start: Int, end: Int) -> Int {
        var written = 0
        var index = start
        while written < byteCount, index < end {
            let vector = iovecs[index]
            index += 1
            let take = min(vector.iov_len, byteCount - written)
            guard take > 0 else { continue }
            vector.iov_base!.copyMemory(from: source.baseAddress! + written, byteCount: take)
            written += take
        }
        return written
    }
}
