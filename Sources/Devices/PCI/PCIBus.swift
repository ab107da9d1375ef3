import VMSpec
import Synchronization

/// Where the PCI bus lives in the guest's address spaces. The defaults fit the Linux layout
/// (RAM below 3 GiB, then above 4 GiB): BARs in 0xC000_0000-0xDFFF_FFFF, ECAM for bus 0 at
/// 0xE000_0000, clear of the IOAPIC (0xFEC0_0000) and local APIC (0xFEE0_0000).
public struct PCIBusConfiguration: Sendable, Equatable {
    /// A window of guest-physical (or port) addresses, `base ..< base + size`.
    public struct Window: Sendable, Equatable {
        public var base: UInt64
        public var size: UInt64
        public init(base: UInt64, size: UInt64) {
            self.base = base
            self.size = size
        }
        /// One past the last address (may be 2^64, so a UInt64 cannot hold it in general; the
        /// bus refuses windows that end past 2^64 - 1).
        var last: UInt64 { base &+ (size &- 1) }
    }

    /// Memory below 4 GiB for 32-bit BARs (and 64-bit ones when `mmio64` is nil or full).
    public var mmio32 = Window(base: 0xC000_0000, size: 0x2000_0000)
    /// Memory above 4 GiB for 64-bit BARs; must lie within the guest's physical address width
    /// and above RAM. nil puts 64-bit BARs below 4 GiB.
    public var mmio64: Window? = nil
    /// Ports for I/O BARs; nil leaves them unassigned (zero, not decoding).
    public var io: Window? = nil
    /// The ECAM window's base (1 MiB aligned); it spans `PCIECAM.bytesPerBus` for bus 0.
    public var ecamBase: UInt64 = 0xE000_0000

    public init(mmio32: Window = Window(base: 0xC000_0000, size: 0x2000_0000), mmio64: Window? = nil,
                io: Window? = nil, ecamBase: UInt64 = 0xE000_0000) {
        self.mmio32 = mmio32
        self.mmio64 = mmio64
        self.io = io
        self.ecamBase = ecamBase
    }

    /// Buses the ECAM window covers (ACPI MCFG's end bus is `busCount - 1`).
    public static let busCount = 1

    /// Bytes of the ECAM window (one bus).
    public var ecamSize: UInt64 { PCIECAM.bytesPerBus * UInt64(Self.busCount) }

    /// What the e820 map must mark reserved (type 2): the ECAM window, which Linux uses only
    /// when firmware reserves it. The BAR windows must stay out of e820 altogether (neither RAM
    /// nor reserved): Linux drops reserved ranges from the windows it assigns BARs in.
    public var e820Reserved: [Window] { [Window(base: ecamBase, size: ecamSize)] }
}

/// What the bus did when a BAR of one of its devices started or stopped decoding or moved.
public struct PCIBARMoveEvent: Sendable {
    /// The device's slot on bus 0 (device number).
    public var slot: Int
    public var mapping: PCIBARMapping
    /// Set when a region could not be registered on the MMIO bus at the new address (it
    /// overlaps another range): the guest placed the BAR on top of something else, and
    /// accesses there keep reaching whatever was there first.
    public var error: DeviceError?
}

/// PCI segment 0, bus 0: up to 32 single-function devices, the host bridge at 00:00.0, both
/// config access mechanisms (`configurationPorts` for 0xCF8-0xCFF, `ecam` for MMIO), firmware-
/// style BAR assignment, and MMIO registrations that follow the BARs.
///
/// Attaching a device assigns each BAR a naturally aligned address from the configured windows
/// (largest first, so alignment wastes little), programs the BARs and enables decoding, as
/// firmware would: Linux keeps such assignments when they lie inside the host bridge's
/// windows, and reassigns otherwise. Whenever a BAR decodes, moves, or stops decoding (the
/// guest toggles memory decode around BAR sizing, or reassigns), the bus moves the device's
/// `barRegions()` on `mmioBus` and then reports a `PCIBARMoveEvent` to `onBARMove` (for
/// anything else keyed by address, such as ioeventfds).
///
/// Attach devices while building the VM. Config cycles may then come from any vCPU thread.
public final class PCIBus: Sendable {
    public static let slotCount = PCIRoot.slotCount

    public let configuration: PCIBusConfiguration
    /// The host bridge at slot 0.
    public let hostBridge: PCIHostBridge
    /// Configuration mechanism #1; register it on the port bus at
    /// `PCIConfigurationPorts.basePort` for `PCIConfigurationPorts.portCount` ports.
    public let configurationPorts: PCIConfigurationPorts
    /// The ECAM window; register it on the MMIO bus at `configuration.ecamBase` for
    /// `configuration.ecamSize` bytes (or call `registerECAM`).
    public let ecam: PCIECAM

    private let root = PCIRoot()
    private let mmioBus: MMIOBus?
    private let onBARMove: (@Sendable (PCIBARMoveEvent) -> Void)?
    /// Next free address in each window: (mmio32, mmio64, io).
    private let cursors: Mutex<(mmio32: UInt64, mmio64: UInt64, io: UInt64)>

    /// A bus with the host bridge in slot 0. `mmioBus` receives the devices' BAR regions (nil:
    /// the caller handles `onBARMove` itself). Refuses windows that are empty, wrap, put
    /// `mmio32` above 4 GiB or `io` above port 0xFFFF, overlap each other or the ECAM window,
    /// and an ECAM base that is not 1 MiB aligned.
    public init(configuration: PCIBusConfiguration = PCIBusConfiguration(), mmioBus: MMIOBus? = nil,
                hostBridge: PCIHostBridge = PCIHostBridge(),
                onBARMove: (@Sendable (PCIBARMoveEvent) -> Void)? = nil) throws(DeviceError) {
        try Self.validate(configuration)
        self.configuration = configuration
        self.mmioBus = mmioBus
        self.onBARMove = onBARMove
        self.hostBridge = hostBridge
        cursors = Mutex((configuration.mmio32.base, configuration.mmio64?.base ?? 0, configuration.io?.base ?? 0))
        configurationPorts = PCIConfigurationPorts(root: root)
        ecam = PCIECAM(root: root)
        try attach(hostBridge, slot: 0)
    }

    /// Registers `ecam` on `bus` at the configured base.
    public func registerECAM(on bus: MMIOBus) throws(DeviceError) {
        try bus.register(ecam, base: configuration.ecamBase, length: configuration.ecamSize)
    }

    /// Places `device` in `slot` (nil: the lowest free slot from 1), assigns its BARs from the
    /// windows, enables memory (and I/O) decoding, and returns the slot. Throws `.overlap` when
    /// the slot is taken or the bus is full, `.invalidRange` when a window has no room left or
    /// a BAR region lies outside its BAR.
    @discardableResult
    public func attach(_ device: any PCIDevice, slot requested: Int? = nil) throws(DeviceError) -> Int {
        let slot = try root.slots.withLock { (slots: inout [(any PCIDevice)?]) throws(DeviceError) -> Int in
            if let requested {
                guard (0..<Self.slotCount).contains(requested) else {
                    throw DeviceError(.invalidRange, "PCI slot \(requested) is outside 0...\(Self.slotCount - 1)")
                }
                guard slots[requested] == nil else {
                    throw DeviceError(.overlap, "PCI slot \(requested) is already taken by \(type(of: slots[requested]!))")
                }
                return requested
            }
            guard let free = (1..<Self.slotCount).first(where: { slots[$0] == nil }) else {
                throw DeviceError(.overlap, "PCI bus 0 is full (\(Self.slotCount) slots)")
            }
            return free
        }

        let space = device.configuration
        let bars = space.bars
        let regions = device.barRegions()
        for region in regions {
            guard let bar = bars.first(where: { $0.index == region.barIndex })?.bar, bar.kind != .io else {
                throw DeviceError(.invalidRange, "\(type(of: device)): MMIO region for BAR \(region.barIndex), which is not a memory BAR")
            }
            guard region.length > 0, region.offset < bar.size, region.length <= bar.size - region.offset else {
                throw DeviceError(.invalidRange, "\(type(of: device)): region \(region.offset.hexString)+\(region.length.hexString) lies outside BAR \(region.barIndex) (\(bar))")
            }
        }
        let assignments = try assign(bars, for: device)

        if let mmioBus {
            let registrar = BARRegistrar(regions: regions, bus: mmioBus)
            let hook = onBARMove
            space.observeBARMappings { mapping in
                let error = registrar.apply(mapping)
                hook?(PCIBARMoveEvent(slot: slot, mapping: mapping, error: error))
            }
        } else if let hook = onBARMove {
            space.observeBARMappings { hook(PCIBARMoveEvent(slot: slot, mapping: $0, error: nil)) }
        }

        // Program as firmware does: addresses first, then decode on, so mappings appear once.
        var command = space.command
        for (index, bar, address) in assignments {
            let offset = PCIConfigurationSpace.barOffset + 4 * index
            space.write(offset: offset, size: 4, value: UInt32(truncatingIfNeeded: address) | bar.typeBits)
            if bar.kind == .memory64 { space.write(offset: offset + 4, size: 4, value: UInt32(truncatingIfNeeded: address >> 32)) }
            command |= bar.kind == .io ? PCIConfigurationSpace.commandIOSpace : PCIConfigurationSpace.commandMemorySpace
        }
        if command != space.command {
            space.write(offset: PCIConfigurationSpace.commandOffset, size: 2, value: UInt32(command))
        }

        try root.slots.withLock { (slots: inout [(any PCIDevice)?]) throws(DeviceError) in
            guard slots[slot] == nil else { throw DeviceError(.overlap, "PCI slot \(slot) was taken meanwhile") }
            slots[slot] = device
        }
        return slot
    }

    /// The device in `slot`, or nil.
    public func device(atSlot slot: Int) -> (any PCIDevice)? {
        root.function(bus: 0, device: slot, function: 0)
    }

    /// A config read as the guest would do it (absent functions read all ones).
    public func readConfiguration(bus: Int = 0, device: Int, function: Int = 0, offset: Int, size: Int) -> UInt32 {
        root.read(bus: bus, device: device, function: function, offset: offset, size: size)
    }

    /// A config write as the guest would do it.
    public func writeConfiguration(bus: Int = 0, device: Int, function: Int = 0, offset: Int, size: Int, value: UInt32) {
        root.write(bus: bus, device: device, function: function, offset: offset, size: size, value: value)
    }

    // MARK: - BAR assignment

    /// Addresses for `bars`, largest first, naturally aligned; all or nothing.
    private func assign(_ bars: [(index: Int, bar: PCIBAR)], for device: any PCIDevice) throws(DeviceError)
        -> [(index: Int, bar: PCIBAR, address: UInt64)]
    {
        let config = configuration
        return try cursors.withLock { (c: inout (mmio32: UInt64, mmio64: UInt64, io: UInt64)) throws(DeviceError) in
            var next = c
            var result: [(index: Int, bar: PCIBAR, address: UInt64)] = []
            for (index, bar) in bars.sorted(by: { $0.bar.size > $1.bar.size }) {
                switch bar.kind {
                case .io:
                    guard let window = config.io else { continue }  // left for the guest to place
                    guard let a = Self.take(bar.size, from: window, cursor: &next.io) else {
                        throw Self.exhausted("I/O", window, bar, index, device)
                    }
                    result.append((index, bar, a))
                case .memory64:
                    if let window = config.mmio64, let a = Self.take(bar.size, from: window, cursor: &next.mmio64) {
                        result.append((index, bar, a))
                        continue
                    }
                    fallthrough
                case .memory32:
                    guard let a = Self.take(bar.size, from: config.mmio32, cursor: &next.mmio32) else {
                        throw Self.exhausted("32-bit MMIO", config.mmio32, bar, index, device)
                    }
                    result.append((index, bar, a))
                }
            }
            c = next
            return result.sorted { $0.index < $1.index }
        }
    }

    /// The first `size`-aligned address at or above `cursor` with `size` bytes left in `window`.
    private static func take(_ size: UInt64, from window: PCIBusConfiguration.Window, cursor: inout UInt64) -> UInt64? {
        let (bumped, o1) = cursor.addingReportingOverflow(size - 1)
        guard !o1 else { return nil }
        let address = bumped & ~(size - 1)
        let (last, o2) = address.addingReportingOverflow(size - 1)
        guard !o2, last <= window.last else { return nil }
        cursor = last &+ 1
        return address
    }

    private static func exhausted(_ name: String, _ window: PCIBusConfiguration.Window, _ bar: PCIBAR, _ index: Int,
                                  _ device: any PCIDevice) -> DeviceError {
        DeviceError(.invalidRange, "\(type(of: device)) BAR \(index) (\(bar)) does not fit in the \(name) window \(window.base.hexString)+\(window.size.hexString)")
    }

    private static func validate(_ c: PCIBusConfiguration) throws(DeviceError) {
        var windows: [(String, PCIBusConfiguration.Window)] = [("32-bit MMIO", c.mmio32), ("ECAM", .init(base: c.ecamBase, size: c.ecamSize))]
        if let w = c.mmio64 { windows.append(("64-bit MMIO", w)) }
        for (name, w) in windows + (c.io.map { [("I/O", $0)] } ?? []) {
            guard w.size > 0, !w.base.addingReportingOverflow(w.size - 1).overflow else {
                throw DeviceError(.invalidRange, "PCI \(name) window \(w.base.hexString)+\(w.size.hexString) is empty or wraps")
            }
        }
        guard c.mmio32.last <= 0xFFFF_FFFF else {
            throw DeviceError(.invalidRange, "PCI 32-bit MMIO window ends above 4 GiB")
        }
        if let io = c.io, io.last > 0xFFFF {
            throw DeviceError(.invalidRange, "PCI I/O window ends above port 0xffff")
        }
        guard c.ecamBase & (PCIECAM.bytesPerBus - 1) == 0 else {
            throw DeviceError(.invalidRange, "PCI ECAM base \(c.ecamBase.hexString) is not 1 MiB aligned")
        }
        for i in windows.indices {
            for j in windows.indices where j > i {
                let (a, b) = (windows[i].1, windows[j].1)
                if a.base <= b.last && b.base <= a.last {
                    throw DeviceError(.overlap, "PCI \(windows[i].0) window overlaps the \(windows[j].0) window")
                }
            }
        }
    }
}

/// Keeps one device's BAR regions registered on the MMIO bus where their BARs decode. It
/// remembers where it registered each region, so it never unregisters someone else's range
/// when a registration had failed.
///
/// It holds the MMIO bus weakly: the bus holds ECAM, which reaches every device and so this
/// registrar (the device's BAR observer), and a strong reference back would keep the buses and
/// devices of a finished VM alive for good. Without the bus there is nothing left to move.
final class BARRegistrar: Sendable {
    private let regions: [PCIBARRegion]
    private weak let bus: MMIOBus?
    /// Per region: the base it is registered at, or nil.
    private let registered: Mutex<[UInt64?]>

    init(regions: [PCIBARRegion], bus: MMIOBus) {
        self.regions = regions
        self.bus = bus
        registered = Mutex(Array(repeating: nil, count: regions.count))
    }

    /// Moves the regions of `mapping.index`; returns the first registration failure.
    func apply(_ mapping: PCIBARMapping) -> DeviceError? {
        guard let bus else { return nil }
        return registered.withLock { registered in
            var failure: DeviceError?
            for (i, region) in regions.enumerated() where region.barIndex == mapping.index {
                let target = mapping.newAddress.map { $0 &+ region.offset }
                switch (registered[i], target) {
                case let (old?, new?):
                    do throws(DeviceError) {
                        try bus.move(from: old, to: new)
                        registered[i] = new
                    } catch {
                        bus.unregister(base: old)
                        registered[i] = nil
                        failure = failure ?? error
                    }
                case let (old?, nil):
                    bus.unregister(base: old)
                    registered[i] = nil
                case let (nil, new?):
                    do throws(DeviceError) {
                        try bus.register(region.handler, base: new, length: region.length)
                        registered[i] = new
                    } catch {
                        failure = failure ?? error
                    }
                case (nil, nil):
                    break
                }
            }
            return failure
        }
    }
}
