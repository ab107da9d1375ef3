import Foundation
import Testing

/// The arrows between targets: each target imports only what Package.swift declares for it (SwiftPM
/// lets a module reach a dependency's dependencies too, so an undeclared arrow would build), and
/// every declared target comes after what it imports (the manifest's order is the layering).
@Suite struct LayeringTests {
    static var root: URL { OSBoundaryTests.sourcesDirectory.deletingLastPathComponent() }

    /// (target, declared target dependencies, declared product dependencies), in manifest order.
    static func manifestTargets() throws -> [(name: String, targets: Set<String>, products: Set<String>)] {
        let text = try String(contentsOf: root.appendingPathComponent("Package.swift"), encoding: .utf8)
        let target = try NSRegularExpression(
            pattern: #"\.(?:target|executableTarget)\(\s*name: "(\w+)"(?:,\s*dependencies: \[((?:[^\[\]]|\[[^\]]*\])*)\])?"#)
        let quoted = try NSRegularExpression(pattern: #"(?<!name: )(?<!package: )"(\w+)""#)
        let product = try NSRegularExpression(pattern: #"\.product\(name: "(\w+)""#)
        func captures(_ regex: NSRegularExpression, _ s: String) -> [String] {
            regex.matches(in: s, range: NSRange(s.startIndex..., in: s)).compactMap { Range($0.range(at: 1), in: s).map { String(s[$0]) } }
        }
        return target.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { match in
            let name = String(text[Range(match.range(at: 1), in: text)!])
            let deps = Range(match.range(at: 2), in: text).map { String(text[$0]) } ?? ""
            return (name, Set(captures(quoted, deps)), Set(captures(product, deps)))
        }
    }

    /// The modules a target's sources import.
    static func imports(of target: String) throws -> Set<String> {
        let directory = OSBoundaryTests.sourcesDirectory.appendingPathComponent(target)
        var modules: Set<String> = []
        guard let walker = FileManager.default.enumerator(atPath: directory.path) else { return [] }
        for case let file as String in walker where file.hasSuffix(".swift") {
            let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            for line in text.split(separator: "\n") {
                let words = line.split(separator: " ")
                if let i = words.firstIndex(of: "import"), i + 1 < words.count, words[..<i].allSatisfy({ $0.hasPrefix("@") }) {
                    modules.insert(String(words[i + 1]))
                }
            }
        }
        return modules
    }

    @Test func theManifestIsRead() throws {
        let targets = try Self.manifestTargets()
        let vmm = try #require(targets.first { $0.name == "VMM" })
        #expect(vmm.targets.contains("Hypervisor"))
        #expect(targets.first { $0.name == "Host" }?.targets == ["CHost", "VMSpec"])
        #expect(targets.count >= 15)
    }

    @Test func everyImportIsADeclaredArrowDownward() throws {
        let targets = try Self.manifestTargets()
        let names = Set(targets.map(\.name))
        // Modules of the toolchain and of package products, not targets of ours.
        let system: Set<String> = ["Glibc", "Darwin", "Foundation", "FoundationEssentials", "Synchronization", "Dispatch", "Testing"]
        var wrong: [String] = []
        for (index, target) in targets.enumerated() {
            let below = Set(targets[..<index].map(\.name))
            for dependency in target.targets where !below.contains(dependency) {
                wrong.append("\(target.name) depends on \(dependency), which is not listed above it")
            }
            for module in try Self.imports(of: target.name) where !system.contains(module) {
                if names.contains(module) {
                    if !target.targets.contains(module) { wrong.append("\(target.name) imports \(module) without declaring it") }
                } else if !target.products.contains(module) {
                    wrong.append("\(target.name) imports \(module), neither a declared target nor product")
                }
            }
        }
        #expect(wrong.isEmpty, "\(wrong.joined(separator: "\n"))")
    }

    /// The lean `swiftlet` front is the process of every unikernel: nothing it links, however deep,
    /// may import Foundation, SwiftNIO, Yams or the argument parser (each costs start-up time and
    /// megabytes of memory per VM; issue 12). SwiftLog is allowed: it is small and Foundation-free.
    @Test func theLeanFrontLinksNoHeavyModule() throws {
        let targets = Dictionary(try Self.manifestTargets().map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let heavy: Set<String> = ["Foundation", "FoundationEssentials", "FoundationNetworking", "NIOCore", "NIOPosix",
                                  "NIOHTTP1", "Yams", "ArgumentParser", "Dispatch"]
        let (closure, products) = Self.linked(by: "swiftlet", targets)
        #expect(closure.contains("VMM") && closure.contains("Hypervisor"))
        var wrong = products.intersection(heavy).map { "swiftlet's closure depends on the product \($0)" }
        for name in closure.sorted() {
            for module in try Self.imports(of: name) where heavy.contains(module) {
                wrong.append("\(name) (linked by the lean swiftlet) imports \(module)")
            }
        }
        #expect(wrong.isEmpty, "\(wrong.joined(separator: "\n"))")
    }

    /// `swiftlet-cli` is the process of every Linux VM (`swiftlet api` under swiftletd, `swiftlet
    /// run`): it reaches the daemon through DaemonProtocol only, never the supervisor or YAML.
    @Test func theVMProcessLinksNoDaemonNorYAML() throws {
        let targets = Dictionary(try Self.manifestTargets().map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let (closure, products) = Self.linked(by: "SwiftletCLI", targets)
        #expect(closure.contains("API") && closure.contains("DaemonProtocol"))
        #expect(!closure.contains("Daemon"), "swiftlet-cli links the Daemon target")
        #expect(!products.contains("Yams"), "swiftlet-cli links Yams")
    }

    /// The targets `root` links, however deep, and the package products they use.
    static func linked(by root: String, _ targets: [String: (name: String, targets: Set<String>, products: Set<String>)])
        -> (targets: Set<String>, products: Set<String>) {
        var closure: Set<String> = []
        var work = [root]
        var products: Set<String> = []
        while let name = work.popLast() {
            guard closure.insert(name).inserted, let target = targets[name] else { continue }
            work += target.targets
            products.formUnion(target.products)
        }
        return (closure, products)
    }
}
