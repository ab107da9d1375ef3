import VMSpec

/// A syntax check run before JSONDecoder, for what Foundation's decoder lets through but
/// Firecracker (serde_json) rejects: trailing commas, duplicate keys in an object, and nesting
/// deep enough to be an attack rather than a config; and numbers with a fraction or exponent,
/// which Foundation would quietly turn into integers (`1.0`, `1e3`) while serde refuses them for
/// Firecracker's integer fields. Every number of its API and config file is an integer. Beyond
/// that it only validates RFC 8259 syntax; values are decoded by Codable afterwards.
enum StrictJSON {
    struct Failure: Error {
        /// Byte offset of the problem, for a line number.
        let offset: Int
        let message: String
        /// False for valid JSON that is refused anyway (a number that is not an integer).
        var isSyntaxError = true
    }

    static let maximumDepth = Nesting.maximumDepth

    static func check(_ bytes: [UInt8]) throws(Failure) {
        var scanner = Scanner(bytes: bytes)
        scanner.skipSpace()
        try scanner.value(depth: 0)
        scanner.skipSpace()
        guard scanner.atEnd else { throw Failure(offset: scanner.index, message: "unexpected text after the JSON value") }
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        var atEnd: Bool { index >= bytes.count }
        var current: UInt8? { index < bytes.count ? bytes[index] : nil }

        func fail(_ message: String) -> Failure { Failure(offset: index, message: message) }

        mutating func skipSpace() {
            while let b = current, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { index += 1 }
        }

        mutating func expect(_ byte: UInt8, _ what: String) throws(Failure) {
            guard current == byte else { throw fail(atEnd ? "unexpected end of input, expected \(what)" : "expected \(what)") }
            index += 1
        }

        mutating func value(depth: Int) throws(Failure) {
            guard let b = current else { throw fail("unexpected end of input, expected a value") }
            switch b {
            case UInt8(ascii: "{"): try object(depth: depth + 1)
            case UInt8(ascii: "["): try array(depth: depth + 1)
            case UInt8(ascii: "\""): _ = try string()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
            default: throw fail("expected a value")
            }
        }

        mutating func object(depth: Int) throws(Failure) {
            guard depth <= StrictJSON.maximumDepth else { throw fail("nested more than \(StrictJSON.maximumDepth) levels deep") }
            index += 1
            skipSpace()
            if current == UInt8(ascii: "}") { index += 1; return }
            var keys = Set<ArraySlice<UInt8>>()
            while true {
                skipSpace()
                guard current == UInt8(ascii: "\"") else {
                    throw fail(current == UInt8(ascii: "}") ? "trailing comma in an object" : "expected a key (a string)")
                }
                let keyStart = index
                let key = try string()
                guard keys.insert(key).inserted else {
                    throw Failure(offset: keyStart, message: "duplicate key '\(String(decoding: key, as: UTF8.self).printable)'")
                }
                skipSpace()
                try expect(UInt8(ascii: ":"), "':'")
                skipSpace()
                try value(depth: depth)
                skipSpace()
                if current == UInt8(ascii: ",") { index += 1; continue }
                try expect(UInt8(ascii: "}"), "',' or '}'")
                return
            }
        }

        mutating func array(depth: Int) throws(Failure) {
            guard depth <= StrictJSON.maximumDepth else { throw fail("nested more than \(StrictJSON.maximumDepth) levels deep") }
            index += 1
            skipSpace()
            if current == UInt8(ascii: "]") { index += 1; return }
            while true {
                skipSpace()
                if current == UInt8(ascii: "]") { throw fail("trailing comma in an array") }
                try value(depth: depth)
                skipSpace()
                if current == UInt8(ascii: ",") { index += 1; continue }
                try expect(UInt8(ascii: "]"), "',' or ']'")
                return
            }
        }

        /// A string; returns its raw bytes between the quotes (escapes as written).
        mutating func string() throws(Failure) -> ArraySlice<UInt8> {
            index += 1
            let start = index
            while let b = current {
                switch b {
                case UInt8(ascii: "\""):
                    defer { index += 1 }
                    return bytes[start..<index]
                case UInt8(ascii: "\\"):
                    index += 1
                    guard let e = current else { break }
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                         UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        index += 1
                    case UInt8(ascii: "u"):
                        index += 1
                        for _ in 0..<4 {
                            guard let h = current, (h >= 0x30 && h <= 0x39) || (h | 0x20 >= 0x61 && h | 0x20 <= 0x66) else {
                                throw fail("bad \\u escape in a string")
                            }
                            index += 1
                        }
                    default: throw fail("bad escape in a string")
                    }
                case 0..<0x20: throw fail("control character in a string")
                default: index += 1
                }
            }
            throw fail("unexpected end of input in a string")
        }

        mutating func literal(_ word: StaticString) throws(Failure) {
            let text = UnsafeRawBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
            for b in text {
                guard current == b else { throw fail("expected a value") }
                index += 1
            }
        }

        mutating func number() throws(Failure) {
            func digits(_ s: inout Scanner) -> Int {
                var n = 0
                while let d = s.current, d >= 0x30 && d <= 0x39 { s.index += 1; n += 1 }
                return n
            }
            let start = index
            if current == UInt8(ascii: "-") { index += 1 }
            if current == UInt8(ascii: "0") { index += 1 } else if digits(&self) == 0 { throw fail("bad number") }
            var integer = true
            if current == UInt8(ascii: ".") {
                index += 1
                guard digits(&self) > 0 else { throw fail("bad number") }
                integer = false
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                index += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
                guard digits(&self) > 0 else { throw fail("bad number") }
                integer = false
            }
            guard integer else {
                // At most 24 characters of it: the message stays one short line.
                let text = String(decoding: bytes[start..<min(index, start + 24)], as: UTF8.self) + (index - start > 24 ? "…" : "")
                throw Failure(offset: start, message: "\(text) is not an integer (every number here is one)", isSyntaxError: false)
            }
        }
    }
}
