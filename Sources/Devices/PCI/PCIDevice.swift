/// A PCI function the `PCIBus` can hold: its configuration space, and the MMIO handlers behind
/// its memory BARs.
///
/// The bus sends every config cycle through `readConfiguration`/`writeConfiguration`; their
/// default implementations forward to `configuration`, and a device overrides them only to
/// intercept registers whose reads or writes have side effects beyond what masks and
/// observers express (say a virtio-pci `VIRTIO_PCI_CAP_PCI_CFG` window). Config cycles arrive
/// on vCPU threads, possibly several at once.
public protocol PCIDevice: AnyObject, Sendable {
    /// The function's configuration space, with its BARs declared (`setBAR`) before the device
    /// is attached: the bus assigns addresses to the BARs it finds there.
    var configuration: PCIConfigurationSpace { get }

    /// The MMIO handlers behind the memory BARs. The bus asks once, when the device is
    /// attached, and registers each region on the MMIO bus whenever its BAR decodes (and moves
    /// it when the guest moves the BAR).
    func barRegions() -> [PCIBARRegion]

    /// A config read of `size` bytes (1, 2 or 4, naturally aligned) at `offset` (0...4095).
    func readConfiguration(offset: Int, size: Int) -> UInt32

    /// A config write of `size` bytes (1, 2 or 4, naturally aligned) at `offset` (0...4095).
    func writeConfiguration(offset: Int, size: Int, value: UInt32)
}

extension PCIDevice {
    public func readConfiguration(offset: Int, size: Int) -> UInt32 {
        configuration.read(offset: offset, size: size)
    }

    public func writeConfiguration(offset: Int, size: Int, value: UInt32) {
        configuration.write(offset: offset, size: size, value: value)
    }
}

/// The host bridge at 00:00.0, which Linux expects to find first on bus 0 (its type-1 probe
/// accepts the config mechanism once a host bridge or VGA class answers). Defaults to Red Hat's
/// 1b36:0008 "QEMU PCIe Host bridge", which Linux knows and drives with no quirks. It has no
/// BARs and no interrupt.
public final class PCIHostBridge: PCIDevice {
    /// Red Hat, Inc. (the vendor ID QEMU uses for its own devices).
    public static let redHatVendorID: UInt16 = 0x1B36
    /// "QEMU PCIe Host bridge".
    public static let genericPCIeHostDeviceID: UInt16 = 0x0008
    /// Class 06 (bridge), subclass 00 (host bridge), interface 00.
    public static let hostBridgeClass: UInt32 = 0x06_0000

    public let configuration: PCIConfigurationSpace

    public init(vendorID: UInt16 = PCIHostBridge.redHatVendorID,
                deviceID: UInt16 = PCIHostBridge.genericPCIeHostDeviceID) {
        configuration = PCIConfigurationSpace(vendorID: vendorID, deviceID: deviceID, classCode: Self.hostBridgeClass)
    }

    public func barRegions() -> [PCIBARRegion] { [] }
}
