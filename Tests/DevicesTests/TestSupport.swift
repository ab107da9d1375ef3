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
