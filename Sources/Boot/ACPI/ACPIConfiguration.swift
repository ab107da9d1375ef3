import VMSpec
/// What the ACPI tables describe: the vCPUs and interrupt controllers (MADT), the PM1 register
/// blocks the VMM emulates for S5 poweroff (FADT), the reset register, and the legacy devices
/// the DSDT lists. Defaults match a KVM in-kernel irqchip (IOAPIC at 0xFEC00000, 24 pins) and
/// the PC's ISA devices. `ACPITables.build` validates everything and throws on nonsense.
public struct ACPIConfiguration: Sendable {
    /// vCPUs, 1...255: their local APIC ids are 0..<cpuCount (xAPIC id 0xFF is broadcast).
    public var cpuCount: Int
    /// Guest-physical base of the I/O APIC (KVM's in-kernel IOAPIC: 0xFEC00000).
    public var ioapicAddress: UInt32
    /// Defaults to `cpuCount`, the first id after the local APICs.
    public var ioapicID: UInt8
    /// Guest-physical base of every local APIC (the architectural 0xFEE00000).
    public var localAPICAddress: UInt32
    /// 4 I/O ports: PM1_STS (16 bits) then PM1_EN (16 bits).
    public var pm1aEventPort: UInt16
    /// 2 I/O ports: PM1_CNT (16 bits): SCI_EN bit 0, SLP_TYP bits 10-12, SLP_EN bit 13.
    public var pm1aControlPort: UInt16
    /// The SCI, an ISA IRQ (1...15, not 2) wired identically to that IOAPIC pin, level/active-high.
    public var sciInterrupt: UInt16
    /// SLP_TYP value (0...7) the guest writes to PM1_CNT to enter S5 (soft off).
    public var s5SleepType: UInt8
    /// FADT reset register: the guest writes `resetValue` to this I/O port to reboot.
    public var resetPort: UInt16
    /// 0xFE on port 0x64 is the i8042 "pulse reset line" command.
    public var resetValue: UInt8
    /// An i8042 keyboard controller at 0x60/0x64, IRQ 1 (FADT 8042 flag and a PNP0303 device).
    public var hasI8042: Bool
    /// A CMOS RTC at 0x70/0x71, IRQ 8 (a PNP0B00 device; otherwise the FADT says "no CMOS RTC").
    public var hasRTC: Bool
    /// A 16550 UART at 0x3F8, IRQ 4 (a PNP0501 device).
    public var hasCOM1: Bool
    /// Whether the FADT advertises the fixed-feature power button (PM1 PWRBTN_STS/EN). Off by
    /// default so the guest enables no event the VMM does not raise; turn it on when the VMM can
    /// set PWRBTN_STS and raise the SCI to ask the guest for a clean shutdown.
    public var powerButton: Bool
    /// Up to 6 printable ASCII characters, space-padded in every table header.
    public var oemID: String
    /// PCI Express ECAM window for bus 0..<busCount (1...256, base 1 MiB aligned): emits an MCFG.
    public var pcieECAM: (base: UInt64, busCount: Int)?
    /// A PCI host bridge (PNP0A08) for bus 0 in the DSDT, decoding config ports 0xCF8-0xCFF,
    /// the other I/O ports, and this 32-bit MMIO window for BARs; nil: no PCI in the namespace
    /// (Linux with ACPI then never scans bus 0).
    public var pciHostBridgeWindow: (base: UInt32, size: UInt32)? = nil

    /// Every parameter but `cpuCount` has the PC/KVM default; `ioapicID` defaults to `cpuCount`.
    public init(cpuCount: Int,
                ioapicAddress: UInt32 = 0xFEC0_0000,
                ioapicID: UInt8? = nil,
                localAPICAddress: UInt32 = 0xFEE0_0000,
                pm1aEventPort: UInt16 = 0x600,
                pm1aControlPort: UInt16 = 0x604,
                sciInterrupt: UInt16 = 9,
                s5SleepType: UInt8 = 5,
                resetPort: UInt16 = 0x64,
                resetValue: UInt8 = 0xFE,
                hasI8042: Bool = true,
                hasRTC: Bool = true,
                hasCOM1: Bool = true,
                powerButton: Bool = false,
                oemID: String = "SWIFTL",
                pcieECAM: (base: UInt64, busCount: Int)? = nil) {
        self.cpuCount = cpuCount
        self.ioapicAddress = ioapicAddress
        // Truncating: an out-of-range cpuCount is reported by build(), not trapped here.
        self.ioapicID = ioapicID ?? UInt8(truncatingIfNeeded: cpuCount)
        self.localAPICAddress = localAPICAddress
        self.pm1aEventPort = pm1aEventPort
        self.pm1aControlPort = pm1aControlPort
        self.sciInterrupt = sciInterrupt
        self.s5SleepType = s5SleepType
        self.resetPort = resetPort
        self.resetValue = resetValue
        self.hasI8042 = hasI8042
        self.hasRTC = hasRTC
        self.hasCOM1 = hasCOM1
        self.powerButton = powerButton
        self.oemID = oemID
        self.pcieECAM = pcieECAM
    }

    /// Throws the first thing the tables could not describe faithfully.
    func validate() throws(BootError) {
        guard (1...255).contains(cpuCount) else {
            throw BootError("ACPI: \(cpuCount) vCPUs, must be 1...255 (xAPIC ids; 0xFF is broadcast)")
        }
        guard s5SleepType <= 7 else { throw BootError("ACPI: S5 sleep type \(s5SleepType) does not fit SLP_TYP (3 bits)") }
        guard sciInterrupt < 16, sciInterrupt != 0, sciInterrupt != 2 else {
            throw BootError("ACPI: SCI interrupt \(sciInterrupt) must be an ISA IRQ 1...15 other than 2")
        }
        for (used, irq, what) in [(hasCOM1, 4, "COM1"), (hasI8042, 1, "the i8042"), (hasRTC, 8, "the RTC")]
        where used && Int(sciInterrupt) == irq {
            throw BootError("ACPI: SCI interrupt \(sciInterrupt) is also \(what)'s IRQ")
        }
        guard pm1aEventPort != 0, pm1aControlPort != 0, pm1aEventPort <= 0xFFFC, pm1aControlPort <= 0xFFFE else {
            throw BootError("ACPI: PM1 ports must be non-zero and fit in the I/O space")
        }
        let event = Int(pm1aEventPort)..<Int(pm1aEventPort) + 4, control = Int(pm1aControlPort)..<Int(pm1aControlPort) + 2
        guard !event.overlaps(control) else { throw BootError("ACPI: PM1 event and control blocks overlap") }
        guard resetPort != 0 else { throw BootError("ACPI: reset port must be non-zero") }
        let oem = Array(oemID.utf8)
        guard oem.count <= 6, oem.allSatisfy({ (0x20...0x7E).contains($0) }) else {
            throw BootError("ACPI: OEM id '\(oemID)' must be at most 6 printable ASCII characters")
        }
        if let ecam = pcieECAM {
            guard (1...256).contains(ecam.busCount) else { throw BootError("ACPI: ECAM bus count \(ecam.busCount), must be 1...256") }
            guard ecam.base & 0xF_FFFF == 0 else { throw BootError("ACPI: ECAM base \(ecam.base.hexString) is not 1 MiB aligned") }
            guard ecam.base.addingReportingOverflow(UInt64(ecam.busCount) << 20).overflow == false else {
                throw BootError("ACPI: ECAM window at \(ecam.base.hexString) wraps")
            }
        }
    }
}
