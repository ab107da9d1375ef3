import Synchronization

/// The 32 device slots of bus 0, shared by the bus and both config access paths (so neither
/// path owns the bus and nothing forms a reference cycle).
final class PCIRoot: Sendable {
    static let slotCount = 32
    let slots = Mutex<[(any PCIDevice)?]>(Array(repeating: nil, count: PCIRoot.slotCount))

    /// The function at bus:device.function, or nil when absent (only bus 0, function 0 exist).
    @inline(__always)
    func function(bus: Int, device: Int, function: Int) -> (any PCIDevice)? {
        guard bus == 0, function == 0, (0..<Self.slotCount).contains(device) else { return nil }
        return slots.withLock { $0[device] }
    }

    /// A config read of 1, 2 or 4 naturally aligned bytes. An absent function reads all ones:
    /// a master abort, which is how the guest learns the slot is empty (vendor ID 0xFFFF).
    func read(bus: Int, device: Int, function: Int, offset: Int, size: Int) -> UInt32 {
        guard let target = self.function(bus: bus, device: device, function: function),
              offset >= 0, offset + size <= PCIConfigurationSpace.extendedSize
        else { return PCIRoot.ones(size) }
        return target.readConfiguration(offset: offset, size: size) & PCIRoot.ones(size)
    }

    /// A config write; writes to an absent function are dropped.
    func write(bus: Int, device: Int, function: Int, offset: Int, size: Int, value: UInt32) {
        guard let target = self.function(bus: bus, device: device, function: function),
              offset >= 0, offset + size <= PCIConfigurationSpace.extendedSize
        else { return }
        target.writeConfiguration(offset: offset, size: size, value: value & PCIRoot.ones(size))
    }

    @inline(__always)
    static func ones(_ size: Int) -> UInt32 {
        size >= 4 ? 0xFFFF_FFFF : (1 << (8 * UInt32(size))) - 1
    }

    /// The size of the naturally aligned piece (4, 2 or 1 bytes) that starts at `offset` and
    /// takes at most `remaining` bytes: config cycles carry byte enables within one dword, so a
    /// wider or misaligned CPU access becomes several.
    @inline(__always)
    static func pieceSize(at offset: UInt64, remaining: Int) -> Int {
        if offset & 3 == 0 && remaining >= 4 { return 4 }
        if offset & 1 == 0 && remaining >= 2 { return 2 }
        return 1
    }
}

/// PCI configuration mechanism #1 (PCI Local Bus 3.0 §3.2.2.3.2): CONFIG_ADDRESS at 0xCF8 and
/// CONFIG_DATA at 0xCFC-0xCFF, one `PortIODevice` over the eight ports 0xCF8-0xCFF.
///
/// - Only a dword access to 0xCF8 touches CONFIG_ADDRESS; other sizes there are ordinary I/O
///   (Linux's type-1 probe writes a byte to 0xCFB first, and must not disturb the address).
/// - CONFIG_ADDRESS: bit 31 enable, bits 23:16 bus, 15:11 device, 10:8 function, 7:2 dword
///   register; bits 27:24 carry register bits 11:8 (AMD's extended config access, which Linux
///   may use on AMD CPUs), bits 1:0 read as zero.
/// - A data access of `size` bytes at 0xCFC + k reaches config bytes `register + k ..< + size`,
///   which is how Linux does byte and word accesses (`0xCFC + (reg & 3)`).
/// - With bit 31 clear, data reads return all ones and writes are dropped.
///
/// The address register is per machine, not per vCPU, as on a PC: guests serialize config
/// accesses themselves (Linux holds `pci_config_lock`). A lock keeps the register consistent.
public final class PCIConfigurationPorts: PortIODevice {
    /// CONFIG_ADDRESS's port and the span of ports this device decodes.
    public static let basePort: UInt16 = 0xCF8
    public static let portCount: UInt16 = 8
    static let enableBit: UInt32 = 1 << 31

    private let root: PCIRoot
    private let address = Mutex<UInt32>(0)

    init(root: PCIRoot) {
        self.root = root
    }

    public func read(offset: UInt16, size: Int) -> UInt32 {
        if offset < 4 {
            return offset == 0 && size == 4 ? address.withLock { $0 } : PCIRoot.ones(size)
        }
        let k = Int(offset) - 4
        guard k + size <= 4, let target = decode(address.withLock { $0 }) else { return PCIRoot.ones(size) }
        // Natural alignment within the dword; an odd word at 0xCFD becomes two bytes.
        var value: UInt32 = 0
        var position = 0
        while position < size {
            let piece = PCIRoot.pieceSize(at: UInt64(k + position), remaining: size - position)
            let part = root.read(bus: target.bus, device: target.device, function: target.function,
                                 offset: target.register + k + position, size: piece)
            value |= part << (8 * UInt32(position))
            position += piece
        }
        return value
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        if offset < 4 {
            if offset == 0 && size == 4 { address.withLock { $0 = value & ~0x3 } }
            return
        }
        let k = Int(offset) - 4
        guard k + size <= 4, let target = decode(address.withLock { $0 }) else { return }
        var position = 0
        while position < size {
            let piece = PCIRoot.pieceSize(at: UInt64(k + position), remaining: size - position)
            root.write(bus: target.bus, device: target.device, function: target.function,
                       offset: target.register + k + position, size: piece,
                       value: value >> (8 * UInt32(position)))
            position += piece
        }
    }

    @inline(__always)
    private func decode(_ address: UInt32) -> (bus: Int, device: Int, function: Int, register: Int)? {
        guard address & Self.enableBit != 0 else { return nil }
        return (bus: Int(address >> 16 & 0xFF), device: Int(address >> 11 & 0x1F), function: Int(address >> 8 & 0x7),
                register: Int(address & 0xFC) | Int(address >> 16 & 0xF00))
    }
}

/// PCI Express enhanced configuration access (ECAM, PCIe base spec §7.2.2): each function's 4
/// KiB of config space at `base + bus << 20 | device << 15 | function << 12 | register`. The
/// guest finds the window in ACPI's MCFG table. Reaches the same config spaces as
/// `PCIConfigurationPorts`; absent functions read all ones.
///
/// Accesses wider than a dword or not naturally aligned are split into aligned pieces, each a
/// config cycle with the right byte enables.
public final class PCIECAM: MMIODevice {
    /// Bytes of ECAM window per bus.
    public static let bytesPerBus: UInt64 = 1 << 20

    private let root: PCIRoot

    init(root: PCIRoot) {
        self.root = root
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        var position = 0
        while position < data.count {
            let address = offset &+ UInt64(position)
            let piece = PCIRoot.pieceSize(at: address, remaining: data.count - position)
            let (bus, device, function, register) = Self.decode(address)
            var value = root.read(bus: bus, device: device, function: function, offset: register, size: piece)
            for i in 0..<piece {
                data[position + i] = UInt8(truncatingIfNeeded: value)
                value >>= 8
            }
            position += piece
        }
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        var position = 0
        while position < data.count {
            let address = offset &+ UInt64(position)
            let piece = PCIRoot.pieceSize(at: address, remaining: data.count - position)
            let (bus, device, function, register) = Self.decode(address)
            var value: UInt32 = 0
            for i in 0..<piece { value |= UInt32(data[position + i]) << (8 * UInt32(i)) }
            root.write(bus: bus, device: device, function: function, offset: register, size: piece, value: value)
            position += piece
        }
    }

    @inline(__always)
    static func decode(_ offset: UInt64) -> (bus: Int, device: Int, function: Int, register: Int) {
        (bus: Int(truncatingIfNeeded: offset >> 20), device: Int(offset >> 15 & 0x1F),
         function: Int(offset >> 12 & 0x7), register: Int(offset & 0xFFF))
    }
}
