/// Constants and the packet header of virtio-vsock (VIRTIO 1.2 section 5.10).
public enum VirtioVsockSpec {
    /// 5.10.2: receiveq, transmitq, eventq.
    public static let receiveQueue = 0, transmitQueue = 1, eventQueue = 2
    /// 5.10.4: struct virtio_vsock_config { le64 guest_cid; }.
    public static let configurationSize = 8
    /// 5.10.4: CIDs 0, 1 and 2 are reserved (2 is the host); 0xffffffff and above too.
    public static let hostCID: UInt64 = 2
    /// 5.10.6: type VIRTIO_VSOCK_TYPE_STREAM.
    public static let typeStream: UInt16 = 1
    /// 5.10.6: ops.
    public static let opRequest: UInt16 = 1, opResponse: UInt16 = 2, opReset: UInt16 = 3, opShutdown: UInt16 = 4,
                      opReadWrite: UInt16 = 5, opCreditUpdate: UInt16 = 6, opCreditRequest: UInt16 = 7
    /// 5.10.6.4: shutdown flags: the sender will receive (RCV) / send (SEND) no more.
    public static let shutdownReceive: UInt32 = 1, shutdownSend: UInt32 = 2
}

/// struct virtio_vsock_hdr (5.10.6): 44 bytes, little-endian, packed.
public struct VsockHeader: Equatable, Sendable {
    public static let size = 44
    public var sourceCID: UInt64 = 0
    public var destinationCID: UInt64 = 0
    public var sourcePort: UInt32 = 0
    public var destinationPort: UInt32 = 0
    public var length: UInt32 = 0
    public var type: UInt16 = VirtioVsockSpec.typeStream
    public var op: UInt16 = 0
    public var flags: UInt32 = 0
    /// Receive buffer space of the sender (5.10.6.3, credit).
    public var bufferAllocation: UInt32 = 0
    /// Bytes the sender has consumed from its receive buffer (free-running).
    public var forwardCount: UInt32 = 0

    public init(sourceCID: UInt64 = 0, destinationCID: UInt64 = 0, sourcePort: UInt32 = 0, destinationPort: UInt32 = 0,
                length: UInt32 = 0, type: UInt16 = VirtioVsockSpec.typeStream, op: UInt16 = 0, flags: UInt32 = 0,
                bufferAllocation: UInt32 = 0, forwardCount: UInt32 = 0) {
        self.sourceCID = sourceCID; self.destinationCID = destinationCID
        self.sourcePort = sourcePort; self.destinationPort = destinationPort
        self.length = length; self.type = type; self.op = op; self.flags = flags
        self.bufferAllocation = bufferAllocation; self.forwardCount = forwardCount
    }

    /// Decodes the first 44 bytes of `bytes` (the caller checks the count).
    public init(_ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= Self.size)
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u16(_ o: Int) -> UInt16 { UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
        sourceCID = u64(0); destinationCID = u64(8)
        sourcePort = u32(16); destinationPort = u32(20); length = u32(24)
        type = u16(28); op = u16(30); flags = u32(32)
        bufferAllocation = u32(36); forwardCount = u32(40)
    }

    public init(bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { VsockHeader($0) }
    }

    /// Encodes into the first 44 bytes of `bytes`.
    public func encode(into bytes: UnsafeMutableRawBufferPointer) {
        precondition(bytes.count >= Self.size)
        bytes.storeBytes(of: sourceCID.littleEndian, toByteOffset: 0, as: UInt64.self)
        bytes.storeBytes(of: destinationCID.littleEndian, toByteOffset: 8, as: UInt64.self)
        bytes.storeBytes(of: sourcePort.littleEndian, toByteOffset: 16, as: UInt32.self)
        bytes.storeBytes(of: destinationPort.littleEndian, toByteOffset: 20, as: UInt32.self)
        bytes.storeBytes(of: length.littleEndian, toByteOffset: 24, as: UInt32.self)
        bytes.storeBytes(of: type.littleEndian, toByteOffset: 28, as: UInt16.self)
        bytes.storeBytes(of: op.littleEndian, toByteOffset: 30, as: UInt16.self)
        bytes.storeBytes(of: flags.littleEndian, toByteOffset: 32, as: UInt32.self)
        bytes.storeBytes(of: bufferAllocation.littleEndian, toByteOffset: 36, as: UInt32.self)
        bytes.storeBytes(of: forwardCount.littleEndian, toByteOffset: 40, as: UInt32.self)
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.size)
        out.withUnsafeMutableBytes { encode(into: $0) }
        return out
    }
}
