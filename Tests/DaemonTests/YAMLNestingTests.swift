@testable import Daemon
import DaemonProtocol
import Foundation
import Testing
import VMSpec
import Yams

/// The config file's guards around Yams: nesting refused before parsing (Yams composes
/// recursively, and a 10 KB file nested 5,000 deep overflowed the daemon's stack), and keys or VM
/// names given twice refused instead of silently dropped.
@Suite struct YAMLNestingTests {
    func error(_ text: String) -> String {
        do { _ = try DaemonConfig.parse(yaml: text, name: "d.yaml"); return "no error" } catch { return error.message }
    }

    static let deep = 5_000
    static let deepDocuments: [(String, String)] = [
        ("flow sequences", "vms: " + String(repeating: "[", count: deep) + String(repeating: "]", count: deep) + "\n"),
        ("flow mappings", "vms: " + String(repeating: "{a: ", count: deep) + "1" + String(repeating: "}", count: deep) + "\n"),
        ("a bare flow", String(repeating: "[", count: 4 * deep)),
        ("block sequences on one line", "vms:\n  " + String(repeating: "- ", count: deep) + "x\n"),
        ("block mappings", (0..<200).map { String(repeating: " ", count: $0) + "a:" }.joined(separator: "\n") + " 1\n"),
        ("complex keys", String(repeating: "? ", count: deep) + "x\n"),
        ("flow pairs", "vms: " + String(repeating: "[a: ", count: deep) + "1" + String(repeating: "]", count: deep) + "\n"),
        ("after a quoted bracket", "a: \"]]]]\"\nb: '}}'\nc: " + String(repeating: "[", count: deep) + "\n"),
        ("after a comment", "# ]]]]]]\nvms: " + String(repeating: "[", count: deep) + "\n"),
        ("after a block scalar", "a: |\n  ]]]]]]\n  }}}}\nb: " + String(repeating: "{", count: deep) + "\n"),
    ]

    @Test(arguments: deepDocuments)
    func deepNestingIsRefusedBeforeParsing(_ name: String, _ text: String) {
        let message = error(text)
        #expect(message.hasPrefix("d.yaml: line ") && message.hasSuffix(": nested more than 64 levels deep"), "\(name): \(message)")
        #expect(!message.contains("\n"))
    }

    @Test func sixtyFourLevelsPass() {
        // The root mapping and 63 flow mappings: 64 levels; one more is refused.
        let text = "vms: " + String(repeating: "{a: ", count: 63) + "1" + String(repeating: "}", count: 63) + "\n"
        #expect(error(text).hasPrefix("d.yaml: line 1: vms.a.a: unknown key"), "\(error(text))")
        let deeper = "vms: " + String(repeating: "{a: ", count: 64) + "1" + String(repeating: "}", count: 64) + "\n"
        #expect(error(deeper) == "d.yaml: line 1: nested more than 64 levels deep")
        // Block mappings, one per line.
        let block = (0..<64).map { String(repeating: " ", count: $0) + "a:" }.joined(separator: "\n") + " 1\n"
        #expect(YAMLNesting.lineExceeding(64, in: block) == nil)
        #expect(YAMLNesting.lineExceeding(63, in: block) == 64)
    }

    /// Aliases nest without nesting the text: the composed tree is checked too.
    @Test func aliasesCannotNestOrExpandPastTheLimits() {
        var chain = "a0: &a0 [x]\n"
        for i in 1...80 { chain += "a\(i): &a\(i) [*a\(i - 1)]\n" }
        #expect(error(chain).hasSuffix("nested more than 64 levels deep (through aliases)"), "\(error(chain))")
        var laughs = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1...9 { laughs += "l\(i): &l\(i) [" + Array(repeating: "*l\(i - 1)", count: 10).joined(separator: ", ") + "]\n" }
        #expect(error(laughs).hasSuffix("aliases expand to more than 1000000 nodes"), "\(error(laughs))")
    }

    @Test func keysAndVMNamesGivenTwiceAreRefused() {
        #expect(error("vms:\n  a:\n    kernel: /bin/true\n  a:\n    kernel: /bin/sh\n")
                == "d.yaml: line 4: vms: VM 'a' is defined twice (first on line 2)")
        #expect(error("vms:\n  a:\n    kernel: /bin/true\n    kernel: /bin/sh\n")
                == "d.yaml: line 4: vms.a: key 'kernel' is given twice (first on line 3)")
        #expect(error("state_dir: /a\nstate_dir: /b\n") == "d.yaml: line 2: key 'state_dir' is given twice (first on line 1)")
        #expect(error("vms: {a: {kernel: /bin/true}, a: {kernel: /bin/true}}\n")
                == "d.yaml: line 1: vms: VM 'a' is defined twice (first on line 1)")
        // A name with control bytes is shown escaped, not sent to the terminal.
        #expect(error("vms:\n  \"\\e[2J\": {}\n  \"\\e[2J\": {}\n") == "d.yaml: line 3: vms: VM '\\x1B[2J' is defined twice (first on line 2)")
    }

    /// Real configs (the example files, block scalars, quotes, comments, anchors) are not refused:
    /// the bound stays close to the depth.
    @Test func ordinaryConfigsPass() throws {
        let text = """
            # swiftletd
            defaults: &defaults
              memory: 64M   # [ not a bracket
            vms:
              web:
                kernel: /bin/true
                cmdline: "console=ttyS0 ]]]] }}} [x"
                disks: ['/a,readonly', "/b"]
                networks:
                - tap=tap0,id=eth0
                - tap=tap1
              note: |
                [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
                  {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{
              it's: plain [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
                continued {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{
            """
        #expect(YAMLNesting.lineExceeding(8, in: text) == nil)
        let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples").standardized
        for file in (try? FileManager.default.contentsOfDirectory(atPath: examples.path)) ?? [] where file.hasSuffix(".yaml") {
            let text = try String(contentsOf: examples.appendingPathComponent(file), encoding: .utf8)
            #expect(YAMLNesting.lineExceeding(8, in: text) == nil, "\(file)")
        }
    }

    /// The scan is a bound: on thousands of generated documents that Yams composes, it is never
    /// below the depth of the tree Yams builds (if it were, a deep file could get past it).
    @Test func theBoundIsNeverBelowYamsDepth() {
        let pieces = ["- ", "? ", ": ", ":", "-", "?", "a", "b: ", "[", "]", "{", "}", ", ", ",", "\n", "  ", "    ", "\t",
                      "'", "\"", "\\", "# ", "#", "|", ">", "|2", ">-", "&x ", "!t ", "!<a,]> ", "x'y", "--- ", "...",
                      "\r\n", "\r", "\u{2028}", "\u{85}", "%", "\"a]\"", "'b}'", "# ]]\n", "''", "k:\n", "- - ", "[a: ", "{? ",
                      "\n  ", "\n    ", "\n- ", "\n  - ", "a:\n", " #x\n", "|+\n", ">2\n", "\"\\\n", "!x,", "? [", "]: ", "- a: "]
        var seed: UInt64 = 0x5eed_ca11
        func next() -> Int {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Int(truncatingIfNeeded: seed >> 33)
        }
        var composed = 0, failures: [String] = []
        for _ in 0..<100_000 {
            let count = 2 + next() % 60
            let text = (0..<count).map { _ in pieces[next() % pieces.count] }.joined()
            guard let node = try? Yams.compose(yaml: text) else { continue }
            composed += 1
            let depth = Self.depth(node)
            if depth > 1, YAMLNesting.lineExceeding(depth - 1, in: text) == nil, failures.count < 5 {
                failures.append("depth \(depth) not bounded: \(text.debugDescription)")
            }
        }
        #expect(failures.isEmpty, "\(failures)")
        #expect(composed > 2_000, "only \(composed) documents composed")
    }

    static func depth(_ node: Node) -> Int {
        if let mapping = node.mapping { return 1 + (mapping.map { max(depth($0.key), depth($0.value)) }.max() ?? 0) }
        if let sequence = node.sequence { return 1 + (sequence.map(depth).max() ?? 0) }
        return 0
    }
}
