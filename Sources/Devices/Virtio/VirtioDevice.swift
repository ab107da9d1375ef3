import GuestMemory

/// Feature bits every transport offers (VIRTIO 1.2 section 6, "Reserved Feature Bits").
public enum VirtioFeature {
    public static let indirectDescriptors: UInt64 = 1 << 28
    public static let eventIndex: UInt64 = 1 << 29
    public static let version1: UInt64 = 1 << 32
    public static let accessPlatform: UInt64 = 1 << 33
}

/// Device type IDs (VIRTIO 1.2 section 5).
public enum VirtioDeviceType {
    public static let net: UInt16 = 1, block: UInt16 = 2, console: UInt16 = 3, entropy: UInt16 = 4, vsock: UInt16 = 19
}

/// How a device tells the driver it used buffers or changed its configuration. The transport
/// implements it (MSI-X vectors, or the ISR plus an INTx line).
public protocol VirtioInterrupt: Sendable {
    /// Used buffers were added to queue `queue`.
    func signalUsedBuffers(queue: Int)
    /// The device configuration changed (or the device needs a reset).
    func signalConfigurationChange()
}

/// The device half of a virtio device: its type, features, configuration space, and what it does
/// with its queues. The transport (virtio-pci) owns feature negotiation, the status state
/// machine, queue setup and notifications; it hands the device ready queues on DRIVER_OK.
///
/// Threading: `activate` and `reset` come from a vCPU thread (the driver's register writes);
/// `queueNotified` from the device's event-loop thread. A device keeps its queues behind its own
/// lock or confines them to the loop thread. Configuration reads/writes come from vCPU threads.
public protocol VirtioDevice: AnyObject, Sendable {
    /// VIRTIO device ID (VirtioDeviceType).
    var deviceType: UInt16 { get }
    /// Number of virtqueues.
    var queueCount: Int { get }
    /// Largest queue size the device accepts for each queue (a power of two).
    var maximumQueueSize: UInt16 { get }
    /// Device-specific feature bits; the transport adds VERSION_1, EVENT_IDX and INDIRECT_DESC.
    var deviceFeatures: UInt64 { get }
    /// Bytes of the device-specific configuration structure.
    var configurationSize: Int { get }
    /// Reads `data.count` bytes of the configuration at `offset` (already bounds-checked).
    func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer)
    /// Writes the configuration at `offset` (already bounds-checked); most devices ignore it.
    func writeConfiguration(offset: Int, data: UnsafeRawBufferPointer)
    /// The driver set DRIVER_OK: `queues[i]` is queue i (nil when the driver did not enable it).
    /// Throwing marks the device as needing a reset (DEVICE_NEEDS_RESET).
    func activate(features: UInt64, memory: GuestMemory, queues: [SplitVirtqueue?], interrupt: any VirtioInterrupt) throws(VirtioDeviceError)
    /// The driver notified queue `index` (doorbell); process its available buffers.
    func queueNotified(_ index: Int)
    /// The driver reset the device: drop queues and in-flight state.
    func reset()
    /// True once the device stopped processing because the driver broke a queue (a bad avail
    /// index, say); the transport then sets DEVICE_NEEDS_RESET. `reset()` clears it.
    var needsReset: Bool { get }
    /// Host descriptors the device waits on besides its doorbells (a tap's fd for received
    /// frames, a listening socket); the event loop polls them for input.
    var eventSources: [Int32] { get }
    /// `eventSources[index]` is readable; called on the event-loop thread.
    func eventSourceReady(_ index: Int)
}

/// Serves configuration reads from a fixed byte image of the device's configuration structure:
/// bytes past its end read as zero.
public func copyConfiguration(_ image: some RandomAccessCollection<UInt8>, offset: Int, into data: UnsafeMutableRawBufferPointer) {
    for i in 0..<data.count {
        let index = offset + i
        data[i] = index >= 0 && index < image.count ? image[image.index(image.startIndex, offsetBy: index)] : 0
    }
}

extension VirtioDevice {
    /// None of our devices offers a driver-writable configuration field (net's MAC is writable only
    /// through the legacy interface, 5.1.4.3; blk's writeback needs CONFIG_WCE, not offered), so
    /// writes are ignored unless a device says otherwise.
    public func writeConfiguration(offset: Int, data: UnsafeRawBufferPointer) {}
    public var needsReset: Bool { false }
    public var eventSources: [Int32] { [] }
    public func eventSourceReady(_ index: Int) {}
}

/// A device that cannot operate any more (bad guest input on a queue, a backend failure): one
/// line for the log; the transport sets DEVICE_NEEDS_RESET.
public struct VirtioDeviceError: Error, CustomStringConvertible, Equatable, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
