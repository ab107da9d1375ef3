import Daemon
import DaemonProtocol

extension FuzzTargets {
    /// swiftletd's YAML config (`DaemonConfig.parse(yaml:name:)`, what `load(path:)` runs on a
    /// file's text): Yams' scanner, parser and composer, the strict decoding of the daemon's keys
    /// and of each VM definition (the value grammars VMSpec shares with every other door), and
    /// the one-line errors with the line number looked up in the composed tree. Paths in the text
    /// are only looked up (a VM's kernel and disks must exist; `user` is looked up in the user
    /// database), never written.
    ///
    /// Input: the file's text, as is; not UTF-8 is skipped (`load` refuses it before parsing).
    /// Every error must be one line with status 400; never a trap.
    static let daemonConfig = FuzzTarget(
        name: "daemon-config",
        summary: "swiftletd YAML config: Yams, strict decoding of the daemon keys and VM definitions, one-line errors"
    ) { bytes in
        guard let text = String(validating: bytes, as: UTF8.self) else { return }
        // Deeply nested YAML overflows the stack in Yams' recursive composer today
        // (Parser.loadNode/loadSequence: `[` x 5000 is enough in this ASan build). The fix, a
        // nesting limit in Sources/Daemon's config loader (with duplicate-key checks), is in
        // progress on another branch (fix-config). Until it lands, inputs that could nest
        // deeper than `YAMLNesting.limit` are skipped here so the target keeps finding other
        // things; remove this guard with that fix.
        guard YAMLNesting.bound(text) <= YAMLNesting.limit else { return }
        do throws(DaemonError) { _ = try DaemonConfig.parse(yaml: text, name: "swiftletd.yaml") } catch {
            requireOneLine(error.message, "daemon config")
            guard error.status == 400 else { fatalError("daemon config: status \(error.status): \(error.message)") }
        }
    }
}

/// An upper bound on how deep the node tree Yams composes from a text can nest: every level on
/// a path from the root is a distinct collection (an alias can only name a finished node, so
/// none repeats), and each collection begins with one of these indicator characters of its
/// own (`[`, `{`, a block sequence's `-`, a mapping key's `:` or `?`). Quoting is ignored, so
/// the bound may be far above the real depth, never below.
enum YAMLNesting {
    /// Well below the depth that overflows (3000 levels still pass under ASan).
    static let limit = 1024

    static func bound(_ text: String) -> Int {
        var count = 1
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "["), UInt8(ascii: "{"), UInt8(ascii: "-"), UInt8(ascii: ":"), UInt8(ascii: "?"): count += 1
            default: break
            }
        }
        return count
    }
}
