/// Builders for the individual tables, each returning its complete bytes (header included).
/// Layouts follow the ACPI 6.x specification chapter 5.2; field offsets are noted where the
/// packing is irregular so a reader can check them against the spec's tables.
enum ACPISystemTables {
    static let fadtSize = 276

    // MARK: FADT

    /// Fixed ACPI Description Table, revision 6. Not hardware-reduced: it describes the PM1a
    /// event and control blocks the VMM emulates, because that is how Linux enters S5 on a
    /// full-ACPI platform. No SMI command port, so the OS finds ACPI mode already enabled.
    static func fadt(_ config: ACPIConfiguration, facs: UInt64, dsdt: UInt64) -> [UInt8] {
        var b = ACPITableBytes()
        b.append(UInt32(facs))                    // 36 FIRMWARE_CTRL
        b.append(UInt32(dsdt))                    // 40 DSDT
        b.append(UInt8(0))                        // 44 reserved (ACPI 1.0 INT_MODEL)
        b.append(UInt8(0))                        // 45 Preferred_PM_Profile: unspecified
        b.append(config.sciInterrupt)             // 46 SCI_INT
        b.append(UInt32(0))                       // 48 SMI_CMD: none, ACPI mode is always on
        b.append(UInt8(0))                        // 52 ACPI_ENABLE
        b.append(UInt8(0))                        // 53 ACPI_DISABLE
        b.append(UInt8(0))                        // 54 S4BIOS_REQ
        b.append(UInt8(0))                        // 55 PSTATE_CNT
        b.append(UInt32(config.pm1aEventPort))    // 56 PM1a_EVT_BLK
        b.append(UInt32(0))                       // 60 PM1b_EVT_BLK
        b.append(UInt32(config.pm1aControlPort))  // 64 PM1a_CNT_BLK
        b.append(UInt32(0))                       // 68 PM1b_CNT_BLK
        b.append(UInt32(0))                       // 72 PM2_CNT_BLK
        b.append(UInt32(0))                       // 76 PM_TMR_BLK: none (kvm-clock/TSC instead)
        b.append(UInt32(0))                       // 80 GPE0_BLK
        b.append(UInt32(0))                       // 84 GPE1_BLK
        b.append(UInt8(4))                        // 88 PM1_EVT_LEN
        b.append(UInt8(2))                        // 89 PM1_CNT_LEN
        b.append(UInt8(0))                        // 90 PM2_CNT_LEN
        b.append(UInt8(0))                        // 91 PM_TMR_LEN
        b.append(UInt8(0))                        // 92 GPE0_BLK_LEN
        b.append(UInt8(0))                        // 93 GPE1_BLK_LEN
        b.append(UInt8(0))                        // 94 GPE1_BASE
        b.append(UInt8(0))                        // 95 CST_CNT
        b.append(UInt16(0x0FFF))                  // 96 P_LVL2_LAT: > 100, no C2
        b.append(UInt16(0xFFFF))                  // 98 P_LVL3_LAT: > 1000, no C3
        b.append(UInt16(0))                       // 100 FLUSH_SIZE
        b.append(UInt16(0))                       // 102 FLUSH_STRIDE
        b.append(UInt8(0))                        // 104 DUTY_OFFSET
        b.append(UInt8(0))                        // 105 DUTY_WIDTH
        b.append(UInt8(0))                        // 106 DAY_ALRM: no RTC alarm extensions
        b.append(UInt8(0))                        // 107 MON_ALRM
        b.append(UInt8(0))                        // 108 CENTURY: no century byte in CMOS
        b.append(iapcBootArch(config))            // 109 IAPC_BOOT_ARCH
        b.append(UInt8(0))                        // 111 reserved
        b.append(flags(config))                   // 112 Flags
        b.append(GenericAddress.io(config.resetPort, bytes: 1, access: GenericAddress.byteAccess)) // 116 RESET_REG
        b.append(config.resetValue)               // 128 RESET_VALUE
        b.append(UInt16(0))                       // 129 ARM_BOOT_ARCH
        b.append(UInt8(3))                        // 131 FADT minor version: ACPI 6.3
        // X_FIRMWARE_CTRL must be 0 when FIRMWARE_CTRL is used (the FACS is below 4 GiB).
        b.append(UInt64(0))                       // 132 X_FIRMWARE_CTRL
        b.append(dsdt)                            // 140 X_DSDT
        b.append(GenericAddress.io(config.pm1aEventPort, bytes: 4, access: GenericAddress.wordAccess))   // 148 X_PM1a_EVT_BLK
        b.append(GenericAddress.none)             // 160 X_PM1b_EVT_BLK
        b.append(GenericAddress.io(config.pm1aControlPort, bytes: 2, access: GenericAddress.wordAccess)) // 172 X_PM1a_CNT_BLK
        b.append(GenericAddress.none)             // 184 X_PM1b_CNT_BLK
        b.append(GenericAddress.none)             // 196 X_PM2_CNT_BLK
        b.append(GenericAddress.none)             // 208 X_PM_TMR_BLK
        b.append(GenericAddress.none)             // 220 X_GPE0_BLK
        b.append(GenericAddress.none)             // 232 X_GPE1_BLK
        b.append(GenericAddress.none)             // 244 SLEEP_CONTROL_REG (hardware-reduced only)
        b.append(GenericAddress.none)             // 256 SLEEP_STATUS_REG
        b.append(UInt64(0))                       // 268 Hypervisor Vendor Identity
        assert(ACPIHeader.size + b.count == fadtSize)
        return ACPIHeader.table(signature: "FACP", revision: 6, oemID: config.oemID, body: b.bytes)
    }

    /// IA-PC boot architecture flags. Linux reads these to decide which legacy devices to probe.
    static func iapcBootArch(_ config: ACPIConfiguration) -> UInt16 {
        var v: UInt16 = 0
        // LEGACY_DEVICES: there are ISA-style devices (UART, RTC, i8042) at fixed ports.
        if config.hasCOM1 || config.hasRTC || config.hasI8042 { v |= 1 << 0 }
        // 8042: without it Linux marks the i8042 "firmware absent" and never probes it.
        if config.hasI8042 { v |= 1 << 1 }
        // VGA Not Present: keeps the OS from poking VGA registers that nobody emulates.
        v |= 1 << 2
        // MSI Not Supported (bit 3) stays clear: Linux would call pci_no_msi() and a later
        // virtio-pci device could not use MSI-X.
        // CMOS RTC Not Present: only when there is none, else Linux skips the RTC platform device.
        if !config.hasRTC { v |= 1 << 5 }
        return v
    }

    /// FADT feature flags.
    static func flags(_ config: ACPIConfiguration) -> UInt32 {
        var v: UInt32 = 0
        v |= 1 << 0   // WBINVD works (KVM emulates it)
        v |= 1 << 2   // PROC_C1: HLT is supported on every CPU
        // PWR_BUTTON: 1 means "no fixed-feature power button", so Linux enables no PWRBTN event.
        if !config.powerButton { v |= 1 << 4 }
        v |= 1 << 5   // SLP_BUTTON: no fixed-feature sleep button
        v |= 1 << 6   // FIX_RTC: no RTC wake status in PM1 (we have no RTC_STS bit)
        v |= 1 << 10  // RESET_REG_SUP: RESET_REG/RESET_VALUE are valid; Linux reboots through them
        // HW_REDUCED_ACPI (bit 20) stays clear: S5 goes through PM1a_CNT.
        return v
    }

    // MARK: FACS

    /// Firmware ACPI Control Structure: required on non-hardware-reduced platforms. No header or
    /// checksum; all zero apart from signature, length and version (no waking vector, no S4BIOS).
    static func facs() -> [UInt8] {
        var b = ACPITableBytes()
        b.ascii("FACS", width: 4)
        b.append(UInt32(64))     // 4 Length
        b.append(UInt32(0))      // 8 Hardware Signature
        b.append(UInt32(0))      // 12 Firmware Waking Vector
        b.append(UInt32(0))      // 16 Global Lock
        b.append(UInt32(0))      // 20 Flags
        b.append(UInt64(0))      // 24 X_Firmware_Waking_Vector
        b.append(UInt8(2))       // 32 Version
        b.zeros(3)               // 33 reserved
        b.append(UInt32(0))      // 36 OSPM Flags
        b.zeros(24)              // 40 reserved
        return b.bytes
    }

    // MARK: MADT

    /// Multiple APIC Description Table: how Linux finds vCPUs and the IOAPIC when it ignores MP
    /// tables. Interrupt source overrides describe the PC wiring KVM's default routing implements.
    static func madt(_ config: ACPIConfiguration) -> [UInt8] {
        var b = ACPITableBytes()
        b.append(config.localAPICAddress)         // 36 Local Interrupt Controller Address
        b.append(UInt32(1))                       // 40 Flags: PCAT_COMPAT (8259s present, Linux masks them)
        for cpu in 0..<config.cpuCount {
            // Processor Local APIC (type 0, 8 bytes): UID, APIC id, flags = enabled.
            b.append([0, 8, UInt8(cpu), UInt8(cpu)])
            b.append(UInt32(1))
        }
        // I/O APIC (type 1, 12 bytes): id, reserved, address, GSI base 0 (pins are GSIs 0...23).
        b.append([1, 12, config.ioapicID, 0])
        b.append(config.ioapicAddress)
        b.append(UInt32(0))
        // Interrupt Source Override (type 2, 10 bytes): bus 0 (ISA), source IRQ, GSI, MPS flags.
        // IRQ0 (PIT) is wired to IOAPIC pin 2, as KVM's default GSI routing does.
        b.append([2, 10, 0, 0])
        b.append(UInt32(2))
        b.append(UInt16(0x0005))                  // edge-triggered, active-high
        // The SCI is level-triggered; active-high because KVM's IOAPIC pin sees the line level.
        b.append([2, 10, 0, UInt8(config.sciInterrupt)])
        b.append(UInt32(config.sciInterrupt))
        b.append(UInt16(0x000D))                  // level-triggered, active-high
        // Local APIC NMI (type 4, 6 bytes): all processors (UID 0xFF), LINT1, edge/active-high.
        b.append([4, 6, 0xFF])
        b.append(UInt16(0x0005))
        b.append(UInt8(1))
        return ACPIHeader.table(signature: "APIC", revision: 5, oemID: config.oemID, body: b.bytes)
    }

    // MARK: MCFG

    /// PCI Express memory-mapped configuration space (ECAM) for segment 0, buses 0..<busCount.
    static func mcfg(_ config: ACPIConfiguration, base: UInt64, busCount: Int) -> [UInt8] {
        var b = ACPITableBytes()
        b.zeros(8)                                // 36 reserved
        b.append(base)                            // 44 Base Address
        b.append(UInt16(0))                       // 52 PCI Segment Group
        b.append(UInt8(0))                        // 54 Start Bus
        b.append(UInt8(busCount - 1))             // 55 End Bus
        b.append(UInt32(0))                       // 56 reserved
        return ACPIHeader.table(signature: "MCFG", revision: 1, oemID: config.oemID, body: b.bytes)
    }

    // MARK: DSDT

    /// Differentiated System Description Table: AML for the S5 sleep package and the ISA devices
    /// Linux would otherwise not find (it only probes PNP devices it sees in the namespace).
    static func dsdt(_ config: ACPIConfiguration) throws(BootError) -> [UInt8] {
        // \_Sx: { SLP_TYPa, SLP_TYPb, reserved, reserved }; PM1b does not exist, same value.
        func sleepPackage(_ type: UInt8) throws(BootError) -> [UInt8] {
            try AML.package([AML.integer(UInt64(type)), AML.integer(UInt64(type)), AML.integer(0), AML.integer(0)])
        }
        // \_S0 (working, type 0) is what ACPICA restores on the way back from a sleep state; only
        // S5 is offered, so the guest has nothing to suspend to.
        var terms: [[UInt8]] = [try AML.name("\\_S0", try sleepPackage(0)),
                                try AML.name("\\_S5", try sleepPackage(config.s5SleepType))]
        var devices: [[UInt8]] = []
        if config.hasCOM1 {
            devices.append(try AML.device("COM1", [
                try AML.name("_HID", try AML.eisaID("PNP0501")),
                try AML.name("_UID", AML.integer(1)),
                try AML.name("_CRS", try AML.resourceTemplate([AML.io(0x3F8, length: 8), AML.irqNoFlags([4])])),
            ]))
        }
        if let window = config.pciHostBridgeWindow {
            // Bus 0 behind one host bridge: config ports, the rest of the I/O space, and the
            // BAR window. Devices use MSI-X, so there is no _PRT for INTx.
            devices.append(try AML.device("PCI0", [
                try AML.name("_HID", try AML.eisaID("PNP0A08")),
                try AML.name("_CID", try AML.eisaID("PNP0A03")),
                try AML.name("_SEG", AML.integer(0)),
                try AML.name("_BBN", AML.integer(0)),
                try AML.name("_UID", AML.integer(0)),
                try AML.name("_CRS", try AML.resourceTemplate([
                    AML.wordAddressSpace(type: 2, typeFlags: 0, minimum: 0, maximum: 0),
                    AML.io(0xCF8, length: 8),
                    AML.wordAddressSpace(type: 1, typeFlags: 3, minimum: 0x0000, maximum: 0x0CF7),
                    AML.wordAddressSpace(type: 1, typeFlags: 3, minimum: 0x0D00, maximum: 0xFFFF),
                    AML.dwordMemory(minimum: window.base, maximum: window.base &+ (window.size - 1)),
                ])),
            ]))
        }
        if config.hasI8042 {
            // Two 1-byte ranges: Linux's i8042 PNP probe takes data and command ports this way.
            devices.append(try AML.device("PS2K", [
                try AML.name("_HID", try AML.eisaID("PNP0303")),
                try AML.name("_CRS", try AML.resourceTemplate([AML.io(0x60, length: 1), AML.io(0x64, length: 1),
                                                               AML.irqNoFlags([1])])),
            ]))
        }
        if config.hasRTC {
            devices.append(try AML.device("RTC", [
                try AML.name("_HID", try AML.eisaID("PNP0B00")),
                try AML.name("_CRS", try AML.resourceTemplate([AML.io(0x70, length: 2), AML.irqNoFlags([8])])),
            ]))
        }
        if !devices.isEmpty { terms.append(try AML.scope("\\_SB", devices)) }
        // Revision 2: integers are 64 bits wide.
        return ACPIHeader.table(signature: "DSDT", revision: 2, oemID: config.oemID, body: Array(terms.joined()))
    }

    // MARK: Root tables

    /// XSDT: 64-bit pointers to every table except the DSDT and FACS (the FADT holds those).
    static func xsdt(_ config: ACPIConfiguration, entries: [UInt64]) -> [UInt8] {
        var b = ACPITableBytes()
        for e in entries { b.append(e) }
        return ACPIHeader.table(signature: "XSDT", revision: 1, oemID: config.oemID, body: b.bytes)
    }

    /// RSDT: the same pointers, 32 bits wide, for OSes that predate ACPI 2.0.
    static func rsdt(_ config: ACPIConfiguration, entries: [UInt64]) -> [UInt8] {
        var b = ACPITableBytes()
        for e in entries { b.append(UInt32(e)) }
        return ACPIHeader.table(signature: "RSDT", revision: 1, oemID: config.oemID, body: b.bytes)
    }

    /// RSDP, revision 2 (36 bytes): the first checksum covers bytes 0..<20 (the ACPI 1.0 part),
    /// the extended one all 36.
    static func rsdp(_ config: ACPIConfiguration, rsdt: UInt64, xsdt: UInt64) -> [UInt8] {
        var b = ACPITableBytes()
        b.ascii("RSD PTR ", width: 8)
        b.append(UInt8(0))                        // 8 checksum
        b.ascii(config.oemID, width: 6)           // 9 OEMID
        b.append(UInt8(2))                        // 15 revision
        b.append(UInt32(rsdt))                    // 16 RsdtAddress
        b.append(UInt32(36))                      // 20 Length
        b.append(xsdt)                            // 24 XsdtAddress
        b.append(UInt8(0))                        // 32 extended checksum
        b.zeros(3)                                // 33 reserved
        b.bytes[8] = ACPITableBytes.checksum(b.bytes[0..<20])
        b.bytes[32] = ACPITableBytes.checksum(b.bytes)
        return b.bytes
    }
}
