import VMSpec
/// Builds the ACPI tables a Linux guest needs when it has no firmware: the RSDP, XSDT and RSDT,
/// FADT (+ FACS), MADT, DSDT and, with a PCIe ECAM window, MCFG, as one blob for guest memory.
///
/// Blob layout (offsets from `base`; every table 16-byte aligned, the FACS 64-byte aligned as
/// the spec requires, measured in guest-physical addresses):
/// ```
/// +0     RSDP (36 bytes)  -> XSDT, RSDT
/// FACS   64 bytes, all zero but the signature
/// DSDT   AML: \_S0, \_S5 and \_SB.COM1 / PS2K / RTC
/// FADT   -> FACS, DSDT; PM1a blocks, SCI, reset register
/// MADT   local APICs 0..<cpuCount, IOAPIC, IRQ0 and SCI overrides, LINT1 NMI
/// MCFG   only with `pcieECAM`
/// XSDT   -> FADT, MADT, [MCFG]
/// RSDT   the same, 32-bit
/// ```
/// The VMM copies the blob to `base`, points `boot_params.acpi_rsdp_addr` at `base` and keeps the
/// range reserved in e820. The tables are well under 1 KiB for a few vCPUs (8 bytes per vCPU).
public enum ACPITables {
    /// The blob (and the RSDP in it, which the BIOS-area scan looks for) must end below 1 MiB.
    public static let limit: UInt64 = 0x10_0000

    /// The whole blob for guest-physical `base` (16-byte aligned; the RSDP is at `base`).
    public static func build(_ config: ACPIConfiguration, at base: UInt64) throws(BootError) -> [UInt8] {
        try config.validate()
        guard base & 0xF == 0 else { throw BootError("ACPI: table base \(base.hexString) is not 16-byte aligned") }
        guard base < limit else { throw BootError("ACPI: table base \(base.hexString) is not below 1 MiB") }

        var blob = Blob(base: base)
        _ = blob.place([UInt8](repeating: 0, count: 36), alignment: 16) // the RSDP, written last
        let facs = blob.place(ACPISystemTables.facs(), alignment: 64)
        let dsdt = blob.place(try ACPISystemTables.dsdt(config))
        var entries = [blob.place(ACPISystemTables.fadt(config, facs: facs, dsdt: dsdt)),
                       blob.place(ACPISystemTables.madt(config))]
        if let ecam = config.pcieECAM {
            entries.append(blob.place(ACPISystemTables.mcfg(config, base: ecam.base, busCount: ecam.busCount)))
        }
        let xsdt = blob.place(ACPISystemTables.xsdt(config, entries: entries))
        let rsdt = blob.place(ACPISystemTables.rsdt(config, entries: entries))
        blob.bytes.replaceSubrange(0..<36, with: ACPISystemTables.rsdp(config, rsdt: rsdt, xsdt: xsdt))

        let end = base + UInt64(blob.bytes.count)
        guard end <= limit else {
            throw BootError("ACPI: tables at \(base.hexString) need \(blob.bytes.count) bytes and would end at \(end.hexString), past 1 MiB")
        }
        return blob.bytes
    }

    /// Appends tables at guest-physical alignments and returns each one's address. `base` is
    /// below 1 MiB and the blob is small, so the additions cannot overflow.
    struct Blob {
        let base: UInt64
        var bytes: [UInt8] = []

        mutating func place(_ table: [UInt8], alignment: UInt64 = 16) -> UInt64 {
            let address = (base + UInt64(bytes.count) + alignment - 1) & ~(alignment - 1)
            bytes += [UInt8](repeating: 0, count: Int(address - base) - bytes.count)
            bytes += table
            return address
        }
    }
}
