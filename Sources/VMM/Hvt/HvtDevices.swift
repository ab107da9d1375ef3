import VMSpec
import Boot
import GuestMemory
import Host
#if canImport(Glibc)
import Glibc
#endif

/// A block device backed by a host file: the manifest's MFT_DEV_BLOCK_BASIC.
final class HvtBlockDevice {
    let name: String
    /// The image: opened, locked and measured as virtio-blk's are (`Host.DiskImage`).
    let image: DiskImage
    var file: FileDescriptor { image.file }
    let capacity: UInt64
    let sectorSize: UInt64
    /// The file is open read-only: every write is refused.
    var readOnly: Bool { image.readOnly }

    init(_ config: HvtConfig.Block) throws(VMMError) {
        let sector = UInt64(config.sectorSize)
        guard sector >= 512, sector & (sector - 1) == 0 else {
            throw VMMError(.configuration, "block '\(config.name)': sector size \(sector) must be a power of two >= 512")
        }
        do { image = try DiskImage(path: config.path, readOnly: config.readOnly) } catch {
            throw VMMError(.configuration, "block '\(config.name)': \(error)")
        }
        let size = image.size
        // solo5-hvt's wording first (scripts may match it), then which file and its size.
        guard size >= sector else {
            throw VMMError(.configuration, "\(config.name): Backing storage must be at least 1 block (\(sector) bytes) in size (\(config.path) is \(size) bytes)")
        }
        guard size % sector == 0 else {
            throw VMMError(.configuration, "\(config.name): Backing storage size must be block aligned (\(sector) bytes) (\(config.path) is \(size) bytes, not a multiple of the \(sector)-byte sector size)")
        }
        name = config.name
        capacity = size
        sectorSize = sector
    }

    /// Whether [offset, offset+length) lies inside the device. Like solo5-hvt v0.12.1 the tender
    /// checks bounds only: sector alignment is the guest bindings' rule, not the ABI's.
    func accepts(offset: UInt64, length: UInt64) -> Bool {
        guard offset < capacity, length <= UInt64(Int.max) else { return false }
        let (end, overflow) = offset.addingReportingOverflow(length)
        return !overflow && end <= capacity
    }
}

/// A network device backed by a tap interface: the manifest's MFT_DEV_NET_BASIC.
final class HvtNetDevice {
    let name: String
    let tap: TapDevice
    let mac: [UInt8]
    /// The tap's MTU, which the guest is told (solo5-hvt reads it with SIOCGIFMTU).
    let mtu: UInt16
    /// Largest frame the guest may send: MTU plus the Ethernet header (and a VLAN tag).
    let maxFrame: UInt64

    init(_ config: HvtConfig.Net) throws(VMMError) {
        do {
            if let fd = HvtConfig.descriptor(of: config.interface) {
                tap = try TapDevice(adopting: fd)
            } else {
                tap = try TapDevice(name: config.interface)
            }
        } catch {
            let detail = error.operation.hasPrefix("fd ") ? "\(error)" : HostError.text(errno: error.errno)
            throw VMMError(.configuration, "Could not attach interface: \(config.interface.printable): \(detail) (net '\(config.name.printable)')")
        }
        var mtu = 1500
        do { mtu = try tap.mtu() } catch {
            // An adopted descriptor's tap may live in another network namespace, where this
            // process cannot look its name up: assume Ethernet's MTU there rather than refuse.
            guard HvtConfig.descriptor(of: config.interface) != nil, error.errno == ENODEV else {
                throw VMMError(.configuration, "Could not attach interface: \(config.interface.printable): \(error) (net '\(config.name.printable)')")
            }
        }
        name = config.name
        mac = config.mac ?? MACAddress.random().bytes
        self.mtu = UInt16(clamping: mtu)
        maxFrame = UInt64(self.mtu) + 18
    }
}

/// Attached devices indexed by manifest position, which is the guest's device handle.
enum HvtDevice {
    case block(HvtBlockDevice)
    case net(HvtNetDevice)
}
