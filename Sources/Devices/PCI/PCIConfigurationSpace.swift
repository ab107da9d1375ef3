import VMSpec
import Synchronization

/// The configuration space of one PCI function with a type-0 header (PCI Local Bus 3.0 §6.1):
/// 256 bytes, or 4 KiB for a PCI Express function (`extended`).
///
/// Every byte has a write mask, so read-only fields (IDs, class code, header type, capability
/// bytes, BAR type bits) stay read-only whatever the guest writes, and BAR sizing falls out of
/// the masks: the address bits below the BAR's size are read-only zeros, so after the guest
/// writes all ones it reads back `~(size - 1) | type bits`. Status error bits are write-1-to-clear.
///
/// Thread-safe: config cycles come from any vCPU thread (through 0xCF8/0xCFC or ECAM) and the
/// device may read its own registers from its threads. Observers (`observeWrites`,
/// `observeBARMappings`) run after the write is applied, on the writing thread, outside the
/// lock that guards the bytes but inside one that serializes writes, so they see changes in
/// order and may read this configuration space; they must not write it.
public final class PCIConfigurationSpace: Sendable {
    /// Size of a conventional configuration space and of a PCI Express one.
    public static let conventionalSize = 256
    public static let extendedSize = 4096

    // Header offsets (type 0).
    public static let vendorIDOffset = 0x00, deviceIDOffset = 0x02
    public static let commandOffset = 0x04, statusOffset = 0x06
    public static let revisionOffset = 0x08, classCodeOffset = 0x09
    public static let cacheLineSizeOffset = 0x0C, headerTypeOffset = 0x0E
    public static let barOffset = 0x10, barCount = 6
    public static let subsystemVendorIDOffset = 0x2C, subsystemIDOffset = 0x2E
    public static let capabilitiesPointerOffset = 0x34
    public static let interruptLineOffset = 0x3C, interruptPinOffset = 0x3D
    /// The first byte after the header: capabilities go here and above.
    public static let firstCapabilityOffset = 0x40

    // Command register bits.
    public static let commandIOSpace: UInt16 = 1 << 0
    public static let commandMemorySpace: UInt16 = 1 << 1
    public static let commandBusMaster: UInt16 = 1 << 2
    public static let commandParityErrorResponse: UInt16 = 1 << 6
    public static let commandSERR: UInt16 = 1 << 8
    public static let commandInterruptDisable: UInt16 = 1 << 10
    // Status register bits.
    public static let statusInterrupt: UInt16 = 1 << 3
    public static let statusCapabilitiesList: UInt16 = 1 << 4

    /// Command bits a guest may set. The rest (special cycles, memory write and invalidate,
    /// VGA snoop, fast back-to-back) are hardwired to zero: nothing here implements them.
    static let commandWritable: UInt16 = commandIOSpace | commandMemorySpace | commandBusMaster
        | commandParityErrorResponse | commandSERR | commandInterruptDisable
    /// Status error bits, write-1-to-clear: master data parity error (8), signaled/received
    /// target abort (11, 12), received master abort (13), signaled system error (14), detected
    /// parity error (15). We never set them, but a guest clearing them must not disturb others.
    static let statusWriteOneToClear: UInt16 = 0xF900

    public typealias WriteObserver = @Sendable (_ value: UInt32) -> Void
    public typealias MappingObserver = @Sendable (PCIBARMapping) -> Void

    struct WatchedRange {
        let offset: Int
        let size: Int
        let observer: WriteObserver
    }

    struct State {
        var bytes: [UInt8]
        var writeMask: [UInt8]
        var writeOneToClear: [UInt8]
        /// Declared BARs by register index; the upper register of a 64-bit BAR stays nil.
        var bars: [PCIBAR?] = Array(repeating: nil, count: PCIConfigurationSpace.barCount)
        /// Where each BAR decodes now (see `PCIBARMapping`).
        var mapped: [UInt64?] = Array(repeating: nil, count: PCIConfigurationSpace.barCount)
        /// The next-pointer byte to patch when a capability is appended (0x34 at first).
        var lastCapabilityLink = PCIConfigurationSpace.capabilitiesPointerOffset
        var nextFreeCapabilityOffset = PCIConfigurationSpace.firstCapabilityOffset
        var watched: [WatchedRange] = []
        var mappingObservers: [MappingObserver] = []

        init(size: Int) {
            bytes = Array(repeating: 0, count: size)
            writeMask = Array(repeating: 0, count: size)
            writeOneToClear = Array(repeating: 0, count: size)
        }

        func load(_ offset: Int, _ size: Int) -> UInt32 {
            var value: UInt32 = 0
            for i in 0..<size { value |= UInt32(bytes[offset + i]) << (8 * i) }
            return value
        }

        mutating func store(_ value: UInt32, _ offset: Int, _ size: Int) {
            for i in 0..<size { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
        }

        mutating func storeMask(_ mask: UInt32, _ offset: Int, _ size: Int) {
            for i in 0..<size { writeMask[offset + i] = UInt8(truncatingIfNeeded: mask >> (8 * i)) }
        }

        /// The address BAR `index` is programmed with (whether or not it decodes).
        func address(ofBAR index: Int) -> UInt64? {
            guard let bar = bars[index] else { return nil }
            let low = load(PCIConfigurationSpace.barOffset + 4 * index, 4)
            switch bar.kind {
            case .io: return UInt64(low & ~0x3)
            case .memory32: return UInt64(low & ~0xF)
            case .memory64:
                let high = load(PCIConfigurationSpace.barOffset + 4 * (index + 1), 4)
                return UInt64(high) << 32 | UInt64(low & ~0xF)
            }
        }

        /// Where BAR `index` decodes now, or nil (see `PCIBARMapping` for the rule).
        func decodedAddress(ofBAR index: Int) -> UInt64? {
            guard let bar = bars[index], let address = address(ofBAR: index), address != 0 else { return nil }
            let command = UInt16(truncatingIfNeeded: load(PCIConfigurationSpace.commandOffset, 2))
            let top: UInt64
            switch bar.kind {
            case .io:
                guard command & PCIConfigurationSpace.commandIOSpace != 0 else { return nil }
                top = 0xFFFF
            case .memory32:
                guard command & PCIConfigurationSpace.commandMemorySpace != 0 else { return nil }
                top = 0xFFFF_FFFF
            case .memory64:
                guard command & PCIConfigurationSpace.commandMemorySpace != 0 else { return nil }
                top = UInt64.max
            }
            // A range touching the top of its space is what all-ones sizing leaves behind.
            let (last, overflow) = address.addingReportingOverflow(bar.size - 1)
            guard !overflow, last < top else { return nil }
            return address
        }
    }

    private let state: Mutex<State>
    /// Held across a whole write, observers included, so observers see writes in order.
    private let writeOrder = Mutex<Void>(())
    /// Bytes this function decodes: 256 or 4096.
    public let size: Int

    /// A function with the given identity. `classCode` is the 24-bit class, subclass and
    /// programming interface (0x060000 for a host bridge). `interruptPin` is 0 (none) or 1...4
    /// for INTA#...INTD#. The subsystem IDs default to the vendor and device IDs.
    public init(vendorID: UInt16, deviceID: UInt16, classCode: UInt32, revision: UInt8 = 0,
                subsystemVendorID: UInt16? = nil, subsystemID: UInt16? = nil,
                interruptPin: UInt8 = 0, extended: Bool = false) {
        size = extended ? Self.extendedSize : Self.conventionalSize
        var s = State(size: size)
        s.store(UInt32(vendorID), Self.vendorIDOffset, 2)
        s.store(UInt32(deviceID), Self.deviceIDOffset, 2)
        s.store(UInt32(revision), Self.revisionOffset, 1)
        s.store(classCode & 0xFF_FFFF, Self.classCodeOffset, 3)
        s.store(UInt32(subsystemVendorID ?? vendorID), Self.subsystemVendorIDOffset, 2)
        s.store(UInt32(subsystemID ?? deviceID), Self.subsystemIDOffset, 2)
        s.store(UInt32(min(interruptPin, 4)), Self.interruptPinOffset, 1)
        // Header type 0, single function; BIST, latency timer, ROM BAR, CardBus CIS, Min_Gnt
        // and Max_Lat stay read-only zeros (no expansion ROM: its BAR sizes to zero).
        s.storeMask(UInt32(Self.commandWritable), Self.commandOffset, 2)
        for i in 0..<2 {
            s.writeOneToClear[Self.statusOffset + i] = UInt8(truncatingIfNeeded: Self.statusWriteOneToClear >> (8 * i))
        }
        // Linux writes the cache line size; the interrupt line is the firmware's scratch byte
        // telling the OS which IRQ the pin is routed to.
        s.storeMask(0xFF, Self.cacheLineSizeOffset, 1)
        s.storeMask(0xFF, Self.interruptLineOffset, 1)
        state = Mutex(s)
    }

    // MARK: - Config cycles

    /// A configuration read of `size` bytes (1, 2 or 4) at `offset`. Bytes past the end of this
    /// function's space read as all ones, which tells Linux a function has no extended space.
    public func read(offset: Int, size: Int) -> UInt32 {
        guard offset >= 0, size > 0, size <= 4 else { return 0xFFFF_FFFF }
        return state.withLock { s in
            var value: UInt32 = 0
            for i in 0..<size {
                let byte = offset + i < s.bytes.count ? s.bytes[offset + i] : 0xFF
                value |= UInt32(byte) << (8 * i)
            }
            return value
        }
    }

    /// A configuration write of `size` bytes (1, 2 or 4) at `offset`: writable bits take the
    /// new value, write-1-to-clear bits clear where `value` has ones, the rest stays. Then the
    /// write observers whose range it touched run, and mapping observers for BARs whose
    /// decoded address changed.
    public func write(offset: Int, size: Int, value: UInt32) {
        guard offset >= 0, size > 0, size <= 4, offset < self.size else { return }
        writeOrder.withLock { _ in
            let (touched, mappings) = state.withLock { s in Self.apply(offset, size, value, to: &s) }
            for (observer, newValue) in touched { observer(newValue) }
            for (observers, mapping) in mappings {
                for observer in observers { observer(mapping) }
            }
        }
    }

    /// Applies a write; returns the observers to call with their values, and mapping changes.
    /// Allocates only when something is observed: config writes are rare, MMIO is the hot path.
    private static func apply(_ offset: Int, _ size: Int, _ value: UInt32, to s: inout State)
        -> ([(WriteObserver, UInt32)], [([MappingObserver], PCIBARMapping)])
    {
        let end = min(offset + size, s.bytes.count)
        for o in offset..<end {
            let byte = UInt8(truncatingIfNeeded: value >> (8 * (o - offset)))
            var new = (s.bytes[o] & ~s.writeMask[o]) | (byte & s.writeMask[o])
            new &= ~(byte & s.writeOneToClear[o])
            s.bytes[o] = new
        }
        var touched: [(WriteObserver, UInt32)] = []
        for w in s.watched where w.offset < end && offset < w.offset + w.size {
            touched.append((w.observer, s.load(w.offset, w.size)))
        }
        var mappings: [([MappingObserver], PCIBARMapping)] = []
        let touchesCommand = offset < commandOffset + 2 && commandOffset < end
        let touchesBARs = offset < barOffset + 4 * barCount && barOffset < end
        if touchesCommand || touchesBARs {
            for index in 0..<barCount {
                guard let bar = s.bars[index] else { continue }
                let new = s.decodedAddress(ofBAR: index)
                if new != s.mapped[index] {
                    mappings.append((s.mappingObservers,
                                     PCIBARMapping(index: index, bar: bar, oldAddress: s.mapped[index], newAddress: new)))
                    s.mapped[index] = new
                }
            }
        }
        return (touched, mappings)
    }

    // MARK: - Building the function (before the guest sees it)

    /// Declares BAR `index` (0...5; 0...4 for a 64-bit BAR, which also takes `index + 1`).
    /// Refuses sizes that are not a power of two or out of range, and a register already used.
    public func setBAR(_ index: Int, _ bar: PCIBAR) throws(DeviceError) {
        guard (0..<Self.barCount).contains(index), index + bar.registerCount <= Self.barCount else {
            throw DeviceError(.invalidRange, "PCI BAR \(index) (\(bar)) does not fit in the six BAR registers")
        }
        let (minimum, maximum): (UInt64, UInt64) = switch bar.kind {
        case .io: (4, 256)
        case .memory32: (16, 1 << 31)
        case .memory64: (16, 1 << 63)
        }
        guard bar.size.nonzeroBitCount == 1, (minimum...maximum).contains(bar.size) else {
            throw DeviceError(.invalidRange, "PCI BAR \(index) size \(bar.size.hexString) must be a power of two in \(minimum.hexString)...\(maximum.hexString)")
        }
        guard bar.kind != .io || !bar.prefetchable else {
            throw DeviceError(.invalidRange, "PCI BAR \(index): an I/O BAR cannot be prefetchable")
        }
        try state.withLock { (s: inout State) throws(DeviceError) in
            for r in index..<(index + bar.registerCount) {
                let usedByLower64 = r > 0 && s.bars[r - 1]?.kind == .memory64
                guard s.bars[r] == nil, !usedByLower64 else {
                    throw DeviceError(.overlap, "PCI BAR register \(r) is already in use")
                }
            }
            s.bars[index] = bar
            let low = Self.barOffset + 4 * index
            // Address bits below the size are read-only zeros: that is what sizing reads back.
            let sizeMask = ~(bar.size - 1)
            s.store(bar.typeBits, low, 4)
            s.storeMask(UInt32(truncatingIfNeeded: sizeMask) & (bar.kind == .io ? ~0x3 : ~0xF), low, 4)
            if bar.kind == .memory64 {
                s.store(0, low + 4, 4)
                s.storeMask(UInt32(truncatingIfNeeded: sizeMask >> 32), low + 4, 4)
            }
        }
    }

    /// Appends a capability to the list (PCI 3.0 §6.7): `id`, then a next pointer this method
    /// maintains, then `bytes`. Capabilities are dword aligned, in the order added, from 0x40.
    /// `writeMask` (same length as `bytes`, or empty for all read-only) gives the bits the guest
    /// may change. Returns the capability's offset (where its ID byte sits); also sets status
    /// bit 4 so the guest walks the list. Throws when the 256-byte space is full.
    @discardableResult
    public func addCapability(id: UInt8, bytes: [UInt8], writeMask: [UInt8] = []) throws(DeviceError) -> Int {
        guard writeMask.isEmpty || writeMask.count == bytes.count else {
            throw DeviceError(.invalidRange, "PCI capability \(id.hexString): write mask has \(writeMask.count) bytes for \(bytes.count)")
        }
        return try state.withLock { (s: inout State) throws(DeviceError) -> Int in
            let offset = s.nextFreeCapabilityOffset
            let length = 2 + bytes.count
            guard offset + length <= Self.conventionalSize else {
                throw DeviceError(.invalidRange, "PCI capability \(id.hexString) (\(length) bytes) does not fit below 0x100")
            }
            s.bytes[offset] = id
            s.bytes[offset + 1] = 0
            for (i, byte) in bytes.enumerated() {
                s.bytes[offset + 2 + i] = byte
                s.writeMask[offset + 2 + i] = writeMask.isEmpty ? 0 : writeMask[i]
            }
            s.bytes[s.lastCapabilityLink] = UInt8(offset)
            s.lastCapabilityLink = offset + 1
            s.nextFreeCapabilityOffset = (offset + length + 3) & ~3
            s.bytes[Self.statusOffset] |= UInt8(Self.statusCapabilitiesList)
            return offset
        }
    }

    /// Appends a vendor-specific capability (ID 0x09, PCI 3.0 §H), as virtio-pci uses for its
    /// structure locations: ID, next, then a length byte this method fills in (the whole
    /// capability, header included), then `body` (for virtio: cfg_type, bar, id, padding,
    /// offset, length…). Returns the capability's offset.
    @discardableResult
    public func addVendorSpecificCapability(body: [UInt8], writeMask: [UInt8] = []) throws(DeviceError) -> Int {
        let length = 3 + body.count
        guard length <= 0xFF else {
            throw DeviceError(.invalidRange, "vendor-specific PCI capability of \(length) bytes (at most 255)")
        }
        return try addCapability(id: PCICapabilityID.vendorSpecific, bytes: [UInt8(length)] + body,
                                 writeMask: writeMask.isEmpty ? [] : [0] + writeMask)
    }

    /// Replaces the write mask of the `size` bytes at `offset`: set bits become guest-writable,
    /// clear bits read-only (for registers a capability builder lays out by hand).
    public func setWriteMask(offset: Int, size: Int, mask: UInt32) {
        guard offset >= 0, size > 0, size <= 4, offset + size <= self.size else { return }
        state.withLock { $0.storeMask(mask, offset, size) }
    }

    /// Sets the `size` bytes at `offset` from the device side, ignoring write masks (for
    /// read-only registers a device updates, like a capability's status field). Observers do
    /// not run: the device knows what it changed.
    public func setValue(_ value: UInt32, offset: Int, size: Int) {
        guard offset >= 0, size > 0, size <= 4, offset + size <= self.size else { return }
        state.withLock { $0.store(value, offset, size) }
    }

    /// Calls `observer` with the new value of the `size` bytes (1...4) at `offset` after every
    /// config write that touches them (for example MSI-X's message control).
    public func observeWrites(offset: Int, size: Int, _ observer: @escaping WriteObserver) {
        precondition(size >= 1 && size <= 4 && offset >= 0 && offset + size <= self.size)
        state.withLock { $0.watched.append(WatchedRange(offset: offset, size: size, observer: observer)) }
    }

    /// Calls `observer` whenever a BAR starts or stops decoding or moves (see `PCIBARMapping`).
    /// The VMM moves the BAR's MMIO registrations from it (`PCIBus` does that for its devices).
    public func observeBARMappings(_ observer: @escaping MappingObserver) {
        state.withLock { $0.mappingObservers.append(observer) }
    }

    // MARK: - Device-side view

    /// The declared BARs in index order.
    public var bars: [(index: Int, bar: PCIBAR)] {
        state.withLock { s in s.bars.enumerated().compactMap { i, bar in bar.map { (i, $0) } } }
    }

    /// The address BAR `index` is programmed with, decoding or not (nil if not declared).
    public func address(ofBAR index: Int) -> UInt64? {
        guard (0..<Self.barCount).contains(index) else { return nil }
        return state.withLock { $0.address(ofBAR: index) }
    }

    /// Where BAR `index` decodes now, or nil.
    public func decodedAddress(ofBAR index: Int) -> UInt64? {
        guard (0..<Self.barCount).contains(index) else { return nil }
        return state.withLock { $0.mapped[index] }
    }

    /// The command register.
    public var command: UInt16 { UInt16(truncatingIfNeeded: read(offset: Self.commandOffset, size: 2)) }

    /// Whether the guest lets the function master the bus (DMA and MSI writes, PCI 3.0 §6.2.2).
    public var isBusMasterEnabled: Bool { command & Self.commandBusMaster != 0 }

    /// Sets or clears status bit 3, which mirrors the function's INTx# level (the guest's
    /// shared-IRQ handler reads it to tell whether this function raised the line).
    public func setInterruptStatus(_ asserted: Bool) {
        state.withLock { s in
            if asserted { s.bytes[Self.statusOffset] |= UInt8(Self.statusInterrupt) }
            else { s.bytes[Self.statusOffset] &= ~UInt8(Self.statusInterrupt) }
        }
    }
}

/// Capability IDs this layer and its users place (PCI Code and ID Assignment spec §2).
public enum PCICapabilityID {
    public static let powerManagement: UInt8 = 0x01
    public static let msi: UInt8 = 0x05
    public static let vendorSpecific: UInt8 = 0x09
    public static let pciExpress: UInt8 = 0x10
    public static let msix: UInt8 = 0x11
}
