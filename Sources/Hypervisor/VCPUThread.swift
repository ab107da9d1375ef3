import KVM
#if canImport(Glibc)
import Glibc
#endif

/// Lifecycle of a vCPU thread: created → running → (paused ↔ running) → stopped.
public enum VCPURunState: Equatable, Sendable {
    case created, running, paused, stopped
}

/// Runs a vCPU loop on its own named OS thread. KVM_RUN blocks, so vCPUs never run on Swift
/// concurrency's cooperative pool.
public final class VCPUThread: @unchecked Sendable {
    private let lock = PThreadMutex()
    private var _state: VCPURunState = .created
    private var handle: pthread_t?
    public let name: String

    /// Starts `body` on a new thread named `name` (at most 15 characters are shown by the kernel).
    public init(name: String, body: @escaping @Sendable () -> Void) throws(HypervisorError) {
        self.name = name
        final class Box { let body: () -> Void; let name: String; init(_ b: @escaping () -> Void, _ n: String) { body = b; name = n } }
        let context = Unmanaged.passRetained(Box(body, name)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            setCurrentThreadName(box.name)
            box.body()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(context).release()
            throw HypervisorError(.kernel, "cannot start thread \(name): error \(rc)")
        }
        handle = thread
        _state = .running
    }

    public var state: VCPURunState { lock.locked { _state } }

    /// Records a state change made by the loop itself (e.g. paused, stopped).
    public func transition(to state: VCPURunState) { lock.locked { _state = state } }

    /// Waits for the thread to finish.
    public func join() {
        guard let h = lock.locked({ handle }) else { return }
        pthread_join(h, nil)
        lock.locked { handle = nil; _state = .stopped }
    }
}
