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
    /// Every error must be one line with status 400; never a trap. Deep nesting is the parser's
    /// own check to make (it refuses more than 64 levels before Yams, whose recursive composer
    /// overflowed the stack), so the target feeds it whatever comes.
    static let daemonConfig = FuzzTarget(
        name: "daemon-config",
        summary: "swiftletd YAML config: Yams, strict decoding of the daemon keys and VM definitions, one-line errors"
    ) { bytes in
        guard let text = String(validating: bytes, as: UTF8.self) else { return }
        do throws(DaemonError) { _ = try DaemonConfig.parse(yaml: text, name: "swiftletd.yaml") } catch {
            requireOneLine(error.message, "daemon config")
            guard error.status == 400 else { fatalError("daemon config: status \(error.status): \(error.message)") }
        }
    }
}
