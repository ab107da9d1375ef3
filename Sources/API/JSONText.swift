/// Builds small JSON documents for API answers by hand: the shapes are fixed and tiny, and this
/// keeps field order stable (Firecracker's own order) without an encoder per response.
public struct JSONText: Sendable {
    private var fields: [String] = []
    public init() {}

    public mutating func add(_ key: String, _ value: String) { fields.append(Self.quote(key) + ": " + Self.quote(value)) }
    public mutating func add(_ key: String, _ value: some BinaryInteger) { fields.append(Self.quote(key) + ": " + String(value)) }
    public mutating func add(_ key: String, _ value: Bool) { fields.append(Self.quote(key) + ": " + (value ? "true" : "false")) }
    public mutating func add(_ key: String, _ value: Double) { fields.append(Self.quote(key) + ": " + String(value)) }
    /// `value` is already JSON (an object or array).
    public mutating func add(_ key: String, raw value: String) { fields.append(Self.quote(key) + ": " + value) }

    public var text: String { "{" + fields.joined(separator: ", ") + "}" }

    /// A JSON string literal.
    public static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// `{"fault_message": "…"}`, Firecracker's error body.
    public static func fault(_ message: String) -> String {
        var j = JSONText()
        j.add("fault_message", message)
        return j.text
    }
}
