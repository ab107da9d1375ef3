import Synchronization

/// The request queue of a device that has exactly one (virtio-blk, virtio-rng): the queue and
/// interrupt handed over on DRIVER_OK and the "needs reset" a broken queue leaves, under one
/// lock, together with the device's request `Context` (a block request processor, say), which
/// only `serve` reaches: under that lock, so it is never entered twice at once.
final class SingleRequestQueue<Context>: Sendable {
    private struct State {
        var queue: SplitVirtqueue?
        var interrupt: (any VirtioInterrupt)?
        var needsReset = false
        let context: Context
    }

    private let state: Mutex<State>

    init(context: sending Context) { state = Mutex(State(context: context)) }

    /// The guest broke the queue; nothing more is served until `reset()`.
    var needsReset: Bool { state.withLock { $0.needsReset } }

    /// DRIVER_OK: takes queue 0 (nil when the driver did not enable it) and the interrupt.
    func activate(queues: [SplitVirtqueue?], interrupt: any VirtioInterrupt) {
        let handover = QueueHandover(queues: queues)
        state.withLock { state in
            state.queue = handover.take(0)
            state.interrupt = interrupt
            state.needsReset = false
        }
    }

    /// Drains the queue (batching notifications, 2.7.10) with `handler`, which returns the bytes
    /// it wrote into each chain, then interrupts the driver if it asked for it (2.7.7). The
    /// interrupt is raised outside the lock. The handler is handed the context rather than
    /// capturing it (hence `@Sendable`): so the compiler can see the context stays in the lock.
    func serve(_ handler: @Sendable (Context, DescriptorChain) -> UInt32) {
        let interrupt: (any VirtioInterrupt)? = state.withLock { state in
            guard !state.needsReset, let queue = state.queue, let interrupt = state.interrupt else { return nil }
            let context = state.context
            let result = queue.drain { chain in handler(context, chain) }
            if result.broken { state.needsReset = true }
            return result.needsNotification ? interrupt : nil
        }
        interrupt?.signalUsedBuffers(queue: 0)
    }

    /// The driver reset the device.
    func reset() {
        state.withLock { state in
            state.queue = nil
            state.interrupt = nil
            state.needsReset = false
        }
    }
}

extension SingleRequestQueue where Context == Void {
    convenience init() { self.init(context: ()) }
}
