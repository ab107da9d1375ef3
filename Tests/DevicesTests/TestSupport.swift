import Foundation
import GuestMemory
import Synchronization
@testable import Devices

/// Records every level an interrupt line was driven to.
final class FakeInterruptLine: InterruptLine {
    private let levels = Mutex<[Bool]>([])
    func setLevel(_ high: Bool) { levels.withLock { $0.append(high) } }
    var history: [Bool] { levels.withLock { $0 } }
    var level: Bool { levels.withLock { $0.last ?? false } }
    /// Rising edges seen so far (what an edge-triggered controller latches).
    var risingEdges: Int {
        var previous = false
        var edges = 0
        for high in history {
            if high && !previous { edges += 1 }
            previous = high
        }
        return edges
    }
}

/// Collects values handed to a device's callback.
final class Recorder<Value: Sendable>: Sendable {
    private let values = Mutex<[Value]>([])
    func record(_ value: Value) { values.withLock { $0.append(value) } }
    var all: [Value] { values.withLock { $0 } }
}

/// A device that remembers the last access, to see what offset the bus passed.
final class ProbeDevice: PortIODevice {
    let tag: UInt32
    private let last = Mutex<(offset: UInt16, size: Int, value: UInt32)?>(nil)
    init(tag: UInt32) { self.tag = tag }
    func read(offset: UInt16, size: Int) -> UInt32 { tag << 16 | UInt32(offset) }
    func write(offset: UInt16, size: Int, value: UInt32) { last.withLock { $0 = (offset, size, value) } }
    var lastWrite: (offset: UInt16, size: Int, value: UInt32)? { last.withLock { $0 } }
}

/// Runs `body` on a thread of its own and returns its result, or nil when it is still running
/// after `seconds`: a device loop that never ends then fails its test instead of hanging the run
/// (the thread is left spinning until the test process exits).
func finishes<T>(within seconds: Double, _ body: @escaping () -> T) -> T? {
    let run = BackgroundRun(body)
    Thread { run.start() }.start()
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if let result = run.result { return result }
        usleep(1000)
    }
    return run.result
}

/// `finishes`' body and result, handed between threads under a lock.
private final class BackgroundRun<T>: @unchecked Sendable {
    private let body: () -> T
    private let lock = NSLock()
    private var value: T?

    init(_ body: @escaping () -> T) { self.body = body }

    func start() {
        let result = body()
        lock.withLock { value = result }
    }

    var result: T? { lock.withLock { value } }
}

/// A queue of size 4 whose used ring lies two bytes after its available ring (0x2002 and
/// 0x2004), so used.flags is avail.idx and used.idx is avail.ring[0]: the device's own
/// notification suppression moves avail.idx (disabling sets it to 1, enabling back to 0).
/// Descriptor 0 (a buffer of `length` bytes at 0x80000) is what ring[0] names while used.idx is 0.
func overlappingRingsQueue(memory: GuestMemory, length: UInt32 = 1, writable: Bool = false) throws -> SplitVirtqueue {
    try memory.store(UInt64(0x80000), at: GuestAddress(0x1000))
    try memory.store(length, at: GuestAddress(0x1008))
    try memory.store(writable ? SplitVirtqueueLayout.descriptorFlagWrite : 0, at: GuestAddress(0x100C))
    return try SplitVirtqueue(memory: memory, configuration: VirtqueueConfiguration(
        size: 4, descriptorTable: GuestAddress(0x1000), availableRing: GuestAddress(0x2002), usedRing: GuestAddress(0x2004)))
}
