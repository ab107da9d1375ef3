/// Framing of GDB's remote serial protocol: `$payload#checksum` packets, `+`/`-` acknowledgements
/// and the out-of-band interrupt byte 0x03. Pure byte handling, no I/O, so every hostile input can
/// be unit-tested.
public enum GDBPacketEvent: Equatable, Sendable {
    /// A whole packet with a correct checksum; escapes (`}` x^0x20) already undone.
    case packet([UInt8])
    /// A packet whose checksum did not match: answer `-` so the debugger sends it again.
    case badChecksum
    /// A packet longer than the decoder's limit, dropped whole: answer it with an error.
    case tooLong
    /// Ctrl-C from the debugger (0x03 outside a packet).
    case interrupt
    case ack
    case nak
}

/// Turns the debugger's byte stream into `GDBPacketEvent`s. Bytes outside packets other than
/// `+`, `-` and 0x03 are ignored, as GDB stubs do; a packet that grows past `maximumPayload`
/// is dropped (its bytes are still consumed) and reported once as `.tooLong`.
public struct GDBPacketDecoder: Sendable {
    /// The largest payload accepted, before unescaping. `qSupported` announces it as PacketSize.
    public let maximumPayload: Int
    private enum State { case idle, payload, checksumHigh, checksumLow(UInt8) }
    private var state = State.idle
    private var payload: [UInt8] = []
    private var sum: UInt8 = 0
    private var overflowed = false

    public init(maximumPayload: Int = 16384) {
        self.maximumPayload = maximumPayload
        payload.reserveCapacity(min(maximumPayload, 1 << 16))
    }

    /// Feeds `bytes`; calls `emit` for each event in order.
    public mutating func feed(_ bytes: some Sequence<UInt8>, _ emit: (GDBPacketEvent) -> Void) {
        for byte in bytes {
            switch state {
            case .idle:
                switch byte {
                case UInt8(ascii: "$"):
                    payload.removeAll(keepingCapacity: true)
                    sum = 0
                    overflowed = false
                    state = .payload
                case UInt8(ascii: "+"): emit(.ack)
                case UInt8(ascii: "-"): emit(.nak)
                case 0x03: emit(.interrupt)
                default: break
                }
            case .payload:
                if byte == UInt8(ascii: "#") {
                    state = .checksumHigh
                } else if byte == UInt8(ascii: "$") {
                    // A new packet start inside a packet: the old one was cut off; start again.
                    payload.removeAll(keepingCapacity: true)
                    sum = 0
                    overflowed = false
                } else {
                    sum &+= byte
                    if payload.count < maximumPayload { payload.append(byte) } else { overflowed = true }
                }
            case .checksumHigh:
                guard let high = Self.hexValue(byte) else { state = .idle; emit(.badChecksum); continue }
                state = .checksumLow(high)
            case .checksumLow(let high):
                state = .idle
                guard let low = Self.hexValue(byte) else { emit(.badChecksum); continue }
                if overflowed { emit(.tooLong); continue }
                guard high << 4 | low == sum else { emit(.badChecksum); continue }
                guard let unescaped = Self.unescape(payload) else { emit(.badChecksum); continue }
                emit(.packet(unescaped))
            }
        }
    }

    /// Undoes the protocol's escapes (`}` followed by the byte XOR 0x20); nil for a trailing `}`.
    static func unescape(_ bytes: [UInt8]) -> [UInt8]? {
        guard bytes.contains(UInt8(ascii: "}")) else { return bytes }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var escaped = false
        for b in bytes {
            if escaped { out.append(b ^ 0x20); escaped = false } else if b == UInt8(ascii: "}") { escaped = true } else { out.append(b) }
        }
        return escaped ? nil : out
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// Frames a reply payload as `$payload#checksum`, escaping the protocol's four special bytes.
public enum GDBPacketEncoder {
    public static func frame(_ payload: some Sequence<UInt8>) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "$")]
        var sum: UInt8 = 0
        for b in payload {
            if b == UInt8(ascii: "$") || b == UInt8(ascii: "#") || b == UInt8(ascii: "}") || b == UInt8(ascii: "*") {
                out.append(UInt8(ascii: "}"))
                out.append(b ^ 0x20)
                sum &+= UInt8(ascii: "}") &+ (b ^ 0x20)
            } else {
                out.append(b)
                sum &+= b
            }
        }
        out.append(UInt8(ascii: "#"))
        out.append(contentsOf: Hex.byte(sum))
        return out
    }

    public static func frame(_ text: String) -> [UInt8] { frame(Array(text.utf8)) }
}

/// Lower-case hexadecimal as the remote protocol writes it.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    public static func byte(_ b: UInt8) -> [UInt8] { [digits[Int(b >> 4)], digits[Int(b & 15)]] }

    public static func encode(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return out
    }

    /// Bytes from an even-length hex string; nil for odd length or a non-hex digit.
    public static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        guard text.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count / 2)
        var high: UInt8? = nil
        for c in text {
            guard let v = GDBPacketDecoder.hexValue(c) else { return nil }
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
        }
        return out
    }

    /// A big-endian hex number as addresses and lengths are written (at most 16 digits).
    public static func number(_ text: some Collection<UInt8>) -> UInt64? {
        guard !text.isEmpty, text.count <= 16 else { return nil }
        var value: UInt64 = 0
        for c in text {
            guard let v = GDBPacketDecoder.hexValue(c) else { return nil }
            value = value << 4 | UInt64(v)
        }
        return value
    }
}
