/// Constants of the virtio network device (VIRTIO 1.2 section 5.1) and of the Linux tap
/// interface behind it.
public enum VirtioNetSpec {
    // MARK: Feature bits (5.1.3)

    /// Device handles packets with partial checksum (the driver may send NEEDS_CSUM).
    static let featureChecksum: UInt64 = 1 << 0
    /// Driver handles packets with partial checksum (the device may deliver NEEDS_CSUM).
    static let featureGuestChecksum: UInt64 = 1 << 1
    /// The configuration's `mac` is valid.
    static let featureMAC: UInt64 = 1 << 5
    static let featureGuestTSO4: UInt64 = 1 << 7
    static let featureGuestTSO6: UInt64 = 1 << 8
    static let featureGuestECN: UInt64 = 1 << 9
    static let featureGuestUFO: UInt64 = 1 << 10
    static let featureHostTSO4: UInt64 = 1 << 11
    static let featureHostTSO6: UInt64 = 1 << 12
    static let featureHostECN: UInt64 = 1 << 13
    static let featureHostUFO: UInt64 = 1 << 14
    /// Mergeable receive buffers: a frame may span several chains (5.1.6.3.2, 5.1.6.4).
    static let featureMergeableReceiveBuffers: UInt64 = 1 << 15
    /// The configuration's `status` is valid.
    static let featureStatus: UInt64 = 1 << 16

    // MARK: Configuration layout (5.1.4)

    /// struct virtio_net_config up to max_virtqueue_pairs: mac[6], le16 status, le16
    /// max_virtqueue_pairs. Later fields belong to features not offered (MTU, SPEED_DUPLEX, RSS).
    static let configurationSize = 10
    static let macOffset = 0
    static let statusOffset = 6
    static let maxVirtqueuePairsOffset = 8
    /// VIRTIO_NET_S_LINK_UP.
    static let statusLinkUp: UInt16 = 1

    // MARK: Packets (5.1.6)

    /// struct virtio_net_hdr with num_buffers: with VIRTIO_F_VERSION_1 the header always has it,
    /// mergeable buffers or not (5.1.6.1), so it is 12 bytes either way.
    public static let headerSize = 12
    /// Offset of le16 num_buffers in the header.
    static let numBuffersOffset = 10
    /// Largest Ethernet frame: a 64 KiB GSO packet plus Ethernet and VLAN headers (what the
    /// Linux driver's "big packets" buffers hold).
    static let maximumFrameSize = 65550
    /// Largest header + frame the device moves in either direction: 65562 bytes.
    static let maximumPacketSize = headerSize + maximumFrameSize

    // MARK: Linux tap (linux/if_tun.h)

    /// TUNSETOFFLOAD flags: what the tap's reader (the guest, here) accepts.
    static let tunChecksum: UInt32 = 0x01
    static let tunTSO4: UInt32 = 0x02
    static let tunTSO6: UInt32 = 0x04
    static let tunTSOECN: UInt32 = 0x08

    /// The tap offloads matching what the driver accepts on receive: partial checksums with
    /// GUEST_CSUM, and TCP segmentation offload on top of it with GUEST_TSO4/6 (+ ECN). The
    /// kernel's TUNSETOFFLOAD ignores TSO without CSUM the same way (5.1.3.1: GUEST_TSO4
    /// requires GUEST_CSUM).
    static func tapOffloads(forGuestFeatures features: UInt64) -> UInt32 {
        guard features & featureGuestChecksum != 0 else { return 0 }
        var flags = tunChecksum
        if features & featureGuestTSO4 != 0 { flags |= tunTSO4 }
        if features & featureGuestTSO6 != 0 { flags |= tunTSO6 }
        if flags & (tunTSO4 | tunTSO6) != 0, features & featureGuestECN != 0 { flags |= tunTSOECN }
        return flags
    }
}
