import VMSpec
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

    /// `rip=0x… rsp=0x… rax=… rflags=0x…`.
    static func general(_ r: Registers) -> String {
        "rip=\(r.rip.hexString) rsp=\(r.rsp.hexString) rax=\(r.rax.hexString) rbx=\(r.rbx.hexString) rcx=\(r.rcx.hexString) rdx=\(r.rdx.hexString) rsi=\(r.rsi.hexString) rdi=\(r.rdi.hexString) rflags=\(r.rflags.hexString)"
    }
}
