/// The `k=v,…` grammar of device options (`--disk PATH,readonly,id=NAME`, `--net
/// tap=NAME,mac=…`, `--vsock cid=N,uds=PATH`, and the same strings in swiftletd's config):
/// comma-separated items, an optional leading positional value, then bare flags and `key=value`
/// pairs. Empty items, empty keys or values, and a key or flag given twice are errors.
public struct OptionString: Equatable, Sendable {
    /// The first item when it has no `=` and the grammar allows one (a path).
    public var positional: String?
    /// Items without `=` after the positional one, in order.
    public var flags: [String] = []
    /// `key=value` items (the value may itself contain `=`).
    public var pairs: [String: String] = [:]

    /// Nil when `text` breaks the grammar. `positional`: the first item is a value, not a flag.
    public init?(_ text: some StringProtocol, positional: Bool = false) {
        var items = text.split(separator: ",", omittingEmptySubsequences: false)[...]
        if positional {
            guard let first = items.first, !first.isEmpty else { return nil }
            self.positional = String(first)
            items = items.dropFirst()
        }
        for item in items {
            guard !item.isEmpty else { return nil }
            if let eq = item.firstIndex(of: "=") {
                let key = String(item[..<eq]), value = String(item[item.index(after: eq)...])
                guard !key.isEmpty, !value.isEmpty, pairs[key] == nil else { return nil }
                pairs[key] = value
            } else {
                guard !flags.contains(String(item)) else { return nil }
                flags.append(String(item))
            }
        }
    }

    /// True when every flag and key is one of those named (the caller then reads them).
    public func only(flags allowedFlags: Set<String> = [], keys allowedKeys: Set<String> = []) -> Bool {
        flags.allSatisfy(allowedFlags.contains) && pairs.keys.allSatisfy(allowedKeys.contains)
    }
}
