#if canImport(Glibc)
import Glibc
#endif
import Devices
import GuestMemory
import Synchronization

extension FuzzTargets {
    /// PCI configuration space and MSI-X as a guest reaches them: a `PCIBus` with the host bridge,
    /// a virtio-pci entropy device and a virtio-pci block device (their real transports, BAR
    /// regions on a real `MMIOBus`), driven by a fuzzed sequence of config cycles through ports
    /// 0xCF8-0xCFF (on an `IOBus`) and through ECAM, BAR accesses (common config, notify, ISR,
    /// device config, MSI-X table and PBA) wherever the guest has put BAR 0, and device-side
    /// MSI-X signals. BAR sizing, moving BARs onto each other or onto ECAM, decode toggling and
    /// masking all come out of that sequence.
    ///
    /// Input: up to 256 operations, each an opcode byte and its fields: CONFIG_ADDRESS (slot,
    /// function, register, flags), a 0xCFC-0xCFF data access (offset, size, direction, value),
    /// an ECAM access (slot, function, register, size), a BAR 0 access (device, offset, size,
    /// value), an MSI-X table entry write (device, vector, dword, value), a signal (device,
    /// vector), or a direct `PCIBus` config access with any offset and size.
    ///
    /// Checks, besides never trapping: IDs, class, header type, the capability pointer and
    /// MSI-X's table size and locations stay read-only; BAR 0's low bits stay its type and
    /// size; unused BARs read zero; where BAR 0 decodes follows the documented rule (memory
    /// decode on, address not 0, not touching 4 GiB); each device's regions sit on the MMIO bus
    /// exactly where BAR 0 decodes, and nowhere else, unless the bus refused that BAR's last
    /// move (it overlapped another range; the bus reports that); no MSI-X vector stays pending
    /// when nothing masks or blocks it, and the PBA shows what is pending.
    static let pciConfig = FuzzTarget(
        name: "pci-config",
        summary: "PCI config cycles (0xCF8/0xCFC, ECAM), BAR sizing and moves, MSI-X table/PBA on two virtio-pci devices"
    ) { bytes in
        var input = FuzzInput(bytes)
        let machine = PCIFuzzMachine()
        for _ in 0..<256 where !input.isAtEnd {
            machine.step(&input)
            machine.check()
        }
    }
}

/// A bus with two virtio-pci functions, built per input (a few small allocations) so every
/// input starts from the state firmware leaves: BARs assigned, memory decode on.
private final class PCIFuzzMachine {
    let mmio: MMIOBus
    let ports: IOBus
    let bus: PCIBus
    let devices: [VirtioPCIDevice]
    let slots: [Int]
    /// Per slot, whether the bus refused the last BAR move (the guest put it over another range).
    private let moves: MoveLog
    /// The read-only bits of each device's config space at power-on.
    private let fixed: [[ReadOnlyField]]

    init() {
        let mmio = MMIOBus(), ports = IOBus(), moves = MoveLog()
        let bus = try! PCIBus(mmioBus: mmio, onBARMove: { event in
            moves.lastFailed.withLock { $0[event.slot] = event.error != nil }
        })
        try! bus.registerECAM(on: mmio)
        try! ports.register(bus.configurationPorts, base: PCIConfigurationPorts.basePort, length: PCIConfigurationPorts.portCount)
        // Guest RAM stays zero: no ring ever holds a request, so doorbells reach the devices'
        // queue code without it doing any I/O (queue processing is the virtio targets' job).
        let memory = FuzzRAM.shared.fill(with: UnsafeRawBufferPointer(start: nil, count: 0))
        let entropy = VirtioEntropy(source: FixedEntropy())
        let block = try! VirtioBlock(backend: NoDisk(), path: "fuzz.img", readOnly: false)
        var devices: [VirtioPCIDevice] = [], slots: [Int] = []
        for device in [entropy, block] as [any VirtioDevice] {
            let transport = try! VirtioPCIDevice(device: device, memory: memory, delivery: NoDelivery(),
                                                 onNotify: { queue in device.queueNotified(queue) },
                                                 onError: { reason in requireOneLine(reason, "virtio-pci needs reset") })
            slots.append(try! bus.attach(transport))
            devices.append(transport)
        }
        self.mmio = mmio
        self.ports = ports
        self.moves = moves
        self.bus = bus
        self.devices = devices
        self.slots = slots
        fixed = devices.map(Self.readOnlyFields)
    }

    // MARK: Operations

    func step(_ input: inout FuzzInput) {
        switch input.byte() % 8 {
        case 0: setConfigAddress(&input)
        case 1, 2: portAccess(&input)
        case 3: ecamAccess(&input)
        case 4: barAccess(&input)
        case 5: msixTableWrite(&input)
        case 6:
            let device = devices[Int(input.byte() & 1)]
            _ = device.msix.signal(vector: Int(input.byte() % UInt8(device.msix.vectorCount + 2)))
        default:
            // What firmware-side code and the VMM may call: any offset, any size.
            let slot = Int(input.byte() % 4)
            let offset = Int(Int16(bitPattern: input.integer(UInt16.self)))
            let size = Int(input.byte() % 6)
            if input.bool() {
                bus.writeConfiguration(device: slot, offset: offset, size: size, value: input.integer(UInt32.self))
            } else {
                _ = bus.readConfiguration(device: slot, offset: offset, size: size)
            }
        }
    }

    /// A dword to 0xCF8: mostly enabled and bus 0, any slot (1 and 2 hold the devices) and
    /// function; sometimes AMD's extended register bits.
    private func setConfigAddress(_ input: inout FuzzInput) {
        let slot = UInt32(input.byte() % 34) & 0x1F
        let function = UInt32(input.byte() % 10) & 0x7
        let register = UInt32(input.byte())
        let flags = input.byte()
        var address = slot << 11 | function << 8 | register
        if flags & 1 == 0 { address |= 1 << 31 }
        if flags & 2 != 0 { address |= UInt32(input.byte()) << 16 }
        if flags & 4 != 0 { address |= UInt32(flags >> 4) << 24 }
        ports.write(port: PCIConfigurationPorts.basePort, size: 4, value: address)
    }

    private func portAccess(_ input: inout FuzzInput) {
        let port = PCIConfigurationPorts.basePort + UInt16(input.byte() % 8)
        let size = input.pick([1, 2, 4, 4])
        if input.bool() {
            ports.write(port: port, size: size, value: input.integer(UInt32.self))
        } else {
            _ = ports.read(port: port, size: size)
        }
    }

    private func ecamAccess(_ input: inout FuzzInput) {
        let slot = UInt64(input.byte() % 34) & 0x1F
        let function = UInt64(input.byte() % 10) & 0x7
        let register = UInt64(input.integer(UInt16.self) & 0xFFF)
        let offset = slot << 15 | function << 12 | register
        mmioAccess(bus.configuration.ecamBase + offset, &input)
    }

    /// An access at BAR 0's programmed address (decoding or not) plus an offset in or past it.
    private func barAccess(_ input: inout FuzzInput) {
        let device = devices[Int(input.byte() & 1)]
        let base = device.configuration.address(ofBAR: 0) ?? 0
        mmioAccess(base &+ UInt64(input.integer(UInt16.self)), &input)
    }

    /// A dword store to one MSI-X table entry field (the guest's mask/unmask and message writes).
    private func msixTableWrite(_ input: inout FuzzInput) {
        let device = devices[Int(input.byte() & 1)]
        let vector = UInt64(input.byte() % UInt8(device.msix.vectorCount + 1))
        let field = UInt64(input.byte() % 4)
        let base = device.configuration.address(ofBAR: 0) ?? 0
        var value = input.integer(UInt32.self)
        if field == 3 { value &= 1 }
        withUnsafeBytes(of: &value) {
            _ = mmio.write(address: base &+ UInt64(device.msix.tableOffset) &+ 16 * vector &+ 4 * field, data: $0)
        }
    }

    private func mmioAccess(_ address: UInt64, _ input: inout FuzzInput) {
        let size = input.pick([1, 2, 4, 8, 4, 3])
        var value = input.integer(UInt64.self)
        if input.bool() {
            withUnsafeBytes(of: &value) { _ = mmio.write(address: address, data: UnsafeRawBufferPointer(rebasing: $0[0..<size])) }
        } else {
            withUnsafeMutableBytes(of: &value) { _ = mmio.read(address: address, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<size])) }
        }
    }

    // MARK: Checks

    /// Bytes no guest write may change: IDs, revision and class, header type, subsystem IDs, the
    /// capability pointer, and MSI-X's message control low bits and table/PBA locations.
    static func readOnlyFields(_ device: VirtioPCIDevice) -> [ReadOnlyField] {
        let c = device.configuration
        let msix = msixOffset(c)
        // MSI-X: ID and next, message control but its enable and function mask bits, table, PBA.
        let fields: [(offset: Int, size: Int, mask: UInt32)] = [
            (0x00, 4, ~0), (0x08, 4, ~0), (0x0E, 1, ~0), (0x2C, 4, ~0), (0x34, 1, ~0), (0x3D, 1, ~0),
            (msix, 2, ~0), (msix + 2, 2, 0x3FFF), (msix + 4, 4, ~0), (msix + 8, 4, ~0),
        ]
        return fields.map { ReadOnlyField(offset: $0.offset, size: $0.size, mask: $0.mask, value: c.read(offset: $0.offset, size: $0.size) & $0.mask) }
    }

    /// The MSI-X capability's offset, by walking the list (at most 48 links, as Linux bounds it).
    static func msixOffset(_ c: PCIConfigurationSpace) -> Int {
        var pointer = Int(c.read(offset: 0x34, size: 1))
        for _ in 0..<48 where pointer != 0 {
            if c.read(offset: pointer, size: 1) == UInt32(PCICapabilityID.msix) { return pointer }
            pointer = Int(c.read(offset: pointer + 1, size: 1))
        }
        fatalError("no MSI-X capability in the list")
    }

    func check() {
        guard bus.readConfiguration(device: 0, offset: 0, size: 4) == 0x0008_1B36 else { fatalError("host bridge IDs changed") }
        let failed = moves.lastFailed.withLock { $0 }
        var registered = 1 // ECAM
        for (index, device) in devices.enumerated() {
            let c = device.configuration
            for f in fixed[index] where c.read(offset: f.offset, size: f.size) & f.mask != f.value {
                fatalError("device \(index): read-only config bits at \(f.offset) changed to \(c.read(offset: f.offset, size: f.size)) from \(f.value)")
            }
            let bar0 = c.read(offset: 0x10, size: 4)
            guard bar0 & UInt32(truncatingIfNeeded: VirtioPCIDevice.barSize - 1) == 0 else { fatalError("device \(index): BAR 0 reads \(bar0)") }
            for register in 1..<6 where c.read(offset: 0x10 + 4 * register, size: 4) != 0 {
                fatalError("device \(index): undeclared BAR \(register) is writable")
            }
            // PCIBARMapping's rule, restated: memory decode on, address not 0, range below 4 GiB.
            let address = UInt64(bar0)
            let expected: UInt64? = c.command & PCIConfigurationSpace.commandMemorySpace != 0 && address != 0
                && address + VirtioPCIDevice.barSize - 1 < 0xFFFF_FFFF ? address : nil
            guard c.decodedAddress(ofBAR: 0) == expected else {
                fatalError("device \(index): BAR 0 decodes at \(String(describing: c.decodedAddress(ofBAR: 0))), expected \(String(describing: expected))")
            }
            // After a refused move a BAR's regions are registered in part; the next move that
            // succeeds puts them all back.
            if let expected, failed[slots[index]] != true {
                registered += device.barRegions().count
                for region in device.barRegions() {
                    guard let found = mmio.device(at: expected + region.offset), found.device === region.handler, found.offset == 0 else {
                        fatalError("device \(index): region at BAR offset \(region.offset) is not on the MMIO bus at \(expected + region.offset)")
                    }
                }
            }
            checkMSIX(device, index)
        }
        // Nothing left behind where a BAR no longer decodes.
        if !failed.values.contains(true), mmio.ranges.count != registered {
            fatalError("\(mmio.ranges.count) MMIO ranges registered, expected \(registered)")
        }
    }

    private func checkMSIX(_ device: VirtioPCIDevice, _ index: Int) {
        let msix = device.msix
        let busMaster = device.configuration.isBusMasterEnabled
        var pba: UInt64 = 0
        withUnsafeMutableBytes(of: &pba) { msix.pendingBitArray.read(offset: 0, into: $0) }
        for vector in 0..<msix.vectorCount {
            let pending = msix.isPending(vector: vector)
            guard (pba >> UInt64(vector)) & 1 == (pending ? 1 : 0) else { fatalError("device \(index): PBA \(pba) disagrees on vector \(vector)") }
            if pending, msix.isEnabled, !msix.isFunctionMasked, !msix.isMasked(vector: vector), busMaster {
                fatalError("device \(index): vector \(vector) pending with nothing masking or blocking it")
            }
        }
    }
}

private struct ReadOnlyField {
    var offset: Int, size: Int, mask: UInt32, value: UInt32
}

private final class MoveLog: Sendable {
    let lastFailed = Mutex<[Int: Bool]>([:])
}

/// Messages go nowhere: what matters is when the capability sends them, which `check` sees.
private struct NoDelivery: MSIDelivery {
    func deliver(address: UInt64, data: UInt32) {}
}

/// virtio-rng's source: a fixed byte (nothing reads it here; RAM holds no request).
private struct FixedEntropy: EntropySource {
    func fill(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        buffer.initializeMemory(as: UInt8.self, repeating: 0xA5)
        return buffer.count
    }
}

/// A 1 MiB disk that fails every operation: the block device needs a back end to exist, and no
/// request ever reaches it here.
private final class NoDisk: BlockBackend {
    let size: UInt64 = 1 << 20
    let preferredBlockSize = 4096
    func transfer(write: Bool, _ iovecs: UnsafeMutablePointer<iovec>, count: Int, offset: Int64, total: Int) -> (moved: Int, complete: Bool) {
        (0, false)
    }
    func flush() -> Bool { false }
    func punchHole(offset: Int64, length: Int64) -> BlockDeallocation { .failed }
    func zeroRange(offset: Int64, length: Int64) -> Bool { false }
    func writeZeros(offset: Int64, length: Int64, from zeros: UnsafeRawBufferPointer) -> Bool { false }
}
