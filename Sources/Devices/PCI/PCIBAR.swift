import VMSpec
/// One base address register as a device declares it: what it decodes and how big it is.
///
/// Sizes are powers of two, and a BAR is always naturally aligned to its size: that is how the
/// guest sizes it (it writes all ones and reads back which address bits stuck), PCI Local Bus
/// 3.0 §6.2.5.1.
public struct PCIBAR: Sendable, Equatable, CustomStringConvertible {
    /// The address space a BAR decodes.
    public enum Kind: Sendable, Equatable {
        /// Memory anywhere below 4 GiB (one register).
        case memory32
        /// Memory anywhere in the 64-bit space (this register and the next one).
        case memory64
        /// x86 I/O ports (the guest sees the type; the VMM dispatches nothing through them yet).
        case io
    }

    public var kind: Kind
    /// Bytes decoded: a power of two, at least 16 for memory and 4 for I/O.
    public var size: UInt64
    /// Reads have no side effects, so the guest may map it write-combining (memory BARs only).
    public var prefetchable: Bool

    /// A 32-bit memory BAR of `size` bytes (16 bytes ... 2 GiB).
    public static func memory32(size: UInt64, prefetchable: Bool = false) -> PCIBAR {
        PCIBAR(kind: .memory32, size: size, prefetchable: prefetchable)
    }

    /// A 64-bit memory BAR of `size` bytes (16 bytes ... 2^63); it also uses the next register.
    public static func memory64(size: UInt64, prefetchable: Bool = false) -> PCIBAR {
        PCIBAR(kind: .memory64, size: size, prefetchable: prefetchable)
    }

    /// An I/O BAR of `size` ports (4 ... 256, the PCI limit for one I/O BAR).
    public static func io(size: UInt64) -> PCIBAR {
        PCIBAR(kind: .io, size: size, prefetchable: false)
    }

    public init(kind: Kind, size: UInt64, prefetchable: Bool) {
        self.kind = kind
        self.size = size
        self.prefetchable = prefetchable
    }

    /// The read-only low bits of the register (PCI 3.0 §6.2.5.1): bit 0 I/O, bits 2:1 memory
    /// type (00 32-bit, 10 64-bit), bit 3 prefetchable.
    var typeBits: UInt32 {
        switch kind {
        case .io: 0x1
        case .memory32: prefetchable ? 0x8 : 0x0
        case .memory64: prefetchable ? 0xC : 0x4
        }
    }

    /// Registers this BAR occupies.
    var registerCount: Int { kind == .memory64 ? 2 : 1 }

    public var description: String {
        let kindName = switch kind {
        case .memory32: "mem32"
        case .memory64: "mem64"
        case .io: "io"
        }
        return "\(kindName) \(size.hexString)\(prefetchable ? " prefetchable" : "")"
    }
}

/// A change in where a BAR decodes, reported by `PCIConfigurationSpace.observeBARMappings`.
///
/// A BAR decodes (is "mapped") when its command-register enable bit is set (memory space for
/// memory BARs, I/O space for I/O BARs), its address is not zero, and its range does not reach
/// the top of its address space (that is where a BAR sits while the guest sizes it with all
/// ones). So one event covers every reason a mapping appears, moves or disappears: a BAR write,
/// or the guest toggling decode around BAR sizing.
public struct PCIBARMapping: Sendable, Equatable {
    /// The BAR's register index (0...5; a 64-bit BAR is named by its lower register).
    public var index: Int
    public var bar: PCIBAR
    /// Where it decoded before this change, or nil when it did not.
    public var oldAddress: UInt64?
    /// Where it decodes now, or nil when it no longer does.
    public var newAddress: UInt64?

    public init(index: Int, bar: PCIBAR, oldAddress: UInt64?, newAddress: UInt64?) {
        self.index = index
        self.bar = bar
        self.oldAddress = oldAddress
        self.newAddress = newAddress
    }
}

/// A piece of a device's BAR served by one MMIO handler: `handler` sees offsets relative to
/// `offset` within the BAR. A BAR may hold several regions (say virtio structures at 0 and the
/// MSI-X table at 0x2000); the bus registers each at `BAR address + offset` while the BAR decodes.
public struct PCIBARRegion: Sendable {
    /// The BAR register index (0...5).
    public var barIndex: Int
    /// Where the region starts within the BAR.
    public var offset: UInt64
    /// Bytes the region covers; `offset + length` must not exceed the BAR's size.
    public var length: UInt64
    public var handler: any MMIODevice

    public init(barIndex: Int, offset: UInt64 = 0, length: UInt64, handler: any MMIODevice) {
        self.barIndex = barIndex
        self.offset = offset
        self.length = length
        self.handler = handler
    }
}
