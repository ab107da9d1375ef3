extension StringProtocol {
    /// The text as a message may show it: a name or value that came from a file, a request or a
    /// guest can hold control characters (ESC starts a terminal escape sequence), DEL, C1 controls
    /// or invisible format characters (bidirectional overrides); each is written as an escape
    /// (`\x1B`, `\u{202E}`), and so is the backslash that starts one, so that what the user's
    /// terminal shows is what the text holds and nothing more. The one escaping of every message.
    public var printable: String {
        var out = ""
        for scalar in unicodeScalars {
            switch scalar.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate:
                if scalar.value < 0x80 {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    out += "\\x" + (hex.count < 2 ? "0" : "") + hex
                } else {
                    out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
                }
            default:
                if scalar == "\\" { out += "\\\\" } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out
    }
}
