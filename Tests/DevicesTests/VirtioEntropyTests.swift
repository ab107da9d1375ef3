import GuestMemory
import Synchronization
import Testing
import Backends
@testable import Devices

private final class EntropyTestInterrupt: VirtioInterrupt {
    private let count = Mutex(0)
    func signalUsedBuffers(queue: Int) { count.withLock { $0 += 1 } }
    func signalConfigurationChange() {}
    var used: Int { count.withLock { $0 } }
}

@Suite struct VirtioEntropyTests {
    private func activated(size: UInt16 = 8) throws -> (VirtqueueTestDriver, VirtioEntropy, EntropyTestInterrupt) {
        let driver = try VirtqueueTestDriver(size: size)
        let device = VirtioEntropy()
        let interrupt = EntropyTestInterrupt()
        try device.activate(features: VirtioFeature.version1, memory: driver.memory,
                            queues: [try driver.makeQueue()], interrupt: interrupt)
        return (driver, device, interrupt)
    }

    @Test func identity() {
        let device = VirtioEntropy()
        #expect(device.deviceType == 4)
        #expect(device.queueCount == 1)
        #expect(device.deviceFeatures == 0)
        #expect(device.configurationSize == 0)
    }

    @Test func fillsWritableBuffers() throws {
        let (driver, device, interrupt) = try activated()
        try driver.memory.fill(at: GuestAddress(0x20000), count: 0x3000, with: 0)
        try driver.post([.init(address: 0x20000, length: 64, writable: true),
                         .init(address: 0x21000, length: 0, writable: true),
                         .init(address: 0x22000, length: 200, writable: true)])
        device.queueNotified(0)
        #expect(try driver.usedIndex == 1)
        #expect(try driver.usedElement(0).length == 264)
        #expect(interrupt.used == 1)
        let bytes = try driver.read(0x20000, 64) + driver.read(0x22000, 200)
        #expect(Set(bytes).count > 16, "random bytes, not a constant")
        // Only the buffers were written.
        #expect(try driver.read(0x20000 + 64, 16) == [UInt8](repeating: 0, count: 16))
        #expect(try driver.read(0x22000 + 200, 16) == [UInt8](repeating: 0, count: 16))
        #expect(device.bytesProvided == 264)
    }

    @Test func twoRequestsDiffer() throws {
        let (driver, device, _) = try activated()
        try driver.post([.init(address: 0x20000, length: 32, writable: true)])
        try driver.post([.init(address: 0x21000, length: 32, writable: true)])
        device.queueNotified(0)
        #expect(try driver.usedIndex == 2)
        #expect(try driver.read(0x20000, 32) != driver.read(0x21000, 32))
    }

    @Test func readableBuffersIgnoredAndLimitApplied() throws {
        let (driver, device, _) = try activated()
        try driver.fill(0x10000, [1, 2, 3, 4])
        try driver.post([.init(address: 0x10000, length: 4),
                         .init(address: 0x20000, length: 100 << 10, writable: true)])
        device.queueNotified(0)
        #expect(try driver.usedElement(0).length == UInt32(VirtioEntropy.requestLimit))
        #expect(try driver.read(0x10000, 4) == [1, 2, 3, 4])
    }

    @Test func noWritableBufferGivesZeroLength() throws {
        let (driver, device, _) = try activated()
        try driver.post([.init(address: 0x10000, length: 16)])
        try driver.post([.init(address: 0x300000, length: 16, writable: true)])  // outside guest memory
        device.queueNotified(0)
        #expect(try driver.usedIndex == 2)
        #expect(try driver.usedElement(0).length == 0)
        #expect(try driver.usedElement(1).length == 0)
        #expect(!device.needsReset)
    }

    @Test func brokenQueueAndReset() throws {
        let (driver, device, _) = try activated()
        try driver.setAvailableIndex(50)
        device.queueNotified(0)
        #expect(device.needsReset)
        device.reset()
        #expect(!device.needsReset)
        device.queueNotified(0)
        #expect(try driver.usedIndex == 0)
    }

    @Test func noInterruptWhenSuppressed() throws {
        let (driver, device, interrupt) = try activated()
        try driver.setAvailableFlags(1)
        try driver.post([.init(address: 0x20000, length: 8, writable: true)])
        device.queueNotified(0)
        #expect(try driver.usedIndex == 1)
        #expect(interrupt.used == 0)
    }
}
