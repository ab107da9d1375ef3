import DaemonProtocol
import Host
import Synchronization

/// The supervisor's slow work in parallel (starting VMs, asking each VM for its counters) on
/// threads of our own, the one concurrency model of the daemon besides its HTTP server: no
/// Dispatch pools.
enum Workers {
    /// `body(i)` for every i in 0..<count, on up to `width` threads named `name`; returns the
    /// results in order once all are done. Runs inline when no thread can be started.
    static func map<T: Sendable>(_ count: Int, width: Int, name: String, _ body: @escaping @Sendable (Int) -> T) -> [T] {
        guard count > 0 else { return [] }
        let shared = Shared<T>(count: count)
        let work: @Sendable () -> Void = {
            while let i = shared.take() { shared.put(i, body(i)) }
        }
        let threads = (0..<min(width, count)).compactMap { _ in try? HostThread(name: name, body: work) }
        if threads.isEmpty { work() }
        for thread in threads { thread.join() }
        return shared.results()
    }

    /// The next index to do and the answers so far.
    private final class Shared<T: Sendable>: Sendable {
        private let state: Mutex<(next: Int, results: [T?])>
        private let count: Int

        init(count: Int) {
            self.count = count
            state = Mutex((0, Array(repeating: nil, count: count)))
        }

        func take() -> Int? {
            state.withLock { s in
                guard s.next < count else { return nil }
                defer { s.next += 1 }
                return s.next
            }
        }

        func put(_ i: Int, _ value: T) { state.withLock { $0.results[i] = value } }

        func results() -> [T] { state.withLock { s in s.results.map { $0! } } }
    }
}

/// A thread started for work nobody waits for (autostarts in the background), joined once it has
/// finished so that its stack is given back.
final class BackgroundThread: Sendable {
    private let done = Atomic(false)
    private let thread = Mutex<HostThread?>(nil)

    private init() {}

    /// Starts `body` on a thread named `name`; runs it inline (and returns nil) when no thread can
    /// be started.
    static func start(name: String, _ body: @escaping @Sendable () -> Void) -> BackgroundThread? {
        let background = BackgroundThread()
        do {
            let thread = try HostThread(name: name) {
                body()
                background.done.store(true, ordering: .releasing)
            }
            background.thread.withLock { $0 = thread }
            return background
        } catch {
            body()
            return nil
        }
    }

    /// Whether it has finished; if so it is joined (which returns at once).
    func joinIfFinished() -> Bool {
        guard done.load(ordering: .acquiring), let thread = thread.withLock({ $0 }) else { return false }
        thread.join()
        return true
    }
}
