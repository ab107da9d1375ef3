import Hypervisor
#if canImport(Glibc)
import Glibc
#endif

/// The tender's own messages on stderr, one line each, prefixed `swiftlet:` (Foundation-free).
struct VMMLog: Sendable {
    let level: HvtConfig.LogLevel

    func error(_ message: @autoclosure () -> String) { emit(.error, message()) }
    func warn(_ message: @autoclosure () -> String) { emit(.warn, message()) }
    func info(_ message: @autoclosure () -> String) { emit(.info, message()) }
    func debug(_ message: @autoclosure () -> String) { emit(.debug, message()) }

    private func emit(_ at: HvtConfig.LogLevel, _ message: String) {
        guard at <= level else { return }
        let line = "swiftlet: " + message + "\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }
}

/// Registers in one-line error messages (triple faults, KVM failures), the same for every VMM.
enum RegisterSummary {
    static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    /// `rip=0x… rsp=0x… rax=… rflags=0x…`.
    static func general(_ r: Registers) -> String {
        "rip=\(hex(r.rip)) rsp=\(hex(r.rsp)) rax=\(hex(r.rax)) rbx=\(hex(r.rbx)) rcx=\(hex(r.rcx)) rdx=\(hex(r.rdx)) rsi=\(hex(r.rsi)) rdi=\(hex(r.rdi)) rflags=\(hex(r.rflags))"
    }
}
