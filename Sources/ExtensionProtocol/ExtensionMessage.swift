/// One message of Swiftlet's extension protocol, version 1 (docs/abi.md, "Extensions"): a device
/// or exit handler in another process, over a Unix stream socket. Every message is a 48-byte
/// little-endian header, followed by `size - 48` bytes of data for the memory messages:
///
/// | offset | field | |
/// | --- | --- | --- |
/// | 0 | u32 size | the whole message, 48 to 48 + 4096 |
/// | 4 | u16 type | `ExtensionMessage.Kind` |
/// | 6 | u16 reserved | 0 |
/// | 8 | u64 id | pairs a request with its answer |
/// | 16 | u64 address | port or guest-physical address |
/// | 24 | u64 value | an access's value, a range's length, a line's level, the version |
/// | 32 | u32 width | an access's width (1, 2, 4, 8), a memory request's length |
/// | 36 | u32 space | 0 port I/O, 1 MMIO |
/// | 40 | u32 isWrite | 1 for a write access |
/// | 44 | i32 status | 0, or a negative errno |
///
/// Pure values: encoding and decoding here, the sockets in the VMM (`ExtensionDevice`) and in
/// libswiftlet's helpers for extension authors; both sides share this one codec.
public struct ExtensionMessage: Equatable, Sendable {
    /// What a message is; the direction is fixed per kind.
    public enum Kind: UInt16, Sendable {
        /// extension → VMM, first: `value` the protocol version, data its name (≤ 64 bytes).
        case hello = 1
        /// VMM → extension: `value` the version spoken, `status` 0 (or why not).
        case welcome = 2
        /// extension → VMM, before `ready`: claim `space` `address ..< address + value`.
        case register = 3
        /// extension → VMM: registration is over; the VM may start.
        case ready = 4
        /// VMM → extension: the answer (`status`) to the request `id` (register, ready, memWrite).
        case reply = 5
        /// VMM → extension: the guest accessed a claimed range (`address` absolute; `value` the
        /// data of a write); every access gets an `accessDone` with the same `id`.
        case access = 6
        /// extension → VMM: an access is served; `value` is a read's data.
        case accessDone = 7
        /// extension → VMM: read `width` bytes of guest memory at `address` → `memData`.
        case memRead = 8
        /// extension → VMM: write the data to guest memory at `address` → `reply`.
        case memWrite = 9
        /// VMM → extension: the answer to `memRead`: `status`, and the bytes when 0.
        case memData = 10
        /// extension → VMM: set its interrupt line to `value` (0 or 1); no answer.
        case irq = 11
    }

    /// The address spaces a range can be in.
    public enum Space: UInt32, Sendable {
        case port = 0
        case mmio = 1
    }

    public static let version: UInt64 = 1
    public static let headerSize = 48
    /// The most data one message carries (a memory request's length).
    public static let maximumData = 4096
    /// The longest extension name.
    public static let maximumName = 64

    public var kind: Kind
    public var id: UInt64 = 0
    public var address: UInt64 = 0
    public var value: UInt64 = 0
    public var width: UInt32 = 0
    public var space: UInt32 = 0
    public var isWrite: UInt32 = 0
    public var status: Int32 = 0
    public var data: [UInt8] = []

    public init(_ kind: Kind, id: UInt64 = 0, address: UInt64 = 0, value: UInt64 = 0, width: UInt32 = 0,
                space: UInt32 = 0, isWrite: UInt32 = 0, status: Int32 = 0, data: [UInt8] = []) {
        self.kind = kind; self.id = id; self.address = address; self.value = value; self.width = width
        self.space = space; self.isWrite = isWrite; self.status = status; self.data = data
    }

    /// Why bytes are not a message.
    public struct Malformed: Error, Equatable, Sendable {
        public let reason: String
    }

    /// The message's size in bytes.
    public var size: Int { Self.headerSize + data.count }

    /// Writes the message into `buffer` (at least `size` bytes) and returns its size: the
    /// access path encodes into a buffer of its own, allocating nothing.
    @discardableResult
    public func encode(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        precondition(buffer.count >= size)
        func put<T: FixedWidthInteger>(_ v: T, _ offset: Int) { buffer.storeBytes(of: v.littleEndian, toByteOffset: offset, as: T.self) }
        put(UInt32(size), 0); put(kind.rawValue, 4); put(UInt16(0), 6)
        put(id, 8); put(address, 16); put(value, 24); put(width, 32); put(space, 36); put(isWrite, 40); put(status, 44)
        if !data.isEmpty {
            data.withUnsafeBytes { buffer.baseAddress!.advanced(by: Self.headerSize).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
        return size
    }

    /// The message's bytes.
    public func encoded() -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            count = encode(into: UnsafeMutableRawBufferPointer(buffer))
        }
    }

    /// Why `receive` gave no message.
    public enum ReceiveFailure<Transport: Error>: Error {
        /// `fill` failed; `inHeader`: while reading a header.
        case transport(Transport, inHeader: Bool)
        /// The stream ended inside a message.
        case truncated
        /// The bytes are no message.
        case malformed(Malformed)
    }

    /// Reads one framed message, as both ends of the protocol do: the header, then the data its
    /// size announces, into `buffer` (at least `headerSize + maximumData` bytes), each part through
    /// `fill`, which fills what it is given exactly and returns false when the stream ended before
    /// its first byte. Nil when the stream ended before the message began.
    public static func receive<E: Error>(into buffer: UnsafeMutableRawBufferPointer,
                                         _ fill: (_ part: UnsafeMutableRawBufferPointer, _ inHeader: Bool) throws(E) -> Bool)
        throws(ReceiveFailure<E>) -> ExtensionMessage? {
        precondition(buffer.count >= headerSize + maximumData)
        let header = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<headerSize])
        do throws(E) {
            guard try fill(header, true) else { return nil }
        } catch { throw .transport(error, inHeader: true) }
        let size: Int
        do throws(Malformed) { size = try Self.size(ofHeader: UnsafeRawBufferPointer(header)) } catch { throw .malformed(error) }
        if size > headerSize {
            let complete: Bool
            do throws(E) { complete = try fill(UnsafeMutableRawBufferPointer(rebasing: buffer[headerSize..<size]), false) } catch {
                throw .transport(error, inHeader: false)
            }
            guard complete else { throw .truncated }
        }
        do throws(Malformed) { return try ExtensionMessage(decoding: UnsafeRawBufferPointer(rebasing: buffer[0..<size])) } catch {
            throw .malformed(error)
        }
    }

    /// The total size a header announces, checked: what to read before `decode`.
    public static func size(ofHeader header: UnsafeRawBufferPointer) throws(Malformed) -> Int {
        guard header.count >= 4 else { throw Malformed(reason: "a header shorter than 4 bytes") }
        let size = Int(UInt32(littleEndian: header.loadUnaligned(as: UInt32.self)))
        guard size >= headerSize, size <= headerSize + maximumData else {
            throw Malformed(reason: "a message of \(size) bytes (\(headerSize) to \(headerSize + maximumData))")
        }
        return size
    }

    /// Decodes one whole message (`bytes.count` must be the size its header announces).
    public init(decoding bytes: UnsafeRawBufferPointer) throws(Malformed) {
        let size = try Self.size(ofHeader: bytes)
        guard bytes.count == size else { throw Malformed(reason: "\(bytes.count) bytes for a message of \(size)") }
        func get<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T { T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        let rawKind = get(4, UInt16.self)
        guard let kind = Kind(rawValue: rawKind) else { throw Malformed(reason: "unknown message type \(rawKind)") }
        guard get(6, UInt16.self) == 0 else { throw Malformed(reason: "reserved bits set") }
        self.init(kind, id: get(8, UInt64.self), address: get(16, UInt64.self), value: get(24, UInt64.self),
                  width: get(32, UInt32.self), space: get(36, UInt32.self), isWrite: get(40, UInt32.self),
                  status: get(44, Int32.self), data: Array(bytes[Self.headerSize..<size]))
    }

    public init(decoding bytes: [UInt8]) throws(Malformed) {
        var decoded: Result<ExtensionMessage, Malformed> = .failure(Malformed(reason: "empty"))
        bytes.withUnsafeBytes { raw in
            do throws(Malformed) { decoded = .success(try ExtensionMessage(decoding: raw)) } catch { decoded = .failure(error) }
        }
        self = try decoded.get()
    }
}
