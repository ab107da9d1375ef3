import GuestMemory
import Synchronization

/// The virtio 1.x modern PCI transport (VIRTIO 1.2 section 4.1) around one `VirtioDevice`.
///
/// BAR 0 (32 KiB, 32-bit memory) holds every structure, each announced by a vendor-specific
/// capability (4.1.4):
/// ```
/// 0x0000  common configuration (4.1.4.3)      0x1000  ISR status (4.1.4.5)
/// 0x2000  device-specific configuration       0x3000  notifications, 4 bytes per queue (4.1.4.4)
/// 0x4000  MSI-X table                          0x5000  MSI-X PBA
/// ```
/// Feature negotiation, the status state machine (2.1) and reset live here; on DRIVER_OK the
/// enabled queues are built (SplitVirtqueue validates every ring against guest memory) and
/// handed to the device. Doorbells go to `onNotify` (the VMM wires an ioeventfd to the same
/// address, so a kick normally never reaches this code; a write that does is forwarded too).
/// A device error or a bad queue configuration sets DEVICE_NEEDS_RESET (2.1.2) and raises the
/// configuration-change interrupt, never traps.
public final class VirtioPCIDevice: PCIDevice, @unchecked Sendable {
    public static let vendorID: UInt16 = 0x1AF4
    public static let barSize: UInt64 = 0x8000
    public static let commonOffset: UInt64 = 0x0000, commonLength: UInt64 = 0x40
    public static let isrOffset: UInt64 = 0x1000
    public static let deviceConfigOffset: UInt64 = 0x2000
    public static let notifyOffset: UInt64 = 0x3000
    public static let notifyMultiplier: UInt32 = 4
    static let msixTableOffset: UInt32 = 0x4000, msixPBAOffset: UInt32 = 0x5000
    static let noVector: UInt16 = 0xFFFF

    // Device status bits (2.1).
    static let acknowledge: UInt8 = 1, driver: UInt8 = 2, driverOK: UInt8 = 4, featuresOK: UInt8 = 8
    static let needsReset: UInt8 = 64, failed: UInt8 = 128

    public let configuration: PCIConfigurationSpace
    public let device: any VirtioDevice
    public let msix: MSIXCapability
    private let memory: GuestMemory
    /// Called with the queue index when the driver rings a doorbell through MMIO.
    private let onNotify: @Sendable (Int) -> Void
    /// Called once with a one-line reason whenever the device enters DEVICE_NEEDS_RESET.
    private let onError: @Sendable (String) -> Void
    private let state: Mutex<State>
    private let regions: [PCIBARRegion]

    /// Per-queue registers as the driver programs them (4.1.4.3).
    struct QueueRegisters {
        var size: UInt16
        var vector: UInt16 = VirtioPCIDevice.noVector
        var enabled = false
        var descriptors: UInt64 = 0, driverArea: UInt64 = 0, deviceArea: UInt64 = 0
    }

    struct State {
        var deviceFeatureSelect: UInt32 = 0
        var driverFeatureSelect: UInt32 = 0
        var driverFeatures: UInt64 = 0
        var configVector: UInt16 = VirtioPCIDevice.noVector
        var status: UInt8 = 0
        var configGeneration: UInt8 = 0
        var queueSelect: UInt16 = 0
        var queues: [QueueRegisters]
        var isr: UInt8 = 0
        var active = false
    }

    /// The features this transport offers: the device's plus VERSION_1, EVENT_IDX, INDIRECT_DESC.
    public var offeredFeatures: UInt64 {
        device.deviceFeatures | VirtioFeature.version1 | VirtioFeature.eventIndex | VirtioFeature.indirectDescriptors
    }

    public init(device: any VirtioDevice, memory: GuestMemory, delivery: any MSIDelivery,
                onNotify: @escaping @Sendable (Int) -> Void, onError: @escaping @Sendable (String) -> Void) throws(DeviceError) {
        self.device = device
        self.memory = memory
        self.onNotify = onNotify
        self.onError = onError
        let classCode: UInt32 = switch device.deviceType {
        case VirtioDeviceType.block: 0x01_8000
        case VirtioDeviceType.net: 0x02_0000
        default: 0xFF_0000
        }
        configuration = PCIConfigurationSpace(vendorID: Self.vendorID, deviceID: 0x1040 + device.deviceType,
                                              classCode: classCode, revision: 1,
                                              subsystemVendorID: Self.vendorID, subsystemID: 0x40, interruptPin: 1)
        try configuration.setBAR(0, .memory32(size: Self.barSize))
        msix = try MSIXCapability(vectorCount: device.queueCount + 1, tableBAR: 0, tableOffset: Self.msixTableOffset,
                                  pbaBAR: 0, pbaOffset: Self.msixPBAOffset, delivery: delivery)
        state = Mutex(State(queues: Array(repeating: QueueRegisters(size: device.maximumQueueSize), count: device.queueCount)))
        // Capabilities (4.1.4): cfg_type, bar, id, padding[2], offset, length (+ multiplier).
        func capability(_ type: UInt8, _ offset: UInt64, _ length: UInt64, extra: [UInt8] = []) -> [UInt8] {
            var body: [UInt8] = [type, 0, 0, 0, 0] // the config space fills in cap_len itself
            for v in [UInt32(offset), UInt32(length)] { for i in 0..<4 { body.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
            return body + extra
        }
        let notifyLength = UInt64(max(device.queueCount, 1)) * UInt64(Self.notifyMultiplier)
        let multiplier = (0..<4).map { UInt8(truncatingIfNeeded: Self.notifyMultiplier >> (8 * $0)) }
        _ = try configuration.addVendorSpecificCapability(body: capability(1, Self.commonOffset, Self.commonLength))
        _ = try configuration.addVendorSpecificCapability(body: capability(2, Self.notifyOffset, notifyLength, extra: multiplier))
        _ = try configuration.addVendorSpecificCapability(body: capability(3, Self.isrOffset, 4))
        if device.configurationSize > 0 {
            _ = try configuration.addVendorSpecificCapability(body: capability(4, Self.deviceConfigOffset, UInt64(device.configurationSize)))
        }
        try msix.install(in: configuration)
        let handlers = [VirtioPCIRegion(.common), VirtioPCIRegion(.isr), VirtioPCIRegion(.notify), VirtioPCIRegion(.device)]
        var r = [PCIBARRegion(barIndex: 0, offset: Self.commonOffset, length: Self.commonLength, handler: handlers[0]),
                 PCIBARRegion(barIndex: 0, offset: Self.isrOffset, length: 4, handler: handlers[1]),
                 PCIBARRegion(barIndex: 0, offset: Self.notifyOffset, length: notifyLength, handler: handlers[2])]
        if device.configurationSize > 0 {
            r.append(PCIBARRegion(barIndex: 0, offset: Self.deviceConfigOffset, length: UInt64(device.configurationSize), handler: handlers[3]))
        }
        regions = r + msix.regions
        for h in handlers { h.transport = self }
    }

    public func barRegions() -> [PCIBARRegion] { regions }

    /// The guest-physical address of queue `index`'s doorbell, for an ioeventfd (nil until BAR 0
    /// decodes).
    public func notifyAddress(queue index: Int) -> UInt64? {
        configuration.decodedAddress(ofBAR: 0).map { $0 + Self.notifyOffset + UInt64(index) * UInt64(Self.notifyMultiplier) }
    }

    // MARK: Interrupts

    /// Raises the interrupt for used buffers on `queue` (its MSI-X vector; ISR bit 0 otherwise).
    func signal(queue: Int) {
        let vector = state.withLock { s -> UInt16 in
            s.isr |= 1
            return queue < s.queues.count ? s.queues[queue].vector : Self.noVector
        }
        if vector != Self.noVector { _ = msix.signal(vector: Int(vector)) }
    }

    func signalConfigurationChange() {
        let vector = state.withLock { s -> UInt16 in
            s.isr |= 2
            s.configGeneration &+= 1
            return s.configVector
        }
        if vector != Self.noVector { _ = msix.signal(vector: Int(vector)) }
    }

    /// Marks the device as needing a reset (2.1.2): sets the status bit, reports `reason` once,
    /// and raises the configuration-change interrupt so the driver notices.
    public func enterNeedsReset(_ reason: String) {
        let first = state.withLock { s -> Bool in
            defer { s.status |= Self.needsReset }
            return s.status & Self.needsReset == 0
        }
        guard first else { return }
        onError(reason)
        signalConfigurationChange()
    }

    // MARK: Common configuration (4.1.4.3)

    func readCommon(offset: UInt64, size: Int) -> UInt32 {
        state.withLock { s -> UInt32 in
            let q = Int(s.queueSelect)
            let hasQueue = q < s.queues.count
            switch offset {
            case 0: return s.deviceFeatureSelect
            case 4:
                let features = offeredFeatures
                return s.deviceFeatureSelect == 0 ? UInt32(truncatingIfNeeded: features)
                    : s.deviceFeatureSelect == 1 ? UInt32(truncatingIfNeeded: features >> 32) : 0
            case 8: return s.driverFeatureSelect
            case 12: return s.driverFeatureSelect == 0 ? UInt32(truncatingIfNeeded: s.driverFeatures)
                : s.driverFeatureSelect == 1 ? UInt32(truncatingIfNeeded: s.driverFeatures >> 32) : 0
            case 16: return UInt32(s.configVector)
            case 18: return UInt32(s.queues.count)
            case 20: return UInt32(s.status)
            case 21: return UInt32(s.configGeneration)
            case 22: return UInt32(s.queueSelect)
            case 24: return hasQueue ? UInt32(s.queues[q].size) : 0
            case 26: return hasQueue ? UInt32(s.queues[q].vector) : UInt32(Self.noVector)
            case 28: return hasQueue && s.queues[q].enabled ? 1 : 0
            case 30: return hasQueue ? UInt32(q) : 0 // queue_notify_off = index
            case 32: return hasQueue ? UInt32(truncatingIfNeeded: s.queues[q].descriptors) : 0
            case 36: return hasQueue ? UInt32(truncatingIfNeeded: s.queues[q].descriptors >> 32) : 0
            case 40: return hasQueue ? UInt32(truncatingIfNeeded: s.queues[q].driverArea) : 0
            case 44: return hasQueue ? UInt32(truncatingIfNeeded: s.queues[q].driverArea >> 32) : 0
            case 48: return hasQueue ? UInt32(truncatingIfNeeded: s.queues[q].deviceArea) : 0
            case 52: return hasQueue ? UInt32(truncatingIfNeeded: s.queues[q].deviceArea >> 32) : 0
            default: return 0
            }
        }
    }

    func writeCommon(offset: UInt64, size: Int, value: UInt32) {
        var activate = false, reset = false
        state.withLock { s in
            let q = Int(s.queueSelect)
            let hasQueue = q < s.queues.count
            // Queue registers may change only before DRIVER_OK (4.1.4.3.2).
            let queueWritable = hasQueue && s.status & Self.driverOK == 0
            switch offset {
            case 0: s.deviceFeatureSelect = value
            case 8: s.driverFeatureSelect = value
            case 12 where s.status & Self.featuresOK == 0:
                if s.driverFeatureSelect == 0 {
                    s.driverFeatures = (s.driverFeatures & ~0xFFFF_FFFF) | UInt64(value)
                } else if s.driverFeatureSelect == 1 {
                    s.driverFeatures = (s.driverFeatures & 0xFFFF_FFFF) | UInt64(value) << 32
                }
            case 16: s.configVector = UInt16(truncatingIfNeeded: value)
            case 20:
                let new = UInt8(truncatingIfNeeded: value)
                if new == 0 { reset = true; return }
                var status = new
                // FEATURES_OK sticks only for a subset of what we offer that includes VERSION_1.
                if new & Self.featuresOK != 0 && s.status & Self.featuresOK == 0 {
                    let offered = offeredFeatures
                    if s.driverFeatures & ~offered != 0 || s.driverFeatures & VirtioFeature.version1 == 0 {
                        status &= ~Self.featuresOK
                    }
                }
                if status & Self.driverOK != 0 && s.status & Self.driverOK == 0 && status & Self.featuresOK != 0 {
                    activate = true
                }
                s.status = status | (s.status & Self.needsReset)
            case 22: s.queueSelect = UInt16(truncatingIfNeeded: value)
            case 24 where queueWritable: s.queues[q].size = UInt16(truncatingIfNeeded: value)
            case 26 where hasQueue: s.queues[q].vector = UInt16(truncatingIfNeeded: value)
            case 28 where queueWritable: s.queues[q].enabled = value & 1 == 1
            case 32 where queueWritable: s.queues[q].descriptors = (s.queues[q].descriptors & ~0xFFFF_FFFF) | UInt64(value)
            case 36 where queueWritable: s.queues[q].descriptors = (s.queues[q].descriptors & 0xFFFF_FFFF) | UInt64(value) << 32
            case 40 where queueWritable: s.queues[q].driverArea = (s.queues[q].driverArea & ~0xFFFF_FFFF) | UInt64(value)
            case 44 where queueWritable: s.queues[q].driverArea = (s.queues[q].driverArea & 0xFFFF_FFFF) | UInt64(value) << 32
            case 48 where queueWritable: s.queues[q].deviceArea = (s.queues[q].deviceArea & ~0xFFFF_FFFF) | UInt64(value)
            case 52 where queueWritable: s.queues[q].deviceArea = (s.queues[q].deviceArea & 0xFFFF_FFFF) | UInt64(value) << 32
            default: break // read-only or unknown registers ignore writes
            }
        }
        if reset { resetDevice() }
        if activate { activateDevice() }
    }

    /// Writing 0 to device_status (2.4): the device forgets negotiation and queues.
    func resetDevice() {
        let wasActive = state.withLock { s -> Bool in
            let active = s.active
            s = State(queues: Array(repeating: QueueRegisters(size: device.maximumQueueSize), count: s.queues.count))
            return active
        }
        if wasActive { device.reset() }
    }

    private func activateDevice() {
        let (features, registers) = state.withLock { ($0.driverFeatures, $0.queues) }
        let eventIndex = features & VirtioFeature.eventIndex != 0
        var queues: [SplitVirtqueue?] = []
        for (index, r) in registers.enumerated() {
            guard r.enabled else { queues.append(nil); continue }
            guard r.size > 0, r.size <= device.maximumQueueSize else {
                return enterNeedsReset("virtio queue \(index): size \(r.size) is outside 1...\(device.maximumQueueSize)")
            }
            let config = VirtqueueConfiguration(size: r.size, descriptorTable: GuestAddress(r.descriptors),
                                                availableRing: GuestAddress(r.driverArea), usedRing: GuestAddress(r.deviceArea),
                                                eventIndex: eventIndex, ready: true)
            do {
                queues.append(try SplitVirtqueue(memory: memory, configuration: config))
            } catch {
                return enterNeedsReset("virtio queue \(index): \(error)")
            }
        }
        do {
            try device.activate(features: features, memory: memory, queues: queues, interrupt: VirtioPCIInterrupt(transport: self))
            state.withLock { $0.active = true }
        } catch {
            enterNeedsReset("virtio device \(device.deviceType): \(error.message)")
        }
    }

    // MARK: Other structures

    /// ISR status (4.1.4.5): reading returns and clears it.
    func readISR() -> UInt32 {
        state.withLock { s -> UInt32 in
            let v = s.isr
            s.isr = 0
            return UInt32(v)
        }
    }

    /// A doorbell that reached userspace (no ioeventfd registered, or a misaligned write).
    func notify(offset: UInt64) {
        let queue = Int(offset / UInt64(Self.notifyMultiplier))
        let ready = state.withLock { $0.active && queue < $0.queues.count && $0.queues[queue].enabled }
        if ready { onNotify(queue) }
    }

    /// Whether the driver set DRIVER_OK and the device took its queues.
    public var isActive: Bool { state.withLock { $0.active } }
}

/// Routes the device's interrupts to the transport that owns it.
struct VirtioPCIInterrupt: VirtioInterrupt {
    unowned let transport: VirtioPCIDevice
    func signalUsedBuffers(queue: Int) { transport.signal(queue: queue) }
    func signalConfigurationChange() { transport.signalConfigurationChange() }
}

/// One structure of BAR 0 as an MMIO handler; it calls back into its transport (held weakly:
/// the transport owns its regions).
final class VirtioPCIRegion: MMIODevice, @unchecked Sendable {
    enum Kind { case common, isr, notify, device }
    let kind: Kind
    weak var transport: VirtioPCIDevice?

    init(_ kind: Kind) { self.kind = kind }

    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        guard let t = transport, !data.isEmpty else { return }
        switch kind {
        case .common:
            // Each register is read at its own offset with its own width (64-bit fields as two
            // dwords, 4.1.3.1); anything else reads as zero.
            let value = t.readCommon(offset: offset, size: data.count)
            for i in 0..<data.count { data[i] = i < 4 ? UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) : 0 }
        case .isr:
            let value = offset == 0 ? t.readISR() : 0
            for i in 0..<data.count { data[i] = i == 0 ? UInt8(truncatingIfNeeded: value) : 0 }
        case .notify:
            for i in 0..<data.count { data[i] = 0 }
        case .device:
            let size = t.device.configurationSize
            guard offset < UInt64(size), data.count <= size - Int(offset) else {
                for i in 0..<data.count { data[i] = 0 }
                return
            }
            t.device.readConfiguration(offset: Int(offset), into: data)
        }
    }

    func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard let t = transport, !data.isEmpty else { return }
        switch kind {
        case .common:
            var value: UInt32 = 0
            for i in 0..<min(data.count, 4) { value |= UInt32(data[i]) << (8 * UInt32(i)) }
            t.writeCommon(offset: offset, size: data.count, value: value)
        case .isr:
            break
        case .notify:
            t.notify(offset: offset)
        case .device:
            let size = t.device.configurationSize
            guard offset < UInt64(size), data.count <= size - Int(offset) else { return }
            t.device.writeConfiguration(offset: Int(offset), data: data)
        }
    }
}
