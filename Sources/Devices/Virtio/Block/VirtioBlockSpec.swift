/// Constants of the virtio block device (VIRTIO 1.2 section 5.2), little-endian on the wire.
public enum VirtioBlockSpec {
    /// The unit of `capacity` and of every request's `sector`, whatever blk_size says (5.2.4, 5.2.6).
    public static let sectorSize = 512

    // Feature bits (5.2.3).
    /// seg_max is valid: the most data segments one request may have.
    public static let featureSegMax: UInt64 = 1 << 2
    /// The device is read-only.
    public static let featureReadOnly: UInt64 = 1 << 5
    /// blk_size is valid.
    public static let featureBlockSize: UInt64 = 1 << 6
    /// The device accepts VIRTIO_BLK_T_FLUSH.
    public static let featureFlush: UInt64 = 1 << 9
    /// The device accepts VIRTIO_BLK_T_DISCARD; the max_discard_* fields are valid.
    public static let featureDiscard: UInt64 = 1 << 13
    /// The device accepts VIRTIO_BLK_T_WRITE_ZEROES; the max_write_zeroes_* fields are valid.
    public static let featureWriteZeroes: UInt64 = 1 << 14

    // Byte offsets in struct virtio_blk_config (5.2.4).
    public static let capacityOffset = 0
    public static let sizeMaxOffset = 8
    public static let segMaxOffset = 12
    public static let geometryOffset = 16
    public static let blockSizeOffset = 20
    public static let topologyOffset = 24
    public static let writebackOffset = 32
    public static let numQueuesOffset = 34
    public static let maxDiscardSectorsOffset = 36
    public static let maxDiscardSegOffset = 40
    public static let discardSectorAlignmentOffset = 44
    public static let maxWriteZeroesSectorsOffset = 48
    public static let maxWriteZeroesSegOffset = 52
    public static let writeZeroesMayUnmapOffset = 56
    /// The structure through write_zeroes_may_unmap and its 3 bytes of padding; the secure-erase
    /// and zoned fields that follow belong to features this device does not offer.
    public static let configurationSize = 60

    // Request types (5.2.6).
    public static let requestIn: UInt32 = 0
    public static let requestOut: UInt32 = 1
    public static let requestFlush: UInt32 = 4
    public static let requestGetID: UInt32 = 8
    public static let requestDiscard: UInt32 = 11
    public static let requestWriteZeroes: UInt32 = 13

    /// struct virtio_blk_req's header: le32 type, le32 reserved, le64 sector (5.2.6).
    public static let headerSize = 16
    /// struct virtio_blk_discard_write_zeroes: le64 sector, le32 num_sectors, le32 flags (5.2.6).
    public static let segmentSize = 16
    /// The unmap flag of a discard/write-zeroes segment (5.2.6).
    public static let segmentFlagUnmap: UInt32 = 1
    /// VIRTIO_BLK_ID_BYTES: the GET_ID answer, NUL-padded, not terminated at 20 bytes (5.2.6).
    public static let idBytes = 20

    // Status values (5.2.6).
    public static let statusOK: UInt8 = 0
    public static let statusIOError: UInt8 = 1
    public static let statusUnsupported: UInt8 = 2
}
