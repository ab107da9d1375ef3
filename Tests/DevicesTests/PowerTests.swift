import Testing
@testable import Devices

@Suite struct DebugExitPortTests {
    @Test func writesReportTheStatusByte() throws {
        let statuses = Recorder<UInt8>()
        let port = DebugExitPort { statuses.record($0) }
        let bus = IOBus()
        try bus.register(port, base: DebugExitPort.defaultPort, length: DebugExitPort.portCount)
        bus.write(port: 0xF4, size: 1, value: 0)
        bus.write(port: 0xF4, size: 1, value: 42)
        bus.write(port: 0xF4, size: 4, value: 0x1FF)   // low byte only
        #expect(statuses.all == [0, 42, 0xFF])
        #expect(bus.read(port: 0xF4, size: 1) == 0)
        #expect(bus.read(port: 0xF5, size: 1) == 0xFF)  // one port only
    }
}

@Suite struct ACPIPowerManagementTests {
    @Test func eventBlockStatusIsWriteOneToClear() {
        let block = ACPIPM1EventBlock()
        #expect(block.read(offset: 0, size: 4) == 0)
        block.setStatus(0x8101)                      // WAK_STS | PWRBTN_STS | TMR_STS
        #expect(block.read(offset: 0, size: 2) == 0x8101)
        block.write(offset: 0, size: 2, value: 0x0100)
        #expect(block.read(offset: 0, size: 2) == 0x8001)
        block.write(offset: 1, size: 1, value: 0x80) // byte access to the high half
        #expect(block.read(offset: 0, size: 2) == 0x0001)
        block.write(offset: 0, size: 2, value: 0)    // writing 0 changes nothing
        #expect(block.read(offset: 0, size: 1) == 0x01)
    }

    @Test func eventBlockEnableIsPlainStorage() {
        let block = ACPIPM1EventBlock()
        block.write(offset: 2, size: 2, value: 0x0120)
        #expect(block.read(offset: 2, size: 2) == 0x0120)
        #expect(block.enabledEvents == 0x0120)
        block.write(offset: 3, size: 1, value: 0x00)
        #expect(block.read(offset: 2, size: 2) == 0x0020)
        // A dword access covers both registers.
        block.setStatus(0x0001)
        #expect(block.read(offset: 0, size: 4) == 0x0020_0001)
        block.write(offset: 0, size: 4, value: 0x0400_0001)
        #expect(block.read(offset: 0, size: 4) == 0x0400_0000)
        #expect(block.read(offset: 3, size: 4) == 0x04)  // lanes past the block read 0
    }

    @Test func controlBlockReportsACPIModeAndIgnoresWriteOnlyBits() {
        let powerOffs = Recorder<Int>()
        let block = ACPIPM1ControlBlock { powerOffs.record(1) }
        #expect(block.read(offset: 0, size: 2) == 0x0001)   // SCI_EN
        block.write(offset: 0, size: 2, value: 0)            // cannot leave ACPI mode
        #expect(block.read(offset: 0, size: 2) == 0x0001)
        block.write(offset: 0, size: 2, value: 5 << 10 | 1 << 2)  // SLP_TYP staged, GBL_RLS
        #expect(block.read(offset: 0, size: 2) == 0x1401)
        #expect(powerOffs.all.isEmpty)
    }

    /// (value written to PM1_CNT, powers off) with the default S5 type 5.
    @Test(arguments: [
        (UInt16(1 << 13 | 5 << 10 | 1), true),   // Linux's S5 entry
        (UInt16(1 << 13 | 5 << 10), true),       // SCI_EN clear in the write: still S5
        (UInt16(5 << 10 | 1), false),            // SLP_TYP without SLP_EN: only staged
        (UInt16(1 << 13 | 3 << 10 | 1), false),  // S3: ignored
        (UInt16(1 << 13 | 0 << 10 | 1), false),  // S0 type with SLP_EN
        (UInt16(1 << 13 | 7 << 10 | 1), false),
    ])
    func sleepEnablePowersOffOnlyForS5(value: UInt16, powersOff: Bool) {
        let powerOffs = Recorder<Int>()
        let block = ACPIPM1ControlBlock { powerOffs.record(1) }
        block.write(offset: 0, size: 2, value: UInt32(value))
        #expect(powerOffs.all.count == (powersOff ? 1 : 0))
        #expect(block.read(offset: 0, size: 2) & UInt32(1 << 13) == 0)  // SLP_EN reads 0
    }

    @Test func configuredS5TypeAndByteWrites() throws {
        let powerOffs = Recorder<Int>()
        let block = ACPIPM1ControlBlock(s5SleepType: 7) { powerOffs.record(1) }
        let bus = IOBus()
        try bus.register(block, base: 0x604, length: ACPIPM1ControlBlock.portCount)
        bus.write(port: 0x604, size: 2, value: 1 << 13 | 5 << 10)
        #expect(powerOffs.all.isEmpty)
        // SLP_TYP and SLP_EN share the high byte, so a byte write to it is enough.
        bus.write(port: 0x605, size: 1, value: UInt32((1 << 13 | 7 << 10) >> 8))
        #expect(powerOffs.all.count == 1)
    }
}
