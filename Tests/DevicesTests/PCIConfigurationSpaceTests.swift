import Testing
@testable import Devices

@Suite struct PCIConfigurationSpaceTests {
    static func virtioLike() -> PCIConfigurationSpace {
        PCIConfigurationSpace(vendorID: 0x1AF4, deviceID: 0x1042, classCode: 0x01_8000, revision: 1,
                              subsystemVendorID: 0x1AF4, subsystemID: 0x0040, interruptPin: 1)
    }

    @Test func identityFieldsAreReadOnly() {
        let space = Self.virtioLike()
        #expect(space.read(offset: 0, size: 4) == 0x1042_1AF4)
        #expect(space.read(offset: 8, size: 4) == 0x0180_0001)
        #expect(space.read(offset: 0x2C, size: 4) == 0x0040_1AF4)
        #expect(space.read(offset: 0x3D, size: 1) == 1)
        // Whatever the guest writes over the read-only header, it reads the same.
        let before = (0..<64).map { space.read(offset: $0 * 4, size: 4) }
        for offset in [0x00, 0x08, 0x0E, 0x28, 0x2C, 0x30, 0x34, 0x38, 0x3D, 0x3E] {
            space.write(offset: offset & ~3, size: 4, value: 0xFFFF_FFFF)
            space.write(offset: offset, size: 1, value: 0xA5)
        }
        #expect(space.read(offset: 0, size: 4) == before[0])
        #expect(space.read(offset: 8, size: 4) == before[2])
        #expect(space.read(offset: 0x2C, size: 4) == before[11])
        #expect(space.read(offset: 0x30, size: 4) == 0)       // no expansion ROM: sizes to zero
        #expect(space.read(offset: 0x34, size: 1) == 0)       // no capabilities
        #expect(space.read(offset: 0x3D, size: 1) == 1)       // interrupt pin
        #expect(space.read(offset: 0x0E, size: 1) == 0)       // header type 0
    }

    @Test func writableHeaderFieldsTakeOnlyTheirBits() {
        let space = Self.virtioLike()
        space.write(offset: 4, size: 2, value: 0xFFFF)
        #expect(space.read(offset: 4, size: 2) == 0x0547)   // I/O, memory, master, parity, SERR, INTx disable
        space.write(offset: 0x3C, size: 1, value: 11)
        #expect(space.read(offset: 0x3C, size: 1) == 11)
        space.write(offset: 0x0C, size: 1, value: 0x10)
        #expect(space.read(offset: 0x0C, size: 2) == 0x0010) // latency timer stays 0
        // A dword write at 4 also hits status, whose error bits are write-1-to-clear zeros.
        space.write(offset: 4, size: 4, value: 0xFFFF_0002)
        #expect(space.read(offset: 4, size: 4) == 0x0000_0002)
        #expect(space.isBusMasterEnabled == false)
    }

    @Test func extendedSpaceAndOutOfRange() {
        let conventional = Self.virtioLike()
        #expect(conventional.read(offset: 0x100, size: 4) == 0xFFFF_FFFF)
        conventional.write(offset: 0x100, size: 4, value: 0)   // ignored, must not trap
        let express = PCIConfigurationSpace(vendorID: 1, deviceID: 2, classCode: 0, extended: true)
        #expect(express.size == 4096)
        #expect(express.read(offset: 0x100, size: 4) == 0)
        #expect(express.read(offset: 0xFFC, size: 4) == 0)
    }

    @Test func thirtyTwoBitBARSizing() throws {
        let space = Self.virtioLike()
        try space.setBAR(0, .memory32(size: 0x1000))
        try space.setBAR(1, .memory32(size: 0x10_0000, prefetchable: true))
        try space.setBAR(2, .io(size: 0x20))
        #expect(space.read(offset: 0x10, size: 4) == 0)
        #expect(space.read(offset: 0x14, size: 4) == 0x8)
        #expect(space.read(offset: 0x18, size: 4) == 0x1)
        for offset in [0x10, 0x14, 0x18, 0x1C, 0x20, 0x24] { space.write(offset: offset, size: 4, value: 0xFFFF_FFFF) }
        #expect(space.read(offset: 0x10, size: 4) == 0xFFFF_F000)
        #expect(space.read(offset: 0x14, size: 4) == 0xFFF0_0008)
        #expect(space.read(offset: 0x18, size: 4) == 0xFFFF_FFE1)
        #expect(space.read(offset: 0x1C, size: 4) == 0)    // undeclared BARs are read-only zero
        // An address takes its aligned bits only.
        space.write(offset: 0x10, size: 4, value: 0xC000_1234)
        #expect(space.read(offset: 0x10, size: 4) == 0xC000_1000)
        #expect(space.address(ofBAR: 0) == 0xC000_1000)
        // Byte writes reach the BAR too (a guest may do that).
        space.write(offset: 0x13, size: 1, value: 0xD0)
        #expect(space.address(ofBAR: 0) == 0xD000_1000)
    }

    @Test func sixtyFourBitBARSizing() throws {
        let space = Self.virtioLike()
        try space.setBAR(2, .memory64(size: 0x4000, prefetchable: true))
        try space.setBAR(4, .memory64(size: 0x2_0000_0000))
        #expect(space.read(offset: 0x18, size: 4) == 0xC)
        #expect(space.read(offset: 0x20, size: 4) == 0x4)
        // Linux sizes the low half, then the high half.
        space.write(offset: 0x18, size: 4, value: 0xFFFF_FFFF)
        space.write(offset: 0x1C, size: 4, value: 0xFFFF_FFFF)
        #expect(space.read(offset: 0x18, size: 4) == 0xFFFF_C00C)
        #expect(space.read(offset: 0x1C, size: 4) == 0xFFFF_FFFF)
        space.write(offset: 0x20, size: 4, value: 0xFFFF_FFFF)
        space.write(offset: 0x24, size: 4, value: 0xFFFF_FFFF)
        #expect(space.read(offset: 0x20, size: 4) == 0x0000_0004)   // 8 GiB: no low address bits
        #expect(space.read(offset: 0x24, size: 4) == 0xFFFF_FFFE)
        space.write(offset: 0x18, size: 4, value: 0x8000_0000)
        space.write(offset: 0x1C, size: 4, value: 0x10)
        #expect(space.address(ofBAR: 2) == 0x10_8000_0000)
        #expect(space.address(ofBAR: 3) == nil)   // the upper half is not a BAR of its own
        #expect(space.bars.map(\.index) == [2, 4])
    }

    @Test func badBARsAreRefused() throws {
        let space = Self.virtioLike()
        #expect(throws: DeviceError.self) { try space.setBAR(0, .memory32(size: 0x1800)) }  // not a power of two
        #expect(throws: DeviceError.self) { try space.setBAR(0, .memory32(size: 8)) }       // below 16
        #expect(throws: DeviceError.self) { try space.setBAR(0, .io(size: 0x200)) }         // above 256
        #expect(throws: DeviceError.self) { try space.setBAR(5, .memory64(size: 0x1000)) }  // needs BAR 6
        #expect(throws: DeviceError.self) { try space.setBAR(6, .memory32(size: 0x1000)) }
        try space.setBAR(0, .memory64(size: 0x1000))
        #expect(throws: DeviceError.self) { try space.setBAR(1, .memory32(size: 0x1000)) }  // upper half of 0
        #expect(throws: DeviceError.self) { try space.setBAR(0, .memory32(size: 0x1000)) }
    }

    @Test func capabilityListWalks() throws {
        let space = Self.virtioLike()
        #expect(space.read(offset: 6, size: 2) & 0x10 == 0)
        let a = try space.addVendorSpecificCapability(body: [1, 4, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0x10, 0])  // virtio_pci_cap-like
        let b = try space.addCapability(id: 0x01, bytes: [0x03, 0x00, 0x00, 0x00, 0x00, 0x00])
        let c = try space.addCapability(id: PCICapabilityID.msix, bytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                                        writeMask: [0, 0xC0, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect(a == 0x40)
        #expect(b == 0x50)   // 0x40 + 16 bytes, dword aligned
        #expect(c == 0x58)
        #expect(space.read(offset: 6, size: 2) & 0x10 != 0)

        // Walk as Linux's pci_find_capability does.
        var found: [(offset: Int, id: UInt32)] = []
        var pointer = Int(space.read(offset: 0x34, size: 1))
        var steps = 0
        while pointer != 0 && steps < 48 {
            found.append((pointer, space.read(offset: pointer, size: 1)))
            pointer = Int(space.read(offset: pointer + 1, size: 1))
            steps += 1
        }
        #expect(found.map(\.offset) == [0x40, 0x50, 0x58])
        #expect(found.map(\.id) == [0x09, 0x01, 0x11])
        #expect(space.read(offset: 0x42, size: 1) == 16)   // vendor cap length includes the header
        #expect(space.read(offset: 0x43, size: 1) == 1)

        // Capability bytes are read-only except where the mask says.
        space.write(offset: 0x40, size: 4, value: 0xFFFF_FFFF)
        #expect(space.read(offset: 0x40, size: 4) == 0x0110_5009)
        space.write(offset: 0x5A, size: 2, value: 0xFFFF)
        #expect(space.read(offset: 0x5A, size: 2) == 0xC000)
    }

    @Test func capabilitiesMustFit() throws {
        let space = Self.virtioLike()
        try space.addCapability(id: 0x09, bytes: [UInt8](repeating: 0, count: 0xBE - 2))  // 0x40..0xFE
        #expect(throws: DeviceError.self) { try space.addCapability(id: 0x01, bytes: [0, 0, 0, 0, 0, 0]) }
        #expect(throws: DeviceError.self) { try space.addCapability(id: 0x01, bytes: [0], writeMask: [0, 0]) }
        #expect(throws: DeviceError.self) { try space.addVendorSpecificCapability(body: [UInt8](repeating: 0, count: 253)) }
    }

    @Test func writeObserversSeeTheMaskedValue() throws {
        let space = Self.virtioLike()
        let offset = try space.addCapability(id: 0x11, bytes: [0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0],
                                             writeMask: [0, 0xC0, 0, 0, 0, 0, 0, 0, 0, 0])
        let seen = Recorder<UInt32>()
        space.observeWrites(offset: offset + 2, size: 2) { seen.record($0) }
        space.write(offset: offset, size: 4, value: 0xFFFF_FFFF)   // dword write covering it
        space.write(offset: offset + 3, size: 1, value: 0x40)      // byte write to its high half
        space.write(offset: offset + 4, size: 4, value: 0)         // elsewhere: not reported
        #expect(seen.all == [0xC003, 0x4003])
    }

    @Test func mappingFollowsMemoryEnableAndBARWrites() throws {
        let space = Self.virtioLike()
        try space.setBAR(0, .memory32(size: 0x1000))
        try space.setBAR(2, .memory64(size: 0x4000))
        try space.setBAR(4, .io(size: 0x40))
        let events = Recorder<PCIBARMapping>()
        space.observeBARMappings { events.record($0) }

        space.write(offset: 0x10, size: 4, value: 0xC000_0000)
        space.write(offset: 0x18, size: 4, value: 0xC000_4000)
        space.write(offset: 0x20, size: 4, value: 0xC040)
        #expect(events.all.isEmpty)   // decoding is off
        space.write(offset: 4, size: 2, value: 0x2)   // memory on
        #expect(events.all == [
            PCIBARMapping(index: 0, bar: .memory32(size: 0x1000), oldAddress: nil, newAddress: 0xC000_0000),
            PCIBARMapping(index: 2, bar: .memory64(size: 0x4000), oldAddress: nil, newAddress: 0xC000_4000),
        ])
        #expect(space.decodedAddress(ofBAR: 0) == 0xC000_0000)
        #expect(space.decodedAddress(ofBAR: 4) == nil)
        space.write(offset: 4, size: 2, value: 0x3)   // I/O on as well
        #expect(events.all.last == PCIBARMapping(index: 4, bar: .io(size: 0x40), oldAddress: nil, newAddress: 0xC040))

        // Move BAR 2 above 4 GiB: the high write alone moves it.
        space.write(offset: 0x1C, size: 4, value: 0x1)
        #expect(events.all.last == PCIBARMapping(index: 2, bar: .memory64(size: 0x4000), oldAddress: 0xC000_4000, newAddress: 0x1_C000_4000))
        // Writing the same address again is no event.
        let count = events.all.count
        space.write(offset: 0x1C, size: 4, value: 0x1)
        #expect(events.all.count == count)

        // Sizing with decode on: the all-ones address is not a mapping, the restore is.
        space.write(offset: 0x10, size: 4, value: 0xFFFF_FFFF)
        #expect(events.all.last == PCIBARMapping(index: 0, bar: .memory32(size: 0x1000), oldAddress: 0xC000_0000, newAddress: nil))
        space.write(offset: 0x10, size: 4, value: 0xC000_0000)
        #expect(events.all.last?.newAddress == 0xC000_0000)

        // Memory decode off: every memory BAR stops decoding, I/O stays.
        space.write(offset: 4, size: 2, value: 0x1)
        let last = Array(events.all.suffix(2))
        #expect(last.map(\.index) == [0, 2])
        #expect(last.allSatisfy { $0.newAddress == nil })
        #expect(space.decodedAddress(ofBAR: 4) == 0xC040)
    }

    @Test func interruptStatusBit() {
        let space = Self.virtioLike()
        space.setInterruptStatus(true)
        #expect(space.read(offset: 6, size: 2) & 0x8 != 0)
        space.write(offset: 6, size: 2, value: 0xFFFF)   // read-only to the guest
        #expect(space.read(offset: 6, size: 2) & 0x8 != 0)
        space.setInterruptStatus(false)
        #expect(space.read(offset: 6, size: 2) & 0x8 == 0)
    }
}
