import CHost
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An OS thread of our own (pthread), named as `ps -L` and gdb show it. Work that blocks in the
/// kernel (KVM_RUN, a console read, an epoll wait) runs here, never on Swift concurrency's pool.
public final class HostThread: @unchecked Sendable {
    private let handle: pthread_t
    private let joined = Atomic(false)

    /// Starts `body` on a new thread named `name` (the kernel shows at most 15 characters).
    /// With a `role`, the thread first confines itself to that role's seccomp filter when the
    /// process has one (`Sandbox.confineCurrentThread`); if it cannot, the process ends with one
    /// line rather than run a VM thread with more rights than it should have.
    public init(name: String, role: ThreadRole? = nil, body: @escaping @Sendable () -> Void) throws(HostError) {
        final class Start {
            let body: @Sendable () -> Void
            let name: String
            let role: ThreadRole?
            init(_ b: @escaping @Sendable () -> Void, _ n: String, _ r: ThreadRole?) { body = b; name = n; role = r }
        }
        let context = Unmanaged.passRetained(Start(body, name, role)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            HostThread.nameCurrent(start.name)
            if let role = start.role { Sandbox.confineCurrentThreadOrExit(to: role, name: start.name) }
            start.body()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Start>.fromOpaque(context).release()
            throw HostError("start thread \(name)", errno: rc)
        }
        handle = thread
    }

    /// Waits for the thread to finish; later calls return at once.
    public func join() {
        guard !joined.exchange(true, ordering: .acquiringAndReleasing) else { return }
        pthread_join(handle, nil)
    }

    /// Names the calling thread (PR_SET_NAME; at most 15 characters are kept).
    public static func nameCurrent(_ name: String) {
        _ = chost_set_thread_name(String(name.prefix(15)))
    }
}

/// One thread, to send signals to (pthread_kill): a vCPU's runner, the main thread that waits for
/// stop signals.
public struct ThreadHandle: @unchecked Sendable, Equatable {
    private let thread: pthread_t

    /// The calling thread.
    public static var current: ThreadHandle { ThreadHandle(thread: pthread_self()) }

    /// Sends `signal` to this thread.
    public func send(_ signal: Int32) { _ = pthread_kill(thread, signal) }

    public static func == (a: ThreadHandle, b: ThreadHandle) -> Bool { pthread_equal(a.thread, b.thread) != 0 }
}
