/// A memory size as every command line and config file writes it: `256M`, `2G`, `131072K`, or a
/// bare number of MiB (suffixes in either case; no `MiB`/`B` forms). One grammar; the limits of a
/// particular field (whole MiB, a minimum, a maximum) are that field's validation.
public enum MemorySize {
    /// Why a text is not a memory size, in words a user can act on.
    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case notANumber
        case zero
        case unknownUnit(String)
        case tooLarge

        public var description: String {
            switch self {
            case .notANumber: "is not a size: a whole number, then K, M or G (256M, 2G), or a bare number of MiB"
            case .zero: "is zero: a VM needs some memory (e.g. 256M)"
            case .unknownUnit(let unit): "'\(unit)' is not a unit: write K, M or G right after the number (256M, not 256MB or 256MiB)"
            case .tooLarge: "is too large"
            }
        }
    }

    /// The size in bytes, or why not.
    public static func parse(_ text: some StringProtocol) -> Result<UInt64, Failure> {
        var rest = Substring(text).drop { $0 == " " }
        while rest.last == " " { rest = rest.dropLast() }
        let digits = rest.prefix { $0.isASCII && $0.isNumber }
        let unit = rest.dropFirst(digits.count)
        guard !digits.isEmpty else { return .failure(.notANumber) }
        let shift: UInt64
        switch unit {
        case "": shift = 20
        case "K", "k": shift = 10
        case "M", "m": shift = 20
        case "G", "g": shift = 30
        default:
            // "1.5G" or "+4" is no number with a unit; "12MB" or "2T" names a unit we do not take.
            return .failure(unit.first?.isLetter == true ? .unknownUnit(String(unit)) : .notANumber)
        }
        guard digits.count <= 19, let n = UInt64(digits) else { return .failure(.tooLarge) }
        guard n > 0 else { return .failure(.zero) }
        guard n < (1 << (64 - shift)) else { return .failure(.tooLarge) }
        return .success(n << shift)
    }

    /// The size in bytes, or nil when `text` is malformed, zero or over 2^64.
    public static func bytes(_ text: some StringProtocol) -> UInt64? { try? parse(text).get() }
}
