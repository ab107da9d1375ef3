import GuestMemory
import Synchronization
import Testing
@testable import Devices

/// A device that records what the transport hands it.
final class RecordingVirtioDevice: VirtioDevice, @unchecked Sendable {
    let deviceType: UInt16 = VirtioDeviceType.entropy
    let queueCount = 2
    let maximumQueueSize: UInt16 = 64
    let deviceFeatures: UInt64 = 1 << 3
    let configurationSize = 8
    var activations: [(features: UInt64, queues: Int)] = []
    var resets = 0
    func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        for i in 0..<data.count { data[i] = UInt8(offset + i) }
    }
    func writeConfiguration(offset: Int, data: UnsafeRawBufferPointer) {}
    func activate(features: UInt64, memory: GuestMemory, queues: [SplitVirtqueue?], interrupt: any VirtioInterrupt) throws(VirtioDeviceError) {
        activations.append((features, queues.compactMap { $0 }.count))
    }
    func queueNotified(_ index: Int) {}
    func reset() { resets += 1 }
}

struct NullDelivery: MSIDelivery { func deliver(address: UInt64, data: UInt32) {} }

/// Thread-safe list of what the transport reported.
final class CallbackLog<T: Sendable>: Sendable {
    private let items = Mutex<[T]>([])
    func append(_ item: T) { items.withLock { $0.append(item) } }
    var all: [T] { items.withLock { $0 } }
}

@Suite struct VirtioPCITransportTests {
    let memory = try! GuestMemory(size: 1 << 20)
    let device = RecordingVirtioDevice()
    let notified = CallbackLog<Int>()
    let errors = CallbackLog<String>()

    func transport() throws -> VirtioPCIDevice {
        try VirtioPCIDevice(device: device, memory: memory, delivery: NullDelivery(),
                            onNotify: { [notified] q in notified.append(q) },
                            onError: { [errors] e in errors.append(e) })
    }

    func region(_ t: VirtioPCIDevice, _ offset: UInt64) -> any MMIODevice {
        t.barRegions().first { $0.offset == offset }!.handler
    }

    func write(_ r: any MMIODevice, _ offset: UInt64, _ value: UInt64, size: Int) {
        var v = value
        withUnsafeBytes(of: &v) { r.write(offset: offset, data: UnsafeRawBufferPointer(rebasing: $0[0..<size])) }
    }

    func read(_ r: any MMIODevice, _ offset: UInt64, size: Int) -> UInt64 {
        var v: UInt64 = 0
        withUnsafeMutableBytes(of: &v) { r.read(offset: offset, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<size])) }
        return v
    }

    @Test func identityAndCapabilities() throws {
        let t = try transport()
        #expect(t.configuration.read(offset: 0, size: 2) == 0x1AF4)
        #expect(t.configuration.read(offset: 2, size: 2) == 0x1044)
        #expect(t.configuration.read(offset: 8, size: 1) == 1, "revision 1 = modern")
        // Walk the capability list: four vendor-specific caps (common, notify, ISR, device) + MSI-X.
        var pointer = Int(t.configuration.read(offset: 0x34, size: 1))
        var types: [UInt32] = []
        while pointer != 0 {
            let id = t.configuration.read(offset: pointer, size: 1)
            if id == 0x09 { types.append(t.configuration.read(offset: pointer + 3, size: 1)) }
            pointer = Int(t.configuration.read(offset: pointer + 1, size: 1))
        }
        #expect(types == [1, 2, 3, 4])
    }

    @Test func negotiationQueuesAndActivation() throws {
        let t = try transport()
        let common = region(t, VirtioPCIDevice.commonOffset)
        #expect(read(common, 18, size: 2) == 2, "num_queues")
        write(common, 4 - 4, 1, size: 4) // device_feature_select = 1
        #expect(read(common, 4, size: 4) & 1 == 1, "VERSION_1 offered (bit 32)")
        // Status: ACK | DRIVER, features without VERSION_1 → FEATURES_OK refused.
        write(common, 20, 3, size: 1)
        write(common, 8, 0, size: 4); write(common, 12, 1 << 3, size: 4)
        write(common, 20, 3 | 8, size: 1)
        #expect(read(common, 20, size: 1) & 8 == 0)
        // Add VERSION_1: accepted.
        write(common, 8, 1, size: 4); write(common, 12, 1, size: 4)
        write(common, 20, 3 | 8, size: 1)
        #expect(read(common, 20, size: 1) & 8 == 8)
        // Queue 0: size 16 at valid, aligned addresses; queue 1 left disabled.
        write(common, 22, 0, size: 2)
        write(common, 24, 16, size: 2)
        write(common, 32, 0x1000, size: 4); write(common, 40, 0x2000, size: 4); write(common, 48, 0x3000, size: 4)
        write(common, 28, 1, size: 2)
        #expect(read(common, 24, size: 2) == 16)
        write(common, 20, 3 | 8 | 4, size: 1)
        #expect(device.activations.count == 1)
        #expect(device.activations.first?.queues == 1)
        #expect(device.activations.first?.features == (1 << 32 | 1 << 3))
        #expect(t.isActive)
        // Doorbell for queue 0 reaches onNotify; queue 1 (disabled) does not.
        let notify = region(t, VirtioPCIDevice.notifyOffset)
        write(notify, 0, 0, size: 2)
        write(notify, 4, 1, size: 2)
        #expect(notified.all == [0])
        // Reset.
        write(common, 20, 0, size: 1)
        #expect(device.resets == 1)
        #expect(read(common, 20, size: 1) == 0)
        #expect(!t.isActive)
    }

    @Test func badQueueSetsNeedsReset() throws {
        let t = try transport()
        let common = region(t, VirtioPCIDevice.commonOffset)
        write(common, 20, 3, size: 1)
        write(common, 8, 1, size: 4); write(common, 12, 1, size: 4)
        write(common, 20, 3 | 8, size: 1)
        write(common, 22, 0, size: 2)
        write(common, 24, 12, size: 2) // not a power of two
        write(common, 32, 0x1000, size: 4); write(common, 40, 0x2000, size: 4); write(common, 48, 0x3000, size: 4)
        write(common, 28, 1, size: 2)
        write(common, 20, 3 | 8 | 4, size: 1)
        #expect(read(common, 20, size: 1) & 64 == 64, "DEVICE_NEEDS_RESET")
        #expect(device.activations.isEmpty)
        #expect(errors.all.count == 1)
        // Ring outside guest memory also refused.
        write(common, 20, 0, size: 1)
        write(common, 20, 3, size: 1); write(common, 8, 1, size: 4); write(common, 12, 1, size: 4); write(common, 20, 11, size: 1)
        write(common, 24, 16, size: 2)
        write(common, 32, 0xFFFF_F000, size: 4); write(common, 36, 0xFFFF, size: 4)
        write(common, 28, 1, size: 2)
        write(common, 20, 15, size: 1)
        #expect(read(common, 20, size: 1) & 64 == 64)
    }

    @Test func deviceConfigurationAndISR() throws {
        let t = try transport()
        let config = region(t, VirtioPCIDevice.deviceConfigOffset)
        #expect(read(config, 4, size: 4) == 0x0706_0504)
        let isr = region(t, VirtioPCIDevice.isrOffset)
        #expect(read(isr, 0, size: 1) == 0)
    }
}
