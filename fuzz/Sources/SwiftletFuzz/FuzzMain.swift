// libFuzzer's entry points for every Swiftlet fuzz target (fuzz/README.md). The binary holds all
// targets, so one instrumented build serves them; SWIFTLET_FUZZ_TARGET names the one a run drives.
import CFuzz
#if canImport(Glibc)
import Glibc
#endif

/// One fuzz target: its name (also its seed folder, fuzz/corpus/NAME), what it drives, and the
/// function libFuzzer calls with each input. A finding is a trap, an ASan report or a leak; the
/// targets also trap on broken promises (an error message of more than one line, a status a
/// request must never get).
struct FuzzTarget: Sendable {
    let name: String
    let summary: String
    let run: @Sendable (UnsafeRawBufferPointer) -> Void
}

/// The registry: each target lives in its own file as a static member of this enum.
enum FuzzTargets {
    static let all: [FuzzTarget] = [
        firecrackerConfig,
        apiRequest,
        x86MMIOAssist,
        hvtHypercalls,
        hvtNetRing,
        hvtLoader,
        linuxLoader,
        pciConfig,
        legacyPorts,
        seccompPolicy,
        daemonConfig,
        virtqueue,
        virtioBlock,
        virtioNet,
        virtioVsock,
        virtioEntropy,
        extensionMessage,
        libswiftlet,
        ociBundle,
    ]
}

/// The target this process drives, chosen once in `LLVMFuzzerInitialize`.
nonisolated(unsafe) private var selected: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    let name = getenv("SWIFTLET_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let target = FuzzTargets.all.first(where: { $0.name == name }) else {
        var text = name.isEmpty ? "swiftlet-fuzz: set SWIFTLET_FUZZ_TARGET to one of:\n"
                                : "swiftlet-fuzz: no target \(name); the targets are:\n"
        for t in FuzzTargets.all { text += "  \(t.name)\t\(t.summary)\n" }
        _ = text.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
        exit(2)
    }
    selected = target
    return 0
}

/// The program's entry point. SwiftPM links an executable with `main` aliased to this symbol, so
/// libFuzzer's own `main` is never linked in; its driver is called from here instead.
@_cdecl("SwiftletFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzerTestOneInput(data, size) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    selected?.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// Traps (a finding) unless `message` is one line of printable text: every error a user or a
/// guest can cause is promised to be one clear line.
func requireOneLine(_ message: String, _ context: @autoclosure () -> String) {
    if message.isEmpty || message.contains(where: { $0.isNewline }) {
        fatalError("\(context()): error is not one line: \(message.debugDescription)")
    }
}

/// Reads fuzz input as a little-endian stream of fields, returning zeros past the end, so a target
/// can take its structure (sizes, indices, flags) from the front of the input.
struct FuzzInput {
    private let bytes: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[min(offset, bytes.count)...]) }
    var isAtEnd: Bool { offset >= bytes.count }

    mutating func byte() -> UInt8 {
        defer { offset += 1 }
        return offset < bytes.count ? bytes[offset] : 0
    }

    mutating func integer<T: FixedWidthInteger & UnsignedInteger>(_: T.Type = T.self) -> T {
        var value: T = 0
        for i in 0..<(T.bitWidth / 8) { value |= T(byte()) << (8 * i) }
        return value
    }

    mutating func bool() -> Bool { byte() & 1 == 1 }

    /// Up to `count` bytes (fewer at the end of the input).
    mutating func take(_ count: Int) -> [UInt8] {
        let start = min(offset, bytes.count), end = min(offset + max(count, 0), bytes.count)
        offset += max(count, 0)
        return Array(bytes[start..<end])
    }

    /// One of `choices`, picked by the next byte.
    mutating func pick<T>(_ choices: [T]) -> T { choices[Int(byte()) % choices.count] }
}
