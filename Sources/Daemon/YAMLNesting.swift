import VMSpec

/// How deep YAML text nests, found by a scan of its tokens before Yams parses it: Yams composes
/// nodes recursively, so a config nested thousands of levels deep overflows the stack (a crash of
/// the daemon at start, at POST /reload or at SIGHUP) before any check on the tree could run.
///
/// The scan follows libyaml's scanner where structure is decided: block indentation (the stack of
/// indents that block sequences and mappings push, and the indentless sequence under a key), flow
/// brackets (and the one-pair mapping `[a: b]` makes), and the text that is not structure (plain,
/// quoted and block scalars, comments, anchors, tags). Where it is unsure it counts a level rather
/// than skip one: a bound, never less than the depth of the composed tree (aliases aside), and
/// exact but for flow sequences, which may count twice (each entry could still turn out to be
/// the key of a one-pair mapping, `[[a]: b]`, when the scan reaches it).
struct YAMLNesting {
    /// The line (1-based) where the nesting first exceeds `limit`, or nil.
    static func lineExceeding(_ limit: Int, in text: String) -> Int? {
        var scan = YAMLNesting(bytes: Array(text.utf8), limit: limit)
        return scan.run()
    }

    private struct Indent { var column: Int; var isMapping: Bool; var indentlessSequence = false }
    private struct SimpleKey { var column: Int; var line: Int; var index: Int }

    private let b: [UInt8]
    private let limit: Int
    private var i = 0, line = 1, column = 0
    private var indents: [Indent] = []
    /// An open flow collection. In a sequence, an entry is a one-pair mapping (`[a: b]`) once a
    /// `:` or `?` says so, and may become one while a simple key of this level is pending.
    private struct Flow { var isSequence: Bool; var pairOpen = false; var key: SimpleKey? }
    private var flows: [Flow] = []
    private var simpleKeyAllowed = true
    private var simpleKey: SimpleKey?

    private init(bytes: [UInt8], limit: Int) { b = bytes; self.limit = limit }

    /// Open collections, counting the mapping that a pending simple key may still open around
    /// the nodes scanned since it began (`[a]: b` is a mapping whose key is a sequence).
    private var depth: Int {
        let pendingMapping = simpleKey.map { indent < $0.column } ?? false
        return indents.count + indents.lazy.filter(\.indentlessSequence).count + (pendingMapping ? 1 : 0)
            + flows.count + flows.lazy.filter { $0.isSequence && ($0.pairOpen || $0.key != nil) }.count
    }
    private var indent: Int { indents.last?.column ?? -1 }

    private func at(_ k: Int) -> UInt8? { i + k < b.count ? b[i + k] : nil }
    /// libyaml's line breaks: LF, CR, NEL, LS, PS; the length of the one at `k`, or 0.
    private func breakLength(_ k: Int) -> Int {
        guard let c = at(k) else { return 0 }
        if c == 0x0A { return 1 }
        if c == 0x0D { return at(k + 1) == 0x0A ? 2 : 1 }
        if c == 0xC2, at(k + 1) == 0x85 { return 2 }
        if c == 0xE2, at(k + 1) == 0x80, at(k + 2) == 0xA8 || at(k + 2) == 0xA9 { return 3 }
        return 0
    }
    private func isBlank(_ k: Int) -> Bool { at(k) == 0x20 || at(k) == 0x09 }
    private func isBlankOrEnd(_ k: Int) -> Bool { at(k) == nil || isBlank(k) || breakLength(k) > 0 }
    private func isFlowIndicator(_ c: UInt8?) -> Bool {
        c == UInt8(ascii: ",") || c == UInt8(ascii: "[") || c == UInt8(ascii: "]") || c == UInt8(ascii: "{") || c == UInt8(ascii: "}")
    }

    /// One character (a line break counts as one and starts a line).
    private mutating func advance() {
        let n = breakLength(0)
        if n > 0 { i += n; line += 1; column = 0; return }
        i += 1
        while i < b.count, b[i] & 0xC0 == 0x80 { i += 1 }
        column += 1
    }

    private mutating func run() -> Int? {
        while true {
            skipToToken()
            guard i < b.count else { return nil }
            // A simple key is one line of at most 1024 characters.
            if let key = simpleKey, key.line < line || key.index + 1024 < i { simpleKey = nil }
            for f in flows.indices { if let key = flows[f].key, key.line < line || key.index + 1024 < i { flows[f].key = nil } }
            if flows.isEmpty { unroll(to: column) }
            let c = b[i]
            if column == 0, c == UInt8(ascii: "%") { skipLine(); continue }
            if column == 0, (c == UInt8(ascii: "-") || c == UInt8(ascii: ".")), at(1) == c, at(2) == c, isBlankOrEnd(3) {
                unroll(to: -1); simpleKey = nil; simpleKeyAllowed = false
                advance(); advance(); advance(); continue
            }
            switch c {
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                saveKey()
                flows.append(Flow(isSequence: c == UInt8(ascii: "[")))
                simpleKeyAllowed = true
                advance()
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                if !flows.isEmpty { flows.removeLast() }
                simpleKeyAllowed = false
                advance()
            case UInt8(ascii: ","):
                if !flows.isEmpty { flows[flows.count - 1].pairOpen = false; flows[flows.count - 1].key = nil }
                simpleKeyAllowed = true
                advance()
            case UInt8(ascii: "-") where isBlankOrEnd(1):
                if flows.isEmpty { blockEntry(); simpleKey = nil } else { flows[flows.count - 1].key = nil }
                simpleKeyAllowed = true
                advance()
            case UInt8(ascii: "?") where !flows.isEmpty || isBlankOrEnd(1), UInt8(ascii: ":") where !flows.isEmpty || isBlankOrEnd(1):
                if let last = flows.indices.last {
                    // Inside a flow collection (its own keys are not the block's pending one).
                    if flows[last].isSequence { flows[last].pairOpen = true }
                    flows[last].key = nil
                    simpleKeyAllowed = false
                } else {
                    let keyColumn = c == UInt8(ascii: ":") ? simpleKey?.column ?? column : column
                    roll(to: keyColumn, mapping: true)
                    simpleKeyAllowed = !(c == UInt8(ascii: ":") && simpleKey != nil)
                    simpleKey = nil
                }
                advance()
            case UInt8(ascii: "*"), UInt8(ascii: "&"):
                saveKey()
                simpleKeyAllowed = false
                advance()
                while let a = at(0), isAnchorCharacter(a) { advance() }
            case UInt8(ascii: "!"):
                saveKey()
                simpleKeyAllowed = false
                tag()
            case UInt8(ascii: "|") where flows.isEmpty, UInt8(ascii: ">") where flows.isEmpty:
                simpleKey = nil
                simpleKeyAllowed = true
                blockScalar()
            case UInt8(ascii: "'"), UInt8(ascii: "\""):
                saveKey()
                simpleKeyAllowed = false
                quoted(single: c == UInt8(ascii: "'"))
            default:
                saveKey()
                simpleKeyAllowed = false
                plain()
            }
            if depth > limit { return line }
        }
    }

    /// Spaces, tabs where libyaml skips them, comments and line breaks.
    private mutating func skipToToken() {
        while i < b.count {
            if column == 0, at(0) == 0xEF, at(1) == 0xBB, at(2) == 0xBF { advance() }
            while at(0) == 0x20 || (at(0) == 0x09 && (!flows.isEmpty || !simpleKeyAllowed)) { advance() }
            if at(0) == UInt8(ascii: "#") { while i < b.count, breakLength(0) == 0 { advance() } }
            guard breakLength(0) > 0 else { return }
            advance()
            if flows.isEmpty { simpleKeyAllowed = true }
        }
    }

    private mutating func skipLine() { while i < b.count, breakLength(0) == 0 { advance() } }

    private mutating func saveKey() {
        guard simpleKeyAllowed else { return }
        let key = SimpleKey(column: column, line: line, index: i)
        if flows.isEmpty { simpleKey = key } else { flows[flows.count - 1].key = key }
    }

    private mutating func unroll(to column: Int) {
        while let top = indents.last, top.column > column { indents.removeLast() }
        // An indentless sequence ends at anything but its next `- `, at its key's column.
        if let top = indents.indices.last, indents[top].column == column, !(at(0) == UInt8(ascii: "-") && isBlankOrEnd(1)) {
            indents[top].indentlessSequence = false
        }
    }

    private mutating func roll(to column: Int, mapping: Bool) {
        if indent < column { indents.append(Indent(column: column, isMapping: mapping)) }
    }

    private mutating func blockEntry() {
        if indent < column {
            indents.append(Indent(column: column, isMapping: false))
        } else if let top = indents.indices.last, indents[top].column == column, indents[top].isMapping {
            indents[top].indentlessSequence = true
        }
    }

    private func isAnchorCharacter(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D
    }

    /// A tag runs to a blank (or a comma in a flow collection); a verbatim one (`!<…>`) to its
    /// `>`. A bracket in it is either part of it or a syntax error for libyaml, never structure.
    private mutating func tag() {
        advance()
        if at(0) == UInt8(ascii: "<") { while i < b.count, !isBlankOrEnd(0), at(0) != UInt8(ascii: ">") { advance() } }
        while i < b.count, !isBlankOrEnd(0), !(!flows.isEmpty && at(0) == UInt8(ascii: ",")) { advance() }
    }

    /// `'…'` (`''` is a quote) or `"…"` (a backslash escapes the next character), over lines.
    private mutating func quoted(single: Bool) {
        let quote = b[i]
        advance()
        while i < b.count {
            if single, at(0) == quote, at(1) == quote { advance(); advance(); continue }
            if !single, at(0) == UInt8(ascii: "\\"), i + 1 < b.count { advance(); advance(); continue }
            if at(0) == quote { advance(); return }
            advance()
        }
    }

    /// A plain scalar: to `: `, ` #`, a flow indicator inside a flow collection or the line's end,
    /// and on over the next lines while they are indented more than the block it is in.
    private mutating func plain() {
        let contentIndent = indent + 1
        while i < b.count {
            if column == 0, (at(0) == UInt8(ascii: "-") || at(0) == UInt8(ascii: ".")), at(1) == at(0), at(2) == at(0), isBlankOrEnd(3) { return }
            if at(0) == UInt8(ascii: "#") { return }
            while i < b.count, !isBlankOrEnd(0) {
                if at(0) == UInt8(ascii: ":"), isBlankOrEnd(1) { return }
                if !flows.isEmpty, isFlowIndicator(at(0)) { return }
                if !flows.isEmpty, at(0) == UInt8(ascii: ":"), isFlowIndicator(at(1)) || at(1) == UInt8(ascii: "?") { return }
                advance()
            }
            guard isBlank(0) || breakLength(0) > 0 else { return }
            var crossedLine = false
            while isBlank(0) || breakLength(0) > 0 {
                if breakLength(0) > 0 { crossedLine = true }
                advance()
            }
            if crossedLine { simpleKeyAllowed = true }
            if flows.isEmpty, column < contentIndent { return }
        }
    }

    /// `|` or `>`: its header, then the lines indented at least as its content (libyaml's rule:
    /// the header's increment over the block's indent, or else the first non-empty line's indent,
    /// but at least one more than the block's); lines of spaces only belong to it too.
    private mutating func blockScalar() {
        advance()
        var increment = 0
        for _ in 0..<2 {
            if let c = at(0), c >= 0x31 && c <= 0x39 {
                increment = Int(c - 0x30)
                advance()
            } else if at(0) == UInt8(ascii: "+") || at(0) == UInt8(ascii: "-") {
                advance()
            }
        }
        while isBlank(0) { advance() }
        if at(0) == UInt8(ascii: "#") { skipLine() }
        // Anything else before the line's end is a syntax error: libyaml stops there.
        guard breakLength(0) > 0 else { return }
        advance()
        var contentIndent = increment == 0 ? 0 : (indent >= 0 ? indent + increment : increment)
        skipEmptyLines(&contentIndent)
        while i < b.count, column == contentIndent {
            skipLine()
            guard breakLength(0) > 0 else { return }
            advance()
            skipEmptyLines(&contentIndent)
        }
    }

    /// libyaml's scan of block scalar breaks: the indentation of the next non-empty line (up to
    /// the content's indent once known) and the empty lines before it; sets the indent when unknown.
    private mutating func skipEmptyLines(_ contentIndent: inout Int) {
        var widest = 0
        while true {
            while (contentIndent == 0 || column < contentIndent), at(0) == 0x20 { advance() }
            widest = max(widest, column)
            guard breakLength(0) > 0 else { break }
            advance()
        }
        if contentIndent == 0 { contentIndent = max(widest, indent + 1, 1) }
    }
}
