import Boot
import GuestMemory
import Host
#if canImport(Glibc)
import Glibc
#endif

/// A block device backed by a host file: the manifest's MFT_DEV_BLOCK_BASIC.
final class HvtBlockDevice {
    let name: String
    let file: FileDescriptor
    let capacity: UInt64
    let sectorSize: UInt64

    init(_ config: HvtConfig.Block) throws(VMMError) {
        let sector = UInt64(config.sectorSize)
        guard sector >= 512, sector & (sector - 1) == 0 else {
            throw VMMError(.configuration, "block '\(config.name)': sector size \(sector) must be a power of two >= 512")
        }
        do {
            let fd = try FileDescriptor.open(config.path, flags: O_RDWR)
            let st = try fd.status()
            guard !st.isDirectory else { throw VMMError(.configuration, "block '\(config.name)': \(config.path) is a directory") }
            guard st.size >= sector, st.size % sector == 0 else {
                throw VMMError(.configuration, "block '\(config.name)': \(config.path) is \(st.size) bytes, not a non-zero multiple of the \(sector)-byte sector size")
            }
            guard fd.tryLockExclusive() else {
                throw VMMError(.configuration, "block '\(config.name)': \(config.path) is in use by another process")
            }
            name = config.name
            file = fd
            capacity = st.size
            sectorSize = sector
        } catch let error as HostError {
            throw VMMError(.configuration, "block '\(config.name)': \(error)")
        } catch let error as VMMError {
            throw error
        } catch {
            throw VMMError(.configuration, "block '\(config.name)': \(error)")
        }
    }

    /// Whether [offset, offset+length) is a whole number of sectors inside the device.
    func accepts(offset: UInt64, length: UInt64) -> Bool {
        guard length > 0, offset % sectorSize == 0, length % sectorSize == 0 else { return false }
        let (end, overflow) = offset.addingReportingOverflow(length)
        return !overflow && end <= capacity
    }
}

/// A network device backed by a tap interface: the manifest's MFT_DEV_NET_BASIC.
final class HvtNetDevice {
    static let mtu: UInt16 = 1500
    /// Largest frame the guest may send: MTU plus the Ethernet header.
    static let maxFrame = Int(mtu) + 14
    let name: String
    let tap: TapDevice
    let mac: [UInt8]

    init(_ config: HvtConfig.Net) throws(VMMError) {
        do { tap = try TapDevice(name: config.interface) } catch {
            throw VMMError(.configuration, "net '\(config.name)': could not attach interface \(config.interface): \(String(cString: strerror(error.errno)))")
        }
        name = config.name
        mac = config.mac ?? Self.randomMAC()
    }

    /// A random unicast, locally administered MAC (as solo5-hvt generates).
    static func randomMAC() -> [UInt8] {
        var mac = randomBytes(6)
        mac[0] = (mac[0] & 0xFE) | 0x02
        return mac
    }
}

/// Attached devices indexed by manifest position, which is the guest's device handle.
enum HvtDevice {
    case block(HvtBlockDevice)
    case net(HvtNetDevice)
}
