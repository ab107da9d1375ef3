/// The MAC address form the command lines and Firecracker's config take: six colon-separated
/// pairs of hexadecimal digits (`02:5e:00:00:00:02`). Stricter than `VirtioNet.parseMAC`, which
/// also reads `-` separators and single digits.
public enum MACAddress {
    /// The six bytes, or nil when `text` is not exactly that form.
    public static func parse(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard part.count == 2, let byte = UInt8(part, radix: 16) else { return nil }
            bytes.append(byte)
        }
        return bytes
    }

    /// `parse`, and only a unicast address (bit 0 of the first byte clear).
    public static func parseUnicast(_ text: String) -> [UInt8]? {
        parse(text).flatMap { $0[0] & 1 == 0 ? $0 : nil }
    }
}
