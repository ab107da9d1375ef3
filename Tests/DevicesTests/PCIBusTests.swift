import Testing
@testable import Devices

/// A PCI function with the BARs it is given, each served by one probe over the whole BAR.
final class PCITestDevice: PCIDevice {
    let configuration: PCIConfigurationSpace
    let probes: [Int: MMIOProbe]

    init(deviceID: UInt16 = 0x1042, bars: [(Int, PCIBAR)] = []) throws {
        configuration = PCIConfigurationSpace(vendorID: 0x1AF4, deviceID: deviceID, classCode: 0xFF_0000, interruptPin: 1)
        var probes: [Int: MMIOProbe] = [:]
        for (index, bar) in bars {
            try configuration.setBAR(index, bar)
            if bar.kind != .io { probes[index] = MMIOProbe(tag: UInt8(0xB0 + index)) }
        }
        self.probes = probes
    }

    func barRegions() -> [PCIBARRegion] {
        configuration.bars.compactMap { index, bar in
            probes[index].map { PCIBARRegion(barIndex: index, length: bar.size, handler: $0) }
        }
    }
}

/// CONFIG_ADDRESS for bus:device.function, register.
func pciConfigAddress(bus: UInt32 = 0, device: UInt32, function: UInt32 = 0, register: UInt32, enable: Bool = true) -> UInt32 {
    (enable ? 0x8000_0000 : 0) | bus << 16 | device << 11 | function << 8 | register & 0xFC
}

@Suite struct PCIBusTests {
    @Test func hostBridgeIdentity() throws {
        let bus = try PCIBus()
        #expect(bus.configuration.e820Reserved == [.init(base: 0xE000_0000, size: 0x10_0000)])
        #expect(bus.readConfiguration(device: 0, offset: 0, size: 4) == 0x0008_1B36)
        #expect(bus.readConfiguration(device: 0, offset: 8, size: 4) >> 8 == 0x06_0000)
        #expect(bus.readConfiguration(device: 0, offset: 0x0E, size: 1) == 0)
        #expect(bus.device(atSlot: 0) === bus.hostBridge)
        let intel = try PCIBus(hostBridge: PCIHostBridge(vendorID: 0x8086, deviceID: 0x0D57))
        #expect(intel.readConfiguration(device: 0, offset: 0, size: 4) == 0x0D57_8086)
    }

    @Test func configMechanismOneAllSizesAndOffsets() throws {
        let bus = try PCIBus()
        let ports = bus.configurationPorts
        // The dword CONFIG_ADDRESS reads back as written, bits 1:0 as zero (Linux's type-1 probe).
        ports.write(offset: 0, size: 4, value: 0x8000_0000)
        #expect(ports.read(offset: 0, size: 4) == 0x8000_0000)
        // A byte write to 0xCFB is not an address write.
        ports.write(offset: 3, size: 1, value: 0x01)
        #expect(ports.read(offset: 0, size: 4) == 0x8000_0000)
        ports.write(offset: 0, size: 4, value: pciConfigAddress(device: 0, register: 0) | 3)
        #expect(ports.read(offset: 0, size: 4) == 0x8000_0000)

        // Dword, words at 0xCFC/0xCFE, bytes at 0xCFC...0xCFF: vendor 1b36, device 0008.
        #expect(ports.read(offset: 4, size: 4) == 0x0008_1B36)
        #expect(ports.read(offset: 4, size: 2) == 0x1B36)
        #expect(ports.read(offset: 6, size: 2) == 0x0008)
        #expect([4, 5, 6, 7].map { ports.read(offset: UInt16($0), size: 1) } == [0x36, 0x1B, 0x08, 0x00])
        // An odd word at 0xCFD is split into the two bytes it covers.
        #expect(ports.read(offset: 5, size: 2) == 0x081B)
        // Past 0xCFF: nothing.
        #expect(ports.read(offset: 6, size: 4) == 0xFFFF_FFFF)

        // Writes of every size land at register + (port - 0xCFC).
        ports.write(offset: 0, size: 4, value: pciConfigAddress(device: 0, register: 0x3C))
        ports.write(offset: 4, size: 1, value: 0x0A)                // interrupt line
        #expect(bus.readConfiguration(device: 0, offset: 0x3C, size: 1) == 0x0A)
        ports.write(offset: 0, size: 4, value: pciConfigAddress(device: 0, register: 0x04))
        ports.write(offset: 4, size: 2, value: 0x0006)              // command
        #expect(bus.readConfiguration(device: 0, offset: 4, size: 2) == 0x0006)
        ports.write(offset: 0, size: 4, value: pciConfigAddress(device: 0, register: 0x0C))
        ports.write(offset: 4, size: 1, value: 0x10)                // cache line size at 0x0C
        ports.write(offset: 5, size: 1, value: 0xAA)                // latency timer: read-only
        #expect(ports.read(offset: 4, size: 4) == 0x0000_0010)
        ports.write(offset: 0, size: 4, value: pciConfigAddress(device: 0, register: 0x3C))
        ports.write(offset: 4, size: 4, value: 0xFFFF_FF05)
        #expect(ports.read(offset: 4, size: 4) == 0x0000_0005)      // pin, Min_Gnt, Max_Lat read-only
    }

    @Test func disabledAddressReadsOnesAndDropsWrites() throws {
        let bus = try PCIBus()
        let ports = bus.configurationPorts
        ports.write(offset: 0, size: 4, value: pciConfigAddress(device: 0, register: 0x3C, enable: false))
        #expect(ports.read(offset: 0, size: 4) == 0x0000_003C)
        #expect(ports.read(offset: 4, size: 4) == 0xFFFF_FFFF)
        #expect(ports.read(offset: 4, size: 1) == 0xFF)
        ports.write(offset: 4, size: 1, value: 7)
        #expect(bus.readConfiguration(device: 0, offset: 0x3C, size: 1) == 0)
    }

    @Test func absentFunctionsReadAllOnes() throws {
        let bus = try PCIBus()
        try bus.attach(PCITestDevice())
        let ports = bus.configurationPorts
        for (b, d, f) in [(UInt32(0), UInt32(5), UInt32(0)), (0, 1, 1), (0, 0, 7), (1, 0, 0), (255, 31, 7)] {
            ports.write(offset: 0, size: 4, value: pciConfigAddress(bus: b, device: d, function: f, register: 0))
            #expect(ports.read(offset: 4, size: 4) == 0xFFFF_FFFF)
            #expect(ports.read(offset: 6, size: 2) == 0xFFFF)
            #expect(ports.read(offset: 7, size: 1) == 0xFF)
            ports.write(offset: 4, size: 4, value: 0)   // dropped
        }
        ports.write(offset: 0, size: 4, value: pciConfigAddress(device: 1, register: 0))
        #expect(ports.read(offset: 4, size: 4) == 0x1042_1AF4)
    }

    @Test func amdExtendedRegisterBits() throws {
        final class Express: PCIDevice {
            let configuration = PCIConfigurationSpace(vendorID: 1, deviceID: 2, classCode: 0, extended: true)
            func barRegions() -> [PCIBARRegion] { [] }
        }
        let bus = try PCIBus()
        let device = Express()
        device.configuration.setValue(0x1234_5678, offset: 0x104, size: 4)
        try bus.attach(device, slot: 3)
        // Bits 27:24 carry register bits 11:8: register 0x104.
        bus.configurationPorts.write(offset: 0, size: 4, value: pciConfigAddress(device: 3, register: 4) | 1 << 24)
        #expect(bus.configurationPorts.read(offset: 4, size: 4) == 0x1234_5678)
        #expect(bus.configurationPorts.read(offset: 6, size: 2) == 0x1234)
        // Without them, register 4 is the command register.
        bus.configurationPorts.write(offset: 0, size: 4, value: pciConfigAddress(device: 3, register: 4))
        #expect(bus.configurationPorts.read(offset: 4, size: 4) == 0)
    }

    @Test func ecamDecodesBusDeviceFunctionRegister() throws {
        let mmio = MMIOBus()
        let bus = try PCIBus(mmioBus: mmio)
        try bus.registerECAM(on: mmio)
        let device = try PCITestDevice(deviceID: 0x1041)
        try bus.attach(device, slot: 7)
        let base = bus.configuration.ecamBase
        func ecam(_ d: UInt64, _ reg: UInt64, f: UInt64 = 0, bus b: UInt64 = 0) -> UInt64 { base | b << 20 | d << 15 | f << 12 | reg }

        #expect(mmio.probe(ecam(0, 0), size: 4).value == 0x0008_1B36)
        #expect(mmio.probe(ecam(7, 0), size: 4).value == 0x1041_1AF4)
        #expect(mmio.probe(ecam(7, 2), size: 2).value == 0x1041)
        #expect(mmio.probe(ecam(7, 3), size: 1).value == 0x10)
        #expect(mmio.probe(ecam(7, 0x3D), size: 1).value == 1)
        // A word across a dword boundary is two byte cycles: the class byte (0x0B), then the
        // cache line size (0x0C) from the next dword.
        #expect(mmio.probe(ecam(7, 0x0B), size: 2).value == 0x00FF)
        // A qword read is two dword config reads.
        #expect(mmio.probe(ecam(7, 0), size: 8).value == 0x0000_0000_1041_1AF4)
        // Absent device, function, and extended register of a conventional function.
        #expect(mmio.probe(ecam(8, 0), size: 4).value == 0xFFFF_FFFF)
        #expect(mmio.probe(ecam(7, 0, f: 1), size: 4).value == 0xFFFF_FFFF)
        #expect(mmio.probe(ecam(7, 0x100), size: 4).value == 0xFFFF_FFFF)
        // Only bus 0 is in the window.
        #expect(!mmio.probe(ecam(0, 0, bus: 1), size: 4).claimed)

        mmio.poke(ecam(7, 0x3C), size: 1, value: 9)
        #expect(device.configuration.read(offset: 0x3C, size: 1) == 9)
        mmio.poke(ecam(7, 0x04), size: 2, value: 0x0004)
        #expect(device.configuration.isBusMasterEnabled)
        // Same space through both paths.
        bus.configurationPorts.write(offset: 0, size: 4, value: pciConfigAddress(device: 7, register: 0x3C))
        #expect(bus.configurationPorts.read(offset: 4, size: 1) == 9)
    }

    @Test func slotsAndWindowsAreChecked() throws {
        let bus = try PCIBus()
        #expect(throws: DeviceError.self) { try bus.attach(PCITestDevice(), slot: 0) }
        #expect(throws: DeviceError.self) { try bus.attach(PCITestDevice(), slot: 32) }
        for slot in 1..<32 { #expect(try bus.attach(PCITestDevice()) == slot) }
        #expect(throws: DeviceError.self) { try bus.attach(PCITestDevice()) }

        typealias W = PCIBusConfiguration.Window
        let bad: [PCIBusConfiguration] = [
            PCIBusConfiguration(mmio32: W(base: 0xC000_0000, size: 0)),
            PCIBusConfiguration(mmio32: W(base: 0xF000_0000, size: 0x2000_0000)),         // past 4 GiB
            PCIBusConfiguration(ecamBase: 0xE008_0000),                                   // not 1 MiB aligned
            PCIBusConfiguration(ecamBase: 0xD000_0000),                                   // inside mmio32
            PCIBusConfiguration(mmio64: W(base: UInt64.max - 0xFFF, size: 0x2000)),       // wraps
            PCIBusConfiguration(io: W(base: 0xC000, size: 0x1_0000)),                     // past 0xFFFF
        ]
        for c in bad { #expect(throws: DeviceError.self) { try PCIBus(configuration: c) } }
    }

    @Test func barAllocationIsNaturallyAlignedAndRegistered() throws {
        let mmio = MMIOBus()
        let moves = Recorder<PCIBARMoveEvent>()
        let config = PCIBusConfiguration(mmio32: .init(base: 0xC000_0000, size: 0x100_0000),
                                         mmio64: .init(base: 0x80_0000_0000, size: 0x10_0000_0000),
                                         io: .init(base: 0xC000, size: 0x1000))
        let bus = try PCIBus(configuration: config, mmioBus: mmio) { moves.record($0) }
        let a = try PCITestDevice(bars: [(0, .memory32(size: 0x1000)), (1, .memory32(size: 0x10_0000)), (2, .io(size: 0x20))])
        let b = try PCITestDevice(bars: [(0, .memory32(size: 0x100)), (2, .memory64(size: 0x4000, prefetchable: true)),
                                         (4, .memory32(size: 0x8000))])
        #expect(try bus.attach(a) == 1)
        #expect(try bus.attach(b) == 2)

        var seen: [(UInt64, UInt64)] = []
        for device in [a, b] {
            for (index, bar) in device.configuration.bars {
                let address = try #require(device.configuration.address(ofBAR: index))
                #expect(address % bar.size == 0, "BAR \(index) at 0x\(String(address, radix: 16)) not aligned to 0x\(String(bar.size, radix: 16))")
                switch bar.kind {
                case .memory32: #expect(address >= 0xC000_0000 && address + bar.size <= 0xC100_0000)
                case .memory64: #expect(address >= 0x80_0000_0000)
                case .io: #expect(address >= 0xC000 && address + bar.size <= 0xD000)
                }
                for (s, e) in seen { #expect(address + bar.size <= s || e <= address, "BARs overlap") }
                seen.append((address, address + bar.size))
                #expect(device.configuration.decodedAddress(ofBAR: index) == address)
                // Each memory BAR's probe answers at its address.
                if let probe = device.probes[index] {
                    #expect(mmio.device(at: address + bar.size - 1)?.device === probe)
                }
            }
            #expect(device.configuration.command & 0x3 == (device === a ? 0x3 : 0x2))
        }
        #expect(mmio.ranges.count == 5)
        #expect(moves.all.count == 6)
        #expect(moves.all.allSatisfy { $0.mapping.oldAddress == nil && $0.error == nil })
    }

    @Test func sixtyFourBitBARsFallBackBelow4GiBAndWindowsRunOut() throws {
        let bus = try PCIBus(configuration: PCIBusConfiguration(mmio32: .init(base: 0xC000_0000, size: 0x2_0000)))
        let d = try PCITestDevice(bars: [(0, .memory64(size: 0x4000))])
        try bus.attach(d)
        #expect(d.configuration.address(ofBAR: 0) == 0xC000_0000)
        let big = try PCITestDevice(bars: [(0, .memory32(size: 0x2_0000))])
        #expect(throws: DeviceError.self) { try bus.attach(big) }
        // A failed attach consumed nothing: the rest of the window is still there.
        let fits = try PCITestDevice(bars: [(0, .memory32(size: 0x8000)), (1, .memory32(size: 0x4000))])
        try bus.attach(fits)
        #expect(fits.configuration.address(ofBAR: 0) == 0xC000_8000)
        #expect(fits.configuration.address(ofBAR: 1) == 0xC001_0000)
    }

    @Test func guestBARMoveMovesTheMMIORegistration() throws {
        let mmio = MMIOBus()
        let moves = Recorder<PCIBARMoveEvent>()
        let bus = try PCIBus(mmioBus: mmio) { moves.record($0) }
        try bus.registerECAM(on: mmio)
        let device = try PCITestDevice(bars: [(0, .memory64(size: 0x4000))])
        let slot = try bus.attach(device)
        let probe = try #require(device.probes[0])
        let first = try #require(device.configuration.address(ofBAR: 0))
        #expect(mmio.device(at: first)?.device === probe)
        let ecam = bus.configuration.ecamBase | UInt64(slot) << 15

        // Linux: decode off, size both halves, restore, then reassign and decode on.
        mmio.poke(ecam | 0x04, size: 2, value: 0)
        #expect(mmio.device(at: first) == nil)
        mmio.poke(ecam | 0x10, size: 4, value: 0xFFFF_FFFF)
        mmio.poke(ecam | 0x14, size: 4, value: 0xFFFF_FFFF)
        #expect(mmio.probe(ecam | 0x10, size: 8).value == 0xFFFF_FFFF_FFFF_C004)
        mmio.poke(ecam | 0x10, size: 4, value: 0xD000_0000)
        mmio.poke(ecam | 0x14, size: 4, value: 0x1)
        #expect(mmio.ranges.count == 1)   // only ECAM while decode is off
        mmio.poke(ecam | 0x04, size: 2, value: 0x6)
        #expect(mmio.device(at: 0x1_D000_0000)?.device === probe)
        #expect(mmio.device(at: 0x1_D000_3FFF)?.offset == 0x3FFF)
        #expect(mmio.device(at: first) == nil)

        // A move with decode on goes straight to the new place.
        mmio.poke(ecam | 0x14, size: 4, value: 0x0)
        #expect(mmio.device(at: 0xD000_0000)?.device === probe)
        #expect(mmio.device(at: 0x1_D000_0000) == nil)

        let events = moves.all.map { ($0.slot, $0.mapping.oldAddress, $0.mapping.newAddress) }
        #expect(events.count == 4)
        #expect(events.allSatisfy { $0.0 == slot })
        #expect(events.map(\.1) == [nil, first, nil, 0x1_D000_0000])
        #expect(events.map(\.2) == [first, nil, 0x1_D000_0000, 0xD000_0000])
    }

    @Test func barMovedOntoAnotherRangeIsReported() throws {
        let mmio = MMIOBus()
        let moves = Recorder<PCIBARMoveEvent>()
        let bus = try PCIBus(mmioBus: mmio) { moves.record($0) }
        try bus.registerECAM(on: mmio)
        let device = try PCITestDevice(bars: [(0, .memory32(size: 0x1000))])
        try bus.attach(device)
        // The guest puts the BAR on top of ECAM: the registration fails and is reported, and
        // ECAM keeps working.
        device.configuration.write(offset: 0x10, size: 4, value: UInt32(bus.configuration.ecamBase))
        #expect(moves.all.last?.error?.code == .overlap)
        #expect(mmio.device(at: bus.configuration.ecamBase)?.device === bus.ecam)
        // Moving it away again registers it afresh.
        device.configuration.write(offset: 0x10, size: 4, value: 0xC800_0000)
        #expect(moves.all.last?.error == nil)
        #expect(mmio.device(at: 0xC800_0000)?.device === device.probes[0])
        #expect(mmio.ranges.count == 2)
    }

    /// The MMIO bus holds ECAM, which reaches every device and the observers that move its BAR
    /// regions; those must not hold the MMIO bus in turn, or a VM's buses and devices keep each
    /// other alive after it is gone (a leak fuzz/ pci-config found).
    @Test func busesAndDevicesAreFreedWithTheMachine() throws {
        weak var mmioLeft: MMIOBus?
        weak var deviceLeft: PCITestDevice?
        func build() throws {
            let mmio = MMIOBus()
            let bus = try PCIBus(mmioBus: mmio)
            try bus.registerECAM(on: mmio)
            let device = try PCITestDevice(bars: [(0, .memory32(size: 0x1000))])
            try bus.attach(device)
            #expect(mmio.device(at: try #require(device.configuration.decodedAddress(ofBAR: 0)))?.device === device.probes[0])
            mmioLeft = mmio
            deviceLeft = device
        }
        try build()
        #expect(mmioLeft == nil)
        #expect(deviceLeft == nil)
    }

    @Test func regionsMustLieInsideMemoryBARs() throws {
        final class Bad: PCIDevice {
            let configuration = PCIConfigurationSpace(vendorID: 1, deviceID: 1, classCode: 0)
            let region: PCIBARRegion
            init(_ make: (MMIOProbe) -> PCIBARRegion) throws {
                region = make(MMIOProbe(tag: 1))
                try configuration.setBAR(0, .memory32(size: 0x1000))
                try configuration.setBAR(1, .io(size: 0x10))
            }
            func barRegions() -> [PCIBARRegion] { [region] }
        }
        let bus = try PCIBus(mmioBus: MMIOBus())
        #expect(throws: DeviceError.self) { try bus.attach(Bad { PCIBARRegion(barIndex: 0, offset: 0x800, length: 0x801, handler: $0) }) }
        #expect(throws: DeviceError.self) { try bus.attach(Bad { PCIBARRegion(barIndex: 1, length: 0x10, handler: $0) }) }
        #expect(throws: DeviceError.self) { try bus.attach(Bad { PCIBARRegion(barIndex: 2, length: 0x10, handler: $0) }) }
        #expect(throws: DeviceError.self) { try bus.attach(Bad { PCIBARRegion(barIndex: 0, length: 0, handler: $0) }) }
        try bus.attach(Bad { PCIBARRegion(barIndex: 0, offset: 0x800, length: 0x800, handler: $0) })
    }
}
