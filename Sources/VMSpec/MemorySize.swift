/// A memory size as every command line and config file writes it: `256M`, `2G`, `131072K`, or a
/// bare number of MiB (suffixes in either case; no `MiB`/`B` forms). One grammar; the limits of a
/// particular field (whole MiB, a minimum, a maximum) are that field's validation.
public enum MemorySize {
    /// The size in bytes, or nil when `text` is malformed, zero or over 2^64.
    public static func bytes(_ text: some StringProtocol) -> UInt64? {
        var digits = Substring(text).drop { $0 == " " }
        while digits.last == " " { digits = digits.dropLast() }
        var shift: UInt64 = 20
        switch digits.last {
        case "K", "k": shift = 10; digits = digits.dropLast()
        case "M", "m": shift = 20; digits = digits.dropLast()
        case "G", "g": shift = 30; digits = digits.dropLast()
        default: break
        }
        guard !digits.isEmpty, digits.count <= 19, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              let n = UInt64(digits), n > 0, n < (1 << (64 - shift)) else { return nil }
        return n << shift
    }
}
