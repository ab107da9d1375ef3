import VMSpec
import Hypervisor
#if canImport(Glibc)
import Glibc
#endif

/// Where a VMM's messages go when its host process has a log of its own (`swiftlet api`: the
/// file `PUT /logger` names, at the level it sets): the sink receives every message and filters.
public typealias VMMLogSink = @Sendable (HvtConfig.LogLevel, String) -> Void

/// The VMM's own messages: on stderr, one line each, prefixed `swiftlet:` (Foundation-free), or
/// into the host process's log through a `VMMLogSink`.
struct VMMLog: Sendable {
    let level: HvtConfig.LogLevel
    var sink: VMMLogSink? = nil

    func error(_ message: @autoclosure () -> String) { emit(.error, message()) }
    func warn(_ message: @autoclosure () -> String) { emit(.warn, message()) }
    func info(_ message: @autoclosure () -> String) { emit(.info, message()) }
    func debug(_ message: @autoclosure () -> String) { emit(.debug, message()) }

    private func emit(_ at: HvtConfig.LogLevel, _ message: String) {
        if let sink { return sink(at, message) }
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
