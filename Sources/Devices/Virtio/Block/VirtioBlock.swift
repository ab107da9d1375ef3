import GuestMemory
import Synchronization

/// A virtio block device (VIRTIO 1.2 section 5.2) over a `BlockBackend` (Backends: a disk image
/// file or block device).
///
/// One request queue. Offers SEG_MAX, BLK_SIZE (512), FLUSH, and RO for a read-only disk or
/// DISCARD and WRITE_ZEROES for a writable one. Requests run synchronously on the thread that
/// calls `queueNotified` (the device's event-loop thread), reading and writing the guest's buffers
/// in place with preadv/pwritev; nothing is allocated per request.
///
/// Backends' `init(path:readOnly:serial:)` opens the image with O_CLOEXEC and locks it with flock
/// (exclusive, or shared when read-only) for the device's lifetime, so two VMs cannot write one disk.
///
/// A guest that breaks the queue itself (see `SplitVirtqueue.brokenReason`) stops the device:
/// `needsReset` turns true and stays true until `reset()`; the transport should then set
/// DEVICE_NEEDS_RESET (2.1.2). A bad individual request never does: it completes with IOERR, or
/// with used length 0 when it has no writable byte for a status.
public final class VirtioBlock: VirtioDevice {
    typealias Spec = VirtioBlockSpec

    /// Largest Queue Size offered.
    public static let queueSize: UInt16 = 256
    /// seg_max: data segments per request. Together with header and status a request fits in
    /// one queue's worth of descriptors (what Linux can post without indirect descriptors).
    public static let segmentLimit: UInt32 = UInt32(queueSize) - 2
    /// max_discard_sectors and max_write_zeroes_sectors: 2 GiB per request.
    public static let maximumZeroingSectors: UInt32 = 1 << 22

    private let requestQueue: SingleRequestQueue<BlockRequestProcessor>
    private let counters: BlockCounters
    private let configuration: [UInt8]

    /// Whether the disk refuses writes (VIRTIO_BLK_F_RO).
    public let readOnly: Bool
    /// Disk size in 512-byte sectors (the config space's `capacity`).
    public let capacity: UInt64
    public let deviceFeatures: UInt64
    public var deviceType: UInt16 { VirtioDeviceType.block }
    public var queueCount: Int { 1 }
    public var maximumQueueSize: UInt16 { Self.queueSize }
    public var configurationSize: Int { Spec.configurationSize }

    /// Checks a GET_ID answer: at most 20 bytes of UTF-8 (none answers 20 NUL bytes).
    public static func serialBytes(_ serial: String?) throws(VirtioDeviceError) -> [UInt8] {
        let bytes = Array((serial ?? "").utf8)
        guard bytes.count <= Spec.idBytes else {
            throw VirtioDeviceError("virtio-blk: serial \"\(serial ?? "")\" is longer than \(Spec.idBytes) bytes")
        }
        return bytes
    }

    /// A disk over `file`, named `path` in messages. `serial` is the GET_ID answer (see
    /// `serialBytes`). Throws one line naming the problem: a serial too long, storage smaller
    /// than one sector.
    public init(backend file: any BlockBackend, path: String, readOnly: Bool, serial: String? = nil) throws(VirtioDeviceError) {
        let serialBytes = try Self.serialBytes(serial)
        guard file.size >= VirtioBlockSpec.sectorSize else {
            throw VirtioDeviceError("virtio-blk: \(path) is \(file.size) bytes; a disk needs at least one 512-byte sector")
        }
        let counters = BlockCounters()
        self.counters = counters
        let processor = BlockRequestProcessor(
            file: file, readOnly: readOnly, serial: serialBytes, maxDescriptors: Int(Self.segmentLimit) + 2,
            counters: counters, maxDiscardSectors: Self.maximumZeroingSectors,
            maxWriteZeroesSectors: Self.maximumZeroingSectors)
        self.readOnly = readOnly
        let capacity = processor.capacity
        self.capacity = capacity
        var features = Spec.featureSegMax | Spec.featureBlockSize | Spec.featureFlush
        features |= readOnly ? Spec.featureReadOnly : Spec.featureDiscard | Spec.featureWriteZeroes
        deviceFeatures = features

        // struct virtio_blk_config (5.2.4); fields of features not offered stay 0.
        var config = [UInt8](repeating: 0, count: Spec.configurationSize)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { bytes in
                for (i, byte) in bytes.enumerated() { config[offset + i] = byte }
            }
        }
        put(capacity, at: Spec.capacityOffset)
        put(Self.segmentLimit, at: Spec.segMaxOffset)
        put(UInt32(Spec.sectorSize), at: Spec.blockSizeOffset)
        if !readOnly {
            // Sectors of the file system's block size: Linux turns this into discard_granularity.
            let alignment = UInt32(max(1, min(file.preferredBlockSize / Spec.sectorSize, 1 << 16)))
            put(Self.maximumZeroingSectors, at: Spec.maxDiscardSectorsOffset)
            put(UInt32(1), at: Spec.maxDiscardSegOffset)
            put(alignment, at: Spec.discardSectorAlignmentOffset)
            put(Self.maximumZeroingSectors, at: Spec.maxWriteZeroesSectorsOffset)
            put(UInt32(1), at: Spec.maxWriteZeroesSegOffset)
            put(UInt8(1), at: Spec.writeZeroesMayUnmapOffset)
        }
        configuration = config
        requestQueue = SingleRequestQueue(context: processor)
    }

    // MARK: Counters (cheap, lock-free reads)

    /// Requests taken from the queue, including malformed ones.
    public var requests: UInt64 { counters.requests.load(ordering: .relaxed) }
    /// Bytes read from the disk into guest memory.
    public var bytesRead: UInt64 { counters.bytesRead.load(ordering: .relaxed) }
    /// Bytes written to the disk (OUT data and zeroed ranges).
    public var bytesWritten: UInt64 { counters.bytesWritten.load(ordering: .relaxed) }
    /// Requests that completed with a status other than OK, or were returned unused.
    public var errors: UInt64 { counters.errors.load(ordering: .relaxed) }

    /// The guest broke the queue; the device processes nothing more until `reset()`.
    public var needsReset: Bool { requestQueue.needsReset }

    // MARK: VirtioDevice

    public func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        copyConfiguration(configuration, offset: offset, into: data)
    }

    public func activate(features: UInt64, memory: GuestMemory, queues: [SplitVirtqueue?],
                         interrupt: any VirtioInterrupt) throws(VirtioDeviceError) {
        requestQueue.activate(queues: queues, interrupt: interrupt)
    }

    public func queueNotified(_ index: Int) {
        guard index == 0 else { return }
        requestQueue.serve { processor, chain in processor.process(chain) }
    }

    public func reset() { requestQueue.reset() }
}
