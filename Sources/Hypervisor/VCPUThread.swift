import Host
import Synchronization

/// Lifecycle of a vCPU thread: created → running → (paused ↔ running) → stopped.
public enum VCPURunState: Equatable, Sendable {
    case created, running, paused, stopped
}

/// Runs a vCPU loop on its own named OS thread. KVM_RUN blocks, so vCPUs never run on Swift
/// concurrency's cooperative pool.
public final class VCPUThread: @unchecked Sendable {
    private let state_ = Mutex<VCPURunState>(.created)
    private let thread: HostThread
    public let name: String

    /// Starts `body` on a new thread named `name` (at most 15 characters are shown by the kernel),
    /// confined to `role`'s seccomp filter when the process has one.
    public init(name: String, role: ThreadRole? = nil, body: @escaping @Sendable () -> Void) throws(HypervisorError) {
        self.name = name
        do { thread = try HostThread(name: name, role: role, body: body) } catch {
            throw HypervisorError(.kernel, "cannot start thread \(name): \(HostError.text(errno: error.errno))")
        }
        state_.withLock { $0 = .running }
    }

    public var state: VCPURunState { state_.withLock { $0 } }

    /// Records a state change made by the loop itself (e.g. paused, stopped).
    public func transition(to state: VCPURunState) { state_.withLock { $0 = state } }

    /// Waits for the thread to finish.
    public func join() {
        thread.join()
        state_.withLock { $0 = .stopped }
    }
}
