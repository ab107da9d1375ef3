import VMSpec
import Synchronization

/// Sends one message-signalled interrupt: a dword write of `data` to `address`, which on x86
/// names a local APIC and vector (Intel SDM vol. 3 §11.11). The VMM implements it with
/// KVM_SIGNAL_MSI; tests with a recorder. Called with the MSI-X lock held (so mask changes and
/// deliveries stay ordered), so an implementation must not call back into the capability.
public protocol MSIDelivery: Sendable {
    func deliver(address: UInt64, data: UInt32)
}

/// What `MSIXCapability.signal(vector:)` did.
public enum MSIXSignalResult: Sendable, Equatable {
    /// The message went out.
    case delivered
    /// The vector or the whole function is masked: its pending bit is set and the message goes
    /// out when both are unmasked.
    case pending
    /// MSI-X is off (or the vector does not exist): nothing happened, and a device that has an
    /// INTx pin should use it instead.
    case disabled
    /// Bus mastering is off (command bit 2): an MSI is a memory write the function may not
    /// issue, so the message is lost, as on hardware (PCIe base spec §7.5.1.1.3). Guests clear
    /// the bit to silence a device, for instance before kexec.
    case blocked
}

/// An MSI-X capability (PCI Local Bus 3.0 §6.8.2): the capability in config space, the vector
/// table and the pending bit array (PBA) in memory BARs, and delivery that honours the masks.
///
/// - Message control (config space): bits 10:0 table size - 1 (read-only), bit 14 function
///   mask, bit 15 MSI-X enable. The guest's writes reach this object through a config-space
///   write observer.
/// - Table entry (16 bytes): message address low, high, data, vector control (bit 0 mask; the
///   other bits read as zero). Vectors start masked, as after reset.
/// - PBA: one bit per vector, read-only to the guest.
/// - `signal(vector:)` delivers unless the vector or function is masked; then it sets the
///   pending bit, and clearing the mask later delivers the message and clears the bit.
/// - Messages need bus mastering (command bit 2), which `install(in:)` watches too.
///
/// Thread-safe: vCPU threads write the table and the message control while device threads
/// signal. One lock covers everything and delivery happens under it, so once the guest's mask
/// write has completed no message for that vector goes out.
///
/// Storage is allocated once; table accesses and `signal` do not allocate.
public final class MSIXCapability: Sendable {
    /// The most vectors a function may have (table size is an 11-bit field).
    public static let maxVectors = 2048
    /// Bytes per table entry.
    public static let entrySize: UInt64 = 16

    public let vectorCount: Int
    public let tableBAR: Int
    public let tableOffset: UInt32
    public let pbaBAR: Int
    public let pbaOffset: UInt32
    /// The table as an MMIO handler: offset 0 is entry 0's address low dword.
    public let table: MSIXTable
    /// The PBA as an MMIO handler: offset 0 is the qword with vectors 0...63.
    public let pendingBitArray: MSIXPendingBitArray

    let engine: MSIXEngine

    /// Table bytes for `vectors` vectors, and PBA bytes (whole qwords).
    public static func tableSize(vectors: Int) -> UInt64 { UInt64(vectors) * entrySize }
    public static func pendingBitArraySize(vectors: Int) -> UInt64 { UInt64((vectors + 63) / 64) * 8 }

    /// A capability with `vectorCount` vectors whose table sits at `tableOffset` in BAR
    /// `tableBAR` and PBA at `pbaOffset` in BAR `pbaBAR` (offsets 8-byte aligned, QEMU and
    /// Linux like them page aligned). Call `install(in:)` to put it in config space, and include
    /// `regions` in the device's `barRegions()`.
    public init(vectorCount: Int, tableBAR: Int, tableOffset: UInt32, pbaBAR: Int, pbaOffset: UInt32,
                delivery: any MSIDelivery) throws(DeviceError) {
        guard (1...Self.maxVectors).contains(vectorCount) else {
            throw DeviceError(.invalidRange, "MSI-X vector count \(vectorCount), must be 1...\(Self.maxVectors)")
        }
        guard (0..<PCIConfigurationSpace.barCount).contains(tableBAR), (0..<PCIConfigurationSpace.barCount).contains(pbaBAR) else {
            throw DeviceError(.invalidRange, "MSI-X BAR indicator out of 0...5")
        }
        guard tableOffset & 7 == 0, pbaOffset & 7 == 0 else {
            throw DeviceError(.invalidRange, "MSI-X table and PBA offsets must be 8-byte aligned")
        }
        if tableBAR == pbaBAR {
            let t = UInt64(tableOffset) ..< UInt64(tableOffset) + Self.tableSize(vectors: vectorCount)
            let p = UInt64(pbaOffset) ..< UInt64(pbaOffset) + Self.pendingBitArraySize(vectors: vectorCount)
            guard !t.overlaps(p) else { throw DeviceError(.overlap, "MSI-X table and PBA overlap in BAR \(tableBAR)") }
        }
        self.vectorCount = vectorCount
        self.tableBAR = tableBAR
        self.tableOffset = tableOffset
        self.pbaBAR = pbaBAR
        self.pbaOffset = pbaOffset
        engine = MSIXEngine(vectorCount: vectorCount, delivery: delivery)
        table = MSIXTable(engine: engine)
        pendingBitArray = MSIXPendingBitArray(engine: engine)
    }

    /// Appends the capability to `configuration`'s list and watches its message control.
    /// Checks that the table and PBA fit in their BARs when those are declared. Returns the
    /// capability's offset.
    @discardableResult
    public func install(in configuration: PCIConfigurationSpace) throws(DeviceError) -> Int {
        for (index, offset, size) in [(tableBAR, UInt64(tableOffset), Self.tableSize(vectors: vectorCount)),
                                      (pbaBAR, UInt64(pbaOffset), Self.pendingBitArraySize(vectors: vectorCount))] {
            if let bar = configuration.bars.first(where: { $0.index == index })?.bar {
                guard bar.kind != .io, offset + size <= bar.size else {
                    throw DeviceError(.invalidRange, "MSI-X structure at \(offset.hexString) (\(size.hexString) bytes) does not fit BAR \(index) (\(bar))")
                }
            }
        }
        let control = UInt16(vectorCount - 1)
        let tableWord = tableOffset | UInt32(tableBAR)
        let pbaWord = pbaOffset | UInt32(pbaBAR)
        let body: [UInt8] = [UInt8(control & 0xFF), UInt8(control >> 8),
                             UInt8(truncatingIfNeeded: tableWord), UInt8(truncatingIfNeeded: tableWord >> 8),
                             UInt8(truncatingIfNeeded: tableWord >> 16), UInt8(truncatingIfNeeded: tableWord >> 24),
                             UInt8(truncatingIfNeeded: pbaWord), UInt8(truncatingIfNeeded: pbaWord >> 8),
                             UInt8(truncatingIfNeeded: pbaWord >> 16), UInt8(truncatingIfNeeded: pbaWord >> 24)]
        // Only enable and function mask (message control bits 15:14) are writable.
        var mask = [UInt8](repeating: 0, count: body.count)
        mask[1] = 0xC0
        let offset = try configuration.addCapability(id: PCICapabilityID.msix, bytes: body, writeMask: mask)
        let engine = self.engine
        configuration.observeWrites(offset: offset + 2, size: 2) { value in
            engine.messageControlWritten(UInt16(truncatingIfNeeded: value))
        }
        engine.setBusMaster(configuration.isBusMasterEnabled)
        configuration.observeWrites(offset: PCIConfigurationSpace.commandOffset, size: 2) { value in
            engine.setBusMaster(UInt16(truncatingIfNeeded: value) & PCIConfigurationSpace.commandBusMaster != 0)
        }
        return offset
    }

    /// The table and PBA as BAR regions, for the device's `barRegions()`.
    public var regions: [PCIBARRegion] {
        [PCIBARRegion(barIndex: tableBAR, offset: UInt64(tableOffset), length: Self.tableSize(vectors: vectorCount), handler: table),
         PCIBARRegion(barIndex: pbaBAR, offset: UInt64(pbaOffset), length: Self.pendingBitArraySize(vectors: vectorCount), handler: pendingBitArray)]
    }

    // MARK: - Device side

    /// Raises `vector`: delivers its message, or marks it pending while it is masked.
    @discardableResult
    public func signal(vector: Int) -> MSIXSignalResult { engine.signal(vector: vector) }

    /// MSI-X enable (message control bit 15).
    public var isEnabled: Bool { engine.state.withLock { $0.enabled } }
    /// Function mask (message control bit 14).
    public var isFunctionMasked: Bool { engine.state.withLock { $0.functionMasked } }

    /// Whether `vector` is masked in its table entry.
    public func isMasked(vector: Int) -> Bool {
        guard vector >= 0, vector < vectorCount else { return true }
        return engine.state.withLock { $0.isVectorMasked(vector) }
    }

    /// Whether `vector` waits in the PBA.
    public func isPending(vector: Int) -> Bool {
        guard vector >= 0, vector < vectorCount else { return false }
        return engine.state.withLock { $0.isPending(vector) }
    }

    /// The message address and data the guest programmed for `vector`.
    public func message(vector: Int) -> (address: UInt64, data: UInt32)? {
        guard vector >= 0, vector < vectorCount else { return nil }
        return engine.state.withLock { $0.message(vector) }
    }
}

/// The MSI-X vector table of one `MSIXCapability`, as an MMIO handler inside a BAR: offset 0 is
/// entry 0's message address low dword.
public final class MSIXTable: MMIODevice {
    private let engine: MSIXEngine

    init(engine: MSIXEngine) {
        self.engine = engine
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        engine.readTable(offset: offset, into: data)
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        engine.writeTable(offset: offset, data: data)
    }
}

/// The MSI-X pending bit array of one `MSIXCapability`, as an MMIO handler: offset 0 is the
/// qword holding vectors 0...63.
public final class MSIXPendingBitArray: MMIODevice {
    private let engine: MSIXEngine

    init(engine: MSIXEngine) {
        self.engine = engine
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        engine.readPendingBits(offset: offset, into: data)
    }

    /// The PBA is read-only; writes are ignored (PCI 3.0 §6.8.2.10).
    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {}
}

/// The state shared by a capability, its table and its PBA (so the MMIO handlers need no back
/// reference to the capability), and the masking rules.
final class MSIXEngine: Sendable {
    static let enableBit: UInt16 = 1 << 15
    static let functionMaskBit: UInt16 = 1 << 14
    static let vectorMaskBit: UInt32 = 1

    struct State: ~Copyable {
        /// Four dwords per vector: address low, address high, data, vector control.
        var entries: [UInt32]
        var pending: [UInt64]
        var enabled = false
        var functionMasked = false
        /// Command register bit 2, mirrored by a config write observer.
        var busMaster = false

        init(vectors: Int) {
            entries = Array(repeating: 0, count: 4 * vectors)
            for v in 0..<vectors { entries[4 * v + 3] = MSIXEngine.vectorMaskBit }
            pending = Array(repeating: 0, count: (vectors + 63) / 64)
        }

        func isPending(_ v: Int) -> Bool { pending[v >> 6] & (1 << UInt64(v & 63)) != 0 }
        func isVectorMasked(_ v: Int) -> Bool { entries[4 * v + 3] & MSIXEngine.vectorMaskBit != 0 }
        func message(_ v: Int) -> (address: UInt64, data: UInt32) {
            (UInt64(entries[4 * v + 1]) << 32 | UInt64(entries[4 * v]), entries[4 * v + 2])
        }
        mutating func setPending(_ v: Int, _ on: Bool) {
            if on { pending[v >> 6] |= 1 << UInt64(v & 63) } else { pending[v >> 6] &= ~(1 << UInt64(v & 63)) }
        }
    }

    let state: Mutex<State>
    let delivery: any MSIDelivery
    let vectorCount: Int

    init(vectorCount: Int, delivery: any MSIDelivery) {
        self.vectorCount = vectorCount
        self.delivery = delivery
        state = Mutex(State(vectors: vectorCount))
    }

    func signal(vector: Int) -> MSIXSignalResult {
        guard vector >= 0, vector < vectorCount else { return .disabled }
        return state.withLock { s in
            guard s.enabled else { return .disabled }
            if s.functionMasked || s.isVectorMasked(vector) {
                s.setPending(vector, true)
                return .pending
            }
            guard s.busMaster else { return .blocked }
            // One message covers an event still pending from before (bus mastering was off).
            s.setPending(vector, false)
            let m = s.message(vector)
            delivery.deliver(address: m.address, data: m.data)
            return .delivered
        }
    }

    func messageControlWritten(_ control: UInt16) {
        state.withLock { s in
            s.enabled = control & Self.enableBit != 0
            s.functionMasked = control & Self.functionMaskBit != 0
            deliverUnmaskedPending(&s)
        }
    }

    func setBusMaster(_ on: Bool) {
        state.withLock { s in
            s.busMaster = on
            deliverUnmaskedPending(&s)
        }
    }

    /// Sends every pending vector that nothing masks any longer.
    private func deliverUnmaskedPending(_ s: inout State) {
        guard s.enabled, !s.functionMasked, s.busMaster else { return }
        for word in s.pending.indices where s.pending[word] != 0 {
            for bit in 0..<64 where s.pending[word] & (1 << UInt64(bit)) != 0 {
                let v = word * 64 + bit
                if !s.isVectorMasked(v) { deliverPending(v, &s) }
            }
        }
    }

    /// Sends a pending vector's message now that nothing masks it (PCI 3.0 §6.8.2.9). With bus
    /// mastering off the message cannot go out; it stays pending until the next unmask.
    private func deliverPending(_ v: Int, _ s: inout State) {
        guard s.busMaster else { return }
        s.setPending(v, false)
        let m = s.message(v)
        delivery.deliver(address: m.address, data: m.data)
    }

    /// A table load: any width up to 8 bytes, assembled from the dwords it covers.
    func readTable(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        state.withLock { s in
            for i in 0..<data.count {
                let byte = offset &+ UInt64(i)
                let dword = Int(truncatingIfNeeded: byte >> 2)
                data[i] = dword < s.entries.count ? UInt8(truncatingIfNeeded: s.entries[dword] >> (8 * (byte & 3))) : 0
            }
        }
    }

    /// A table store: each covered dword is merged with the bytes written and then takes
    /// effect (dword and qword stores are what the spec allows; narrower ones are merged).
    func writeTable(offset: UInt64, data: UnsafeRawBufferPointer) {
        state.withLock { s in
            var i = 0
            while i < data.count {
                let byte = offset &+ UInt64(i)
                let dword = Int(truncatingIfNeeded: byte >> 2)
                var value = dword < s.entries.count ? s.entries[dword] : 0
                var j = Int(byte & 3)
                while j < 4 && i < data.count {
                    value = value & ~(0xFF << (8 * UInt32(j))) | UInt32(data[i]) << (8 * UInt32(j))
                    j += 1
                    i += 1
                }
                if dword < s.entries.count { storeTableDword(dword, value, &s) }
            }
        }
    }

    private func storeTableDword(_ dword: Int, _ value: UInt32, _ s: inout State) {
        guard dword & 3 == 3 else {
            s.entries[dword] = value
            return
        }
        // Vector control: only the mask bit exists; unmasking releases a pending message.
        let v = dword >> 2
        s.entries[dword] = value & Self.vectorMaskBit
        if value & Self.vectorMaskBit == 0, s.isPending(v), s.enabled, !s.functionMasked {
            deliverPending(v, &s)
        }
    }

    func readPendingBits(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        state.withLock { s in
            for i in 0..<data.count {
                let byte = offset &+ UInt64(i)
                let qword = Int(truncatingIfNeeded: byte >> 3)
                data[i] = qword < s.pending.count ? UInt8(truncatingIfNeeded: s.pending[qword] >> (8 * (byte & 7))) : 0
            }
        }
    }
}
