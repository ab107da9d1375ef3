// FoundationEssentials (JSONDecoder, Data, FileManager), not all of Foundation: libswiftlet links
// this target in, and Foundation would bring ICU (tens of MiB) into the library.
import FoundationEssentials
import VMM
import VMSpec

/// Reading Firecracker's JSON (the config file of `swiftlet run --config-file` and the API's request
/// bodies) with Foundation's JSONDecoder, behind StrictJSON's check, with one-line errors. Kept out
/// of VMM so that the hvt tender's process links no Foundation.
extension FirecrackerConfig {
    /// Reads and parses a config file; errors name the file.
    public static func load(path: String) throws(VMMError) -> FirecrackerConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw VMMError(.configuration, "config file \(path): cannot read")
        }
        do { return try parse(data) } catch { throw VMMError(.configuration, "config file \(path): \(error.message)") }
    }

    /// Parses the JSON text; errors are one line (`line N: invalid JSON …`, `drives[1].path_on_host: missing`, …).
    public static func parse(_ data: Data) throws(VMMError) -> FirecrackerConfig {
        let config = try decode(FirecrackerConfig.self, from: data)
        try config.checkUnique()
        return config
    }

    /// Decodes one of these types (or an API request body, `refusingNull`: no field of the API's
    /// schema is nullable) with the same one-line errors.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data, refusingNull: Bool = false) throws(VMMError) -> T {
        try checkStrictly(data)
        do {
            let decoder = JSONDecoder()
            decoder.userInfo[.refusesNull] = refusingNull
            return try decoder.decode(T.self, from: data)
        } catch let error as DecodingError {
            throw VMMError(.configuration, describe(error, data: data))
        } catch {
            throw VMMError(.configuration, "invalid JSON")
        }
    }

    /// What `decode` checks before decoding, for a caller that reads the JSON another way (a
    /// partial PATCH body): no trailing commas, duplicate keys, deep nesting or fractional numbers.
    public static func checkStrictly(_ data: Data) throws(VMMError) {
        do { try StrictJSON.check(Array(data)) } catch {
            let line = 1 + data.prefix(min(error.offset, data.count)).reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
            throw VMMError(.configuration, error.isSyntaxError ? "line \(line): invalid JSON (\(error.message))" : "line \(line): \(error.message)")
        }
    }

    // MARK: - Error messages

    static func path(_ codingPath: [any CodingKey]) -> String {
        var out = ""
        for key in codingPath {
            if let i = key.intValue { out += "[\(i)]" } else { out += (out.isEmpty ? "" : ".") + key.stringValue }
        }
        return out
    }

    static func describe(_ error: DecodingError, data: Data) -> String {
        func at(_ codingPath: [any CodingKey]) -> String { codingPath.isEmpty ? "top level" : path(codingPath) }
        switch error {
        case .keyNotFound(let key, let context):
            return "\(path(context.codingPath + [key])): missing"
        case .typeMismatch(let type, let context):
            return "\(at(context.codingPath)): expected \(typeName(type))"
        case .valueNotFound(let type, let context):
            return "\(at(context.codingPath)): expected \(typeName(type)), found null"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty, !(context.underlyingError is UnknownKey) {
                // `decode` ran StrictJSON's full syntax check first, so this is valid JSON that
                // does not fit (a negative or huge number for an unsigned field): JSONDecoder
                // reports it at the top level; say what it said.
                return "value out of range (\(context.debugDescription))"
            }
            return "\(at(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "invalid config"
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is Int.Type, is UInt64.Type: "an unsigned integer"
        case is [Any].Type: "an array"
        default: "an object"
        }
    }
}

