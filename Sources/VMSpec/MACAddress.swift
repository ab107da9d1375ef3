/// A MAC address, parsed in one place for every door it comes in by (`--net-mac`, `--net
/// mac=`, Firecracker's `guest_mac`, swiftletd's `networks:`): six pairs of hexadecimal digits
/// separated by `:`, in either case (`02:5e:00:00:00:02`), the form the API document names.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    /// The six bytes, in transmission order.
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 6 else { return nil }
        self.bytes = bytes
    }

    /// Nil unless `text` is six pairs of hex digits separated by `:`.
    public init?(_ text: some StringProtocol) {
        let groups = text.split(separator: ":", omittingEmptySubsequences: false)
        guard groups.count == 6 else { return nil }
        var bytes: [UInt8] = []
        for group in groups {
            guard group.count == 2, group.allSatisfy(\.isHexDigit), let byte = UInt8(group, radix: 16) else { return nil }
            bytes.append(byte)
        }
        self.bytes = bytes
    }

    /// A station's address: the group bit (bit 0 of the first byte) clear.
    public var isUnicast: Bool { bytes[0] & 1 == 0 }

    /// A random locally administered unicast address (first byte xxxxxx10), as solo5-hvt and
    /// Firecracker generate when none is given.
    public static func random() -> MACAddress {
        var generator = SystemRandomNumberGenerator()
        var bytes = (0..<6).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes[0] = (bytes[0] & 0xFC) | 0x02
        return MACAddress(bytes: bytes)!
    }

    /// `02:5e:00:00:00:02`: two lower-case digits a byte.
    public var description: String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
    }
}
