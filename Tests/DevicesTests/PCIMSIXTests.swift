import Synchronization
import Testing
@testable import Devices

/// Records the MSIs a capability sends.
final class PCITestMSIRecorder: MSIDelivery {
    struct Message: Equatable { var address: UInt64, data: UInt32 }
    private let messages = Mutex<[Message]>([])
    func deliver(address: UInt64, data: UInt32) { messages.withLock { $0.append(Message(address: address, data: data)) } }
    var all: [Message] { messages.withLock { $0 } }
}

/// A device with MSI-X in BAR 1: table at 0, PBA at 0x800 (QEMU's virtio-pci layout).
final class PCITestMSIXDevice: PCIDevice {
    let configuration = PCIConfigurationSpace(vendorID: 0x1AF4, deviceID: 0x1041, classCode: 0x02_0000)
    let msix: MSIXCapability
    let capabilityOffset: Int

    init(vectors: Int = 3, delivery: PCITestMSIRecorder) throws {
        try configuration.setBAR(1, .memory32(size: 0x1000))
        msix = try MSIXCapability(vectorCount: vectors, tableBAR: 1, tableOffset: 0, pbaBAR: 1, pbaOffset: 0x800, delivery: delivery)
        capabilityOffset = try msix.install(in: configuration)
    }

    func barRegions() -> [PCIBARRegion] { msix.regions }
}

@Suite struct PCIMSIXTests {
    /// A bus with one MSI-X device attached; returns the MMIO bus, the device and its BAR 1.
    static func setUp(vectors: Int = 3) throws -> (mmio: MMIOBus, device: PCITestMSIXDevice, bar: UInt64, msis: PCITestMSIRecorder, bus: PCIBus) {
        let mmio = MMIOBus()
        let bus = try PCIBus(mmioBus: mmio)
        let msis = PCITestMSIRecorder()
        let device = try PCITestMSIXDevice(vectors: vectors, delivery: msis)
        try bus.attach(device)
        // What Linux's pci_set_master does before a driver enables MSI-X.
        device.configuration.write(offset: 4, size: 2, value: UInt32(device.configuration.command | 0x4))
        return (mmio, device, try #require(device.configuration.decodedAddress(ofBAR: 1)), msis, bus)
    }

    static func setMessageControl(_ device: PCITestMSIXDevice, _ value: UInt16) {
        device.configuration.write(offset: device.capabilityOffset + 2, size: 2, value: UInt32(value))
    }

    @Test func capabilityLayout() throws {
        let (_, device, _, _, _) = try Self.setUp(vectors: 3)
        let space = device.configuration
        let offset = device.capabilityOffset
        #expect(space.read(offset: 0x34, size: 1) == UInt32(offset))
        #expect(space.read(offset: offset, size: 1) == 0x11)
        #expect(space.read(offset: offset + 1, size: 1) == 0)
        #expect(space.read(offset: offset + 2, size: 2) == 0x0002)    // table size - 1
        #expect(space.read(offset: offset + 4, size: 4) == 0x0000_0001) // offset 0, BIR 1
        #expect(space.read(offset: offset + 8, size: 4) == 0x0000_0801) // offset 0x800, BIR 1
        // Only enable and function mask are writable.
        space.write(offset: offset, size: 4, value: 0xFFFF_FFFF)
        #expect(space.read(offset: offset + 2, size: 2) == 0xC002)
        space.write(offset: offset + 4, size: 4, value: 0xFFFF_FFFF)
        #expect(space.read(offset: offset + 4, size: 4) == 0x0000_0001)
        #expect(device.msix.isEnabled && device.msix.isFunctionMasked)
    }

    @Test func badLayoutsAreRefused() throws {
        let msis = PCITestMSIRecorder()
        #expect(throws: DeviceError.self) { try MSIXCapability(vectorCount: 0, tableBAR: 0, tableOffset: 0, pbaBAR: 0, pbaOffset: 0x800, delivery: msis) }
        #expect(throws: DeviceError.self) { try MSIXCapability(vectorCount: 2049, tableBAR: 0, tableOffset: 0, pbaBAR: 0, pbaOffset: 0x800, delivery: msis) }
        #expect(throws: DeviceError.self) { try MSIXCapability(vectorCount: 4, tableBAR: 0, tableOffset: 4, pbaBAR: 0, pbaOffset: 0x800, delivery: msis) }
        #expect(throws: DeviceError.self) { try MSIXCapability(vectorCount: 4, tableBAR: 0, tableOffset: 0, pbaBAR: 0, pbaOffset: 0x30, delivery: msis) }
        #expect(throws: DeviceError.self) { try MSIXCapability(vectorCount: 4, tableBAR: 6, tableOffset: 0, pbaBAR: 0, pbaOffset: 0x800, delivery: msis) }
        // Table larger than its BAR.
        let space = PCIConfigurationSpace(vendorID: 1, deviceID: 1, classCode: 0)
        try space.setBAR(0, .memory32(size: 0x100))
        let msix = try MSIXCapability(vectorCount: 32, tableBAR: 0, tableOffset: 0, pbaBAR: 2, pbaOffset: 0, delivery: msis)
        #expect(throws: DeviceError.self) { try msix.install(in: space) }
    }

    @Test func tableAccessThroughMMIODwordAndQword() throws {
        let (mmio, device, bar, _, _) = try Self.setUp()
        // Reset state: address and data zero, every vector masked.
        for v in 0..<3 {
            let entry = bar + UInt64(v) * 16
            #expect(mmio.probe(entry, size: 8).value == 0)
            #expect(mmio.probe(entry + 8, size: 4).value == 0)
            #expect(mmio.probe(entry + 12, size: 4).value == 1)
        }
        // Linux writes address low/high and data as dwords; others use qwords.
        let e1 = bar + 16
        mmio.poke(e1, size: 4, value: 0xFEE0_1000)
        mmio.poke(e1 + 4, size: 4, value: 0)
        mmio.poke(e1 + 8, size: 4, value: 0x4041)
        #expect(mmio.probe(e1, size: 8).value == 0x0000_0000_FEE0_1000)
        #expect(device.msix.message(vector: 1)! == (0xFEE0_1000, 0x4041))
        mmio.poke(e1, size: 8, value: 0x0000_0001_FEE0_2000)
        mmio.poke(e1 + 8, size: 8, value: 0x0000_0001_0000_4042)   // data and vector control together
        #expect(mmio.probe(e1 + 4, size: 4).value == 1)
        #expect(mmio.probe(e1 + 8, size: 8).value == 0x0000_0001_0000_4042)
        #expect(device.msix.message(vector: 1)! == (0x1_FEE0_2000, 0x4042))
        // Vector control: only the mask bit exists.
        mmio.poke(e1 + 12, size: 4, value: 0xFFFF_FFFE)
        #expect(mmio.probe(e1 + 12, size: 4).value == 0)
        #expect(!device.msix.isMasked(vector: 1))
        #expect(device.msix.isMasked(vector: 0))
        // A byte write merges into its dword.
        mmio.poke(e1 + 9, size: 1, value: 0x55)
        #expect(mmio.probe(e1 + 8, size: 4).value == 0x5542)
        // The PBA is read-only and starts clear.
        #expect(mmio.probe(bar + 0x800, size: 8).value == 0)
        mmio.poke(bar + 0x800, size: 8, value: UInt64.max)
        #expect(mmio.probe(bar + 0x800, size: 8).value == 0)
        // Between table and PBA nothing answers (the BAR has no handler there).
        #expect(!mmio.probe(bar + 0x400, size: 4).claimed)
    }

    @Test func maskedVectorsGoPendingAndDeliverOnUnmask() throws {
        let (mmio, device, bar, msis, _) = try Self.setUp()
        let msix = device.msix
        #expect(msix.signal(vector: 0) == .disabled)   // MSI-X off: the device would use INTx
        #expect(msix.signal(vector: 3) == .disabled)   // no such vector
        Self.setMessageControl(device, 0x8000)
        #expect(msix.isEnabled)

        mmio.poke(bar, size: 4, value: 0xFEE0_0000)
        mmio.poke(bar + 8, size: 4, value: 0x30)
        // Vector 0 is still masked from reset: pending, visible in the PBA.
        #expect(msix.signal(vector: 0) == .pending)
        #expect(msix.signal(vector: 0) == .pending)   // a second one coalesces
        #expect(msix.isPending(vector: 0))
        #expect(mmio.probe(bar + 0x800, size: 8).value == 0x1)
        #expect(msis.all.isEmpty)

        // Unmasking delivers it once and clears the bit.
        mmio.poke(bar + 12, size: 4, value: 0)
        #expect(msis.all == [.init(address: 0xFEE0_0000, data: 0x30)])
        #expect(!msix.isPending(vector: 0))
        #expect(mmio.probe(bar + 0x800, size: 8).value == 0)

        // Unmasked: straight through.
        #expect(msix.signal(vector: 0) == .delivered)
        #expect(msis.all.count == 2)
        // Masking again holds the next one back.
        mmio.poke(bar + 12, size: 4, value: 1)
        #expect(msix.signal(vector: 0) == .pending)
        #expect(msis.all.count == 2)
        // Re-writing the mask bit set does not deliver.
        mmio.poke(bar + 12, size: 4, value: 1)
        #expect(msis.all.count == 2)
        mmio.poke(bar + 8, size: 8, value: 0x31)   // qword: data 0x31, vector control 0
        #expect(msis.all.last == .init(address: 0xFEE0_0000, data: 0x31))
        #expect(msis.all.count == 3)
    }

    @Test func functionMaskHoldsEveryVector() throws {
        let (mmio, device, bar, msis, _) = try Self.setUp()
        let msix = device.msix
        for v in 0..<3 {
            let entry = bar + UInt64(v) * 16
            mmio.poke(entry, size: 8, value: 0xFEE0_0000)
            mmio.poke(entry + 8, size: 8, value: UInt64(0x40 + v))   // unmasked
        }
        // Linux enables with the function masked, programs, then clears the function mask.
        Self.setMessageControl(device, 0xC000)
        #expect(msix.signal(vector: 2) == .pending)
        #expect(msix.signal(vector: 0) == .pending)
        #expect(mmio.probe(bar + 0x800, size: 4).value == 0b101)
        // Vector 2 also masked individually: it stays pending when the function mask clears.
        mmio.poke(bar + 2 * 16 + 12, size: 4, value: 1)
        Self.setMessageControl(device, 0x8000)
        #expect(msis.all == [.init(address: 0xFEE0_0000, data: 0x40)])
        #expect(msix.isPending(vector: 2))
        mmio.poke(bar + 2 * 16 + 12, size: 4, value: 0)
        #expect(msis.all.last == .init(address: 0xFEE0_0000, data: 0x42))
        #expect(mmio.probe(bar + 0x800, size: 8).value == 0)

        // Disabling MSI-X drops signals instead of queueing them.
        Self.setMessageControl(device, 0x0000)
        #expect(msix.signal(vector: 1) == .disabled)
        Self.setMessageControl(device, 0x8000)
        #expect(msis.all.count == 2)
        #expect(msix.signal(vector: 1) == .delivered)
        #expect(msis.all.last?.data == 0x41)
    }

    @Test func enablingDeliversWhatWasPendingUnderTheFunctionMask() throws {
        let (mmio, device, bar, msis, _) = try Self.setUp()
        mmio.poke(bar, size: 8, value: 0xFEE0_0000)
        mmio.poke(bar + 8, size: 8, value: 0x50)
        Self.setMessageControl(device, 0xC000)
        #expect(device.msix.signal(vector: 0) == .pending)
        // As a byte write to the high half of message control.
        device.configuration.write(offset: device.capabilityOffset + 3, size: 1, value: 0x80)
        #expect(msis.all == [.init(address: 0xFEE0_0000, data: 0x50)])
    }

    @Test func busMasterGatesMessages() throws {
        let (mmio, device, bar, msis, _) = try Self.setUp()
        mmio.poke(bar, size: 8, value: 0xFEE0_0000)
        mmio.poke(bar + 8, size: 8, value: 0x70)
        Self.setMessageControl(device, 0x8000)
        #expect(device.msix.signal(vector: 0) == .delivered)
        device.configuration.write(offset: 4, size: 2, value: 0x2)   // bus master off
        #expect(device.msix.signal(vector: 0) == .blocked)
        // A pending vector cannot go out either when unmasked without bus mastering.
        mmio.poke(bar + 12, size: 4, value: 1)
        #expect(device.msix.signal(vector: 0) == .pending)
        mmio.poke(bar + 12, size: 4, value: 0)
        #expect(device.msix.isPending(vector: 0))
        #expect(msis.all.count == 1)
        // Turning it back on sends what waited.
        device.configuration.write(offset: 4, size: 2, value: 0x6)
        #expect(msis.all.count == 2)
        #expect(!device.msix.isPending(vector: 0))
        #expect(device.msix.signal(vector: 0) == .delivered)
        #expect(msis.all.count == 3)
    }

    @Test func largeTablesAndPBAWords() throws {
        let msis = PCITestMSIRecorder()
        let space = PCIConfigurationSpace(vendorID: 1, deviceID: 1, classCode: 0)
        try space.setBAR(0, .memory32(size: 0x1000))
        try space.setBAR(2, .memory64(size: 0x1000))
        let msix = try MSIXCapability(vectorCount: 100, tableBAR: 0, tableOffset: 0, pbaBAR: 2, pbaOffset: 0x100, delivery: msis)
        try msix.install(in: space)
        #expect(space.read(offset: 0x42, size: 2) == 99)
        #expect(msix.regions.map(\.barIndex) == [0, 2])
        #expect(msix.regions.map(\.length) == [1600, 16])
        space.write(offset: 0x42, size: 2, value: 0x8000)
        space.write(offset: 4, size: 2, value: 0x6)
        #expect(msix.signal(vector: 99) == .pending)
        #expect(msix.signal(vector: 64) == .pending)
        #expect(mmioTestRead(msix.pendingBitArray.read, 8, size: 8) == 1 << 35 | 1)
        #expect(mmioTestRead(msix.pendingBitArray.read, 12, size: 4) == 1 << 3)
        #expect(mmioTestRead(msix.table.read, 99 * 16 + 12, size: 4) == 1)
    }

    @Test func concurrentSignalsAndMaskToggles() async throws {
        let (mmio, device, bar, msis, _) = try Self.setUp()
        mmio.poke(bar, size: 8, value: 0xFEE0_0000)
        mmio.poke(bar + 8, size: 8, value: 0x60)
        Self.setMessageControl(device, 0x8000)
        let outcomes = Recorder<MSIXSignalResult>()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<3 {
                group.addTask {
                    for _ in 0..<2000 {
                        outcomes.record(device.msix.signal(vector: 0))
                    }
                }
            }
            group.addTask {
                for i in 0..<2000 { mmio.poke(bar + 12, size: 4, value: UInt64(i & 1)) }
            }
        }
        mmio.poke(bar + 12, size: 4, value: 0)
        let delivered = outcomes.all.filter { $0 == .delivered }.count
        let pending = outcomes.all.filter { $0 == .pending }.count
        #expect(delivered + pending == 6000)
        #expect(!device.msix.isPending(vector: 0))
        // Every signal was delivered directly or folded into a pending delivery.
        #expect(msis.all.count >= delivered + (pending > 0 ? 1 : 0))
        #expect(msis.all.count <= 6000)
    }
}
