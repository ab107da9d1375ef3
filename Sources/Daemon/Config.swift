import Foundation
import DaemonProtocol
import VMSpec
import Yams

/// The daemon's configuration file (YAML).
public struct DaemonConfig: Decodable, Sendable, Equatable {
    /// Where sockets, logs, pid and state files live (default /run/swiftlet).
    public var stateDir: String?
    /// VM processes drop to this user's uid/gid.
    public var user: String?
    public var uid: UInt32?
    public var gid: UInt32?
    /// Jail every VM process (docs/jail.md); `jail: false` turns it off. Default on.
    public var jail: Bool?
    public var vms: [String: VMDefinition]

    public init(stateDir: String? = nil, user: String? = nil, vms: [String: VMDefinition] = [:]) {
        self.stateDir = stateDir; self.user = user; self.vms = vms
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case stateDir = "state_dir", user, jail, vms
    }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        stateDir = try c.decodeIfPresent(String.self, forKey: .stateDir)
        if let stateDir, !stateDir.hasPrefix("/") { throw invalid(c, .stateDir, "'\(stateDir.printable)' must be an absolute path") }
        user = try c.decodeIfPresent(String.self, forKey: .user)
        if let user {
            guard let entry = getpwnam(user) else { throw invalid(c, .user, "no such user '\(user.printable)'") }
            uid = entry.pointee.pw_uid
            gid = entry.pointee.pw_gid
        }
        jail = try c.decodeIfPresent(Bool.self, forKey: .jail)
        // Names are checked before their definitions so a bad name is reported as such.
        if c.contains(.vms), try c.decodeNil(forKey: .vms) == false {
            let names = try c.nestedContainer(keyedBy: AnyKey.self, forKey: .vms)
            var vms: [String: VMDefinition] = [:]
            for key in names.allKeys {
                guard isValidName(key.stringValue) else {
                    throw DecodingError.dataCorrupted(.init(codingPath: names.codingPath + [key],
                        debugDescription: "'\(key.stringValue.printable)' is not a VM name (1 to 64 of A-Z a-z 0-9 . _ -)"))
                }
                vms[key.stringValue] = try names.decode(VMDefinition.self, forKey: key)
            }
            self.vms = vms
        } else {
            vms = [:]
        }
    }

    /// Reads and validates a config file. Every error is one line naming the file and, where the
    /// YAML parser or the node tree knows it, the line.
    public static func load(path: String) throws(DaemonError) -> DaemonConfig {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot read it (or it is not UTF-8)" : "no such file"
            throw DaemonError(400, "\(path): \(reason)")
        }
        return try parse(yaml: text, name: path)
    }

    /// Parses config text; `name` prefixes every error (the file's path).
    public static func parse(yaml text: String, name: String) throws(DaemonError) -> DaemonConfig {
        // Yams composes recursively: a file nested thousands deep must be refused before it parses.
        if let line = YAMLNesting.lineExceeding(Nesting.maximumDepth, in: text) {
            throw DaemonError(400, "\(name): line \(line): nested more than \(Nesting.maximumDepth) levels deep")
        }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw DaemonError(400, "\(name): \(describeYAMLError(error))")
        }
        guard let root, root != Node("") else { return DaemonConfig() }  // an empty file: no VMs
        do { try TreeCheck.check(root) } catch { throw DaemonError(400, "\(name): \(error.message)") }
        if case .scalar = root { throw DaemonError(400, "\(name): line 1: expected a mapping (state_dir, user, jail, vms)") }
        do {
            return try YAMLDecoder().decode(DaemonConfig.self, from: text)
        } catch let error as DecodingError {
            throw DaemonError(400, "\(name): \(describe(error, root: root))")
        } catch {
            throw DaemonError(400, "\(name): \(error)")
        }
    }
}

// MARK: - The composed tree

/// What YAML's syntax lets through but a config must not hold: a key twice in one mapping (Yams
/// keeps one of the two without a word, so a VM defined twice silently lost a definition), and
/// aliases that nest the tree deeper than the text does, or expand it to millions of nodes.
struct TreeCheck {
    struct Problem: Error { let message: String }

    /// Nodes visited at most: aliases of aliases grow a tree exponentially in the text's size.
    static let maximumNodes = 1_000_000
    private var visited = 0

    static func check(_ root: Node) throws(Problem) {
        var walk = TreeCheck()
        try walk.visit(root, path: [], depth: 1)
    }

    private mutating func visit(_ node: Node, path: [any CodingKey], depth: Int) throws(Problem) {
        visited += 1
        guard visited <= Self.maximumNodes else {
            throw Problem(message: "line \(node.mark?.line ?? 1): aliases expand to more than \(Self.maximumNodes) nodes")
        }
        guard depth <= Nesting.maximumDepth || node.scalar != nil else {
            throw Problem(message: "line \(node.mark?.line ?? 1): nested more than \(Nesting.maximumDepth) levels deep (through aliases)")
        }
        if let mapping = node.mapping {
            var first: [String: Int] = [:]
            for (key, value) in mapping {
                let line = key.mark?.line ?? 0
                if let name = key.scalar?.string {
                    if let earlier = first[name] {
                        let what = path.count == 1 && path[0].stringValue == "vms"
                            ? "VM '\(name.printable)' is defined twice" : "key '\(name.printable)' is given twice"
                        let at = path.isEmpty ? "" : "\(render(path)): "
                        throw Problem(message: "line \(line): \(at)\(what) (first on line \(earlier))")
                    }
                    first[name] = line
                }
                try visit(key, path: path, depth: depth + 1)
                try visit(value, path: path + [AnyKey(stringValue: key.scalar?.string ?? "?")], depth: depth + 1)
            }
        } else if let sequence = node.sequence {
            for (index, item) in sequence.enumerated() {
                try visit(item, path: path + [IndexKey(index)], depth: depth + 1)
            }
        }
    }
}

// MARK: - YAML lines for errors

/// One line for a Codable error in YAML text: the line of the key it names, from the composed tree.
func describe(_ error: DecodingError, root: Node) -> String {
    describe(error, lineOf: { line(of: $0, in: root) })
}

/// The line of the key (or list item) a coding path ends at, looked up in the composed YAML tree.
func line(of path: [any CodingKey], in root: Node) -> Int? {
    var node = root
    var best = root.mark?.line
    for key in path {
        if let mapping = node.mapping {
            guard let pair = mapping.first(where: { $0.key.string == key.stringValue }) else { return best }
            best = pair.key.mark?.line ?? best
            node = pair.value
        } else if let sequence = node.sequence, let i = key.intValue, i < sequence.count {
            node = sequence[i]
            best = node.mark?.line ?? best
        } else {
            return best
        }
    }
    return best
}

/// `line 7: mapping values are not allowed in this context` from a Yams error.
func describeYAMLError(_ error: any Error) -> String {
    guard let yaml = error as? YamlError else { return "\(error)" }
    switch yaml {
    case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
         .composer(let context, let problem, let mark, _):
        var s = "line \(mark.line): \(problem)"
        if let context { s += " (\(context.text), line \(context.mark.line))" }
        return s
    case .reader(let problem, let offset, _, _):
        return "\(problem)" + (offset.map { " at byte \($0)" } ?? "")
    default:
        return "\(yaml)".split(separator: "\n").first.map(String.init) ?? "invalid YAML"
    }
}
