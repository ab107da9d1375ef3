// What the virtio targets (virtqueue, virtio-blk, virtio-net, virtio-vsock, virtio-rng) share:
// guest RAM whose every byte ASan watches, a driver that sets a device up through the real
// virtio-pci transport, and the script of driver and host events a fuzz input plays.
import Devices
import GuestMemory
#if canImport(Glibc)
import Glibc
#endif

/// 64 KiB of guest RAM in two regions, [0, 32 KiB) and [32 KiB, 64 KiB), each borrowed from its
/// own heap allocation. ASan puts red zones around heap blocks, so a device touching one byte
/// outside guest RAM is a report, not a silent write into whatever the mapping sits next to; and
/// the two regions touch in guest-physical space but not on the host, so a buffer the queue lets
/// straddle them is caught too (VIRTIO buffers must lie inside one region). Allocated once.
final class VirtioFuzzRAM: @unchecked Sendable {
    static let shared = VirtioFuzzRAM()
    static let regionSize = 32 << 10
    static let size = 2 * regionSize

    let memory: GuestMemory
    private let hosts: [UnsafeMutableRawPointer]
    /// A copy of the RAM, for "nothing changed" checks.
    private let snapshot = UnsafeMutableRawBufferPointer.allocate(byteCount: VirtioFuzzRAM.size, alignment: 16)

    private init() {
        hosts = (0..<2).map { _ in UnsafeMutableRawPointer.allocate(byteCount: Self.regionSize, alignment: 4096) }
        memory = try! GuestMemory(regions: hosts.enumerated().map { i, host in
            GuestMemoryRegion(base: GuestAddress(UInt64(i * Self.regionSize)), size: UInt64(Self.regionSize), borrowing: host)
        })
    }

    /// Fills the RAM with `bytes` from address 0 (as much as fits), the rest zero.
    func fill(with bytes: UnsafeRawBufferPointer) -> GuestMemory {
        for (i, host) in hosts.enumerated() {
            let start = min(i * Self.regionSize, bytes.count)
            let n = min(bytes.count - start, Self.regionSize)
            if n > 0 { host.copyMemory(from: bytes.baseAddress! + start, byteCount: n) }
            (host + n).initializeMemory(as: UInt8.self, repeating: 0, count: Self.regionSize - n)
        }
        return memory
    }

    /// Whether host memory [pointer, pointer + count) lies inside one region: every buffer the
    /// queue hands a device, and every iovec a device hands its back end, must.
    func contains(_ pointer: UnsafeRawPointer?, count: Int) -> Bool {
        guard let pointer else { return count == 0 }
        return hosts.contains { host in
            let start = UInt(bitPattern: host), at = UInt(bitPattern: pointer)
            return at >= start && count >= 0 && at - start <= UInt(Self.regionSize) && UInt(count) <= UInt(Self.regionSize) - (at - start)
        }
    }

    /// Traps unless [pointer, pointer + count) is guest RAM; `what` names the caller in the report.
    func requireInside(_ pointer: UnsafeRawPointer?, count: Int, _ what: @autoclosure () -> String) {
        if !contains(pointer, count: count) { fatalError("\(what()): \(count) bytes at \(String(describing: pointer)) are not guest RAM") }
    }

    func takeSnapshot() {
        for (i, host) in hosts.enumerated() {
            (snapshot.baseAddress! + i * Self.regionSize).copyMemory(from: host, byteCount: Self.regionSize)
        }
    }

    /// The first guest address that differs from the snapshot, nil when none does.
    func firstChangeSinceSnapshot() -> Int? {
        for (i, host) in hosts.enumerated() {
            let old = snapshot.baseAddress! + i * Self.regionSize
            if memcmp(old, host, Self.regionSize) != 0 {
                for j in 0..<Self.regionSize where old.load(fromByteOffset: j, as: UInt8.self) != host.load(fromByteOffset: j, as: UInt8.self) {
                    return i * Self.regionSize + j
                }
            }
        }
        return nil
    }
}

/// What the driver programs for one queue through the common configuration (4.1.4.3), read from
/// the input as 15 bytes: le16 size, le32 desc, le32 driver area, le32 device area, enable flag.
struct FuzzQueueSetup {
    var size: UInt16
    var descriptors: UInt32
    var driverArea: UInt32
    var deviceArea: UInt32
    var enabled: Bool

    init(_ input: inout FuzzInput) {
        size = input.integer()
        descriptors = input.integer()
        driverArea = input.integer()
        deviceArea = input.integer()
        enabled = input.bool()
    }
}

/// One event of a device target's script: 8 bytes, [kind, arg, le16 a, le32 b].
struct FuzzEvent {
    enum Kind: CaseIterable {
        /// The driver kicks queue `arg % (queues + 1)` (one past the last: a doorbell for no queue).
        case notify
        /// The driver stores le16 `b` at guest address `a` (a new avail.idx, a changed descriptor).
        case store16
        /// The driver stores le32 `b` at guest address `a`.
        case store32
        /// The back end has something (a frame, a host connection); what is the target's business.
        case backend
        /// The driver resets the device and sets it up again the same way.
        case reset
    }

    var kind: Kind
    var arg: UInt8
    var a: UInt16
    var b: UInt32

    init(_ input: inout FuzzInput) {
        kind = input.pick(Kind.allCases)
        arg = input.byte()
        a = input.integer()
        b = input.integer()
    }
}

/// Plays the guest's driver for one device behind the real virtio-pci transport: status
/// handshake, feature negotiation and queue registers through the common configuration (the
/// transport builds and validates the queues on DRIVER_OK), then doorbells delivered the way the
/// VMM's event loop delivers an ioeventfd (VirtioHub: only while the transport is active, then
/// DEVICE_NEEDS_RESET when the device reports a broken queue).
///
/// Input layout it reads: le64 feature bits, 1 flag byte (bit 0: offer the raw bits instead of
/// the offered subset plus VERSION_1), one 15-byte `FuzzQueueSetup` per queue, the event count
/// byte (mod 17), then 16 eight-byte `FuzzEvent` slots (always consumed, so the layout is fixed).
/// The target reads its own bytes next; the rest is guest RAM from address 0.
struct VirtioFuzzDriver {
    static let eventSlots = 16

    let device: any VirtioDevice
    let transport: VirtioPCIDevice
    let ram: VirtioFuzzRAM
    private let common: any MMIODevice
    private var features: UInt64 = 0
    private var queues: [FuzzQueueSetup] = []
    private(set) var events: [FuzzEvent] = []

    init(device: any VirtioDevice, ram: VirtioFuzzRAM = .shared) {
        self.device = device
        self.ram = ram
        transport = try! VirtioPCIDevice(device: device, memory: ram.memory, delivery: NoMSIDelivery(),
                                         onNotify: { _ in },
                                         onError: { message in requireOneLine(message, "virtio-pci DEVICE_NEEDS_RESET") })
        common = transport.barRegions().first { $0.offset == VirtioPCIDevice.commonOffset }!.handler
    }

    /// Reads the driver's part of the input (see the type's comment).
    mutating func read(_ input: inout FuzzInput) {
        let raw = input.integer(UInt64.self)
        let flags = input.byte()
        features = flags & 1 != 0 ? raw : (raw & transport.offeredFeatures) | VirtioFeature.version1
        queues = (0..<device.queueCount).map { _ in FuzzQueueSetup(&input) }
        let count = Int(input.byte()) % (Self.eventSlots + 1)
        let slots = (0..<Self.eventSlots).map { _ in FuzzEvent(&input) }
        events = Array(slots.prefix(count))
    }

    private func write(_ offset: UInt64, _ value: UInt32, size: Int) {
        withUnsafeBytes(of: value.littleEndian) { common.write(offset: offset, data: UnsafeRawBufferPointer(rebasing: $0[0..<size])) }
    }

    private func read(_ offset: UInt64, size: Int) -> UInt32 {
        var value: UInt32 = 0
        withUnsafeMutableBytes(of: &value) { common.read(offset: offset, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<size])) }
        return UInt32(littleEndian: value)
    }

    /// Reset, ACKNOWLEDGE | DRIVER, features, FEATURES_OK, the queue registers, DRIVER_OK (3.1.1),
    /// as Linux's virtio_pci_modern does it.
    func setUp() {
        write(20, 0, size: 1)
        write(20, 1 | 2, size: 1)
        write(8, 0, size: 4); write(12, UInt32(truncatingIfNeeded: features), size: 4)
        write(8, 1, size: 4); write(12, UInt32(truncatingIfNeeded: features >> 32), size: 4)
        write(20, 1 | 2 | 8, size: 1)
        guard read(20, size: 1) & 8 != 0 else { return }  // FEATURES_OK refused: a driver gives up
        for (index, queue) in queues.enumerated() {
            write(22, UInt32(index), size: 2)
            write(24, UInt32(queue.size), size: 2)
            write(32, queue.descriptors, size: 4); write(36, 0, size: 4)
            write(40, queue.driverArea, size: 4); write(44, 0, size: 4)
            write(48, queue.deviceArea, size: 4); write(52, 0, size: 4)
            write(28, queue.enabled ? 1 : 0, size: 2)
        }
        write(20, 1 | 2 | 8 | 4, size: 1)
    }

    /// Runs `body` (a doorbell or a back-end event) as the VMM's event loop does, and checks the
    /// promise that a device stopped by a broken queue leaves guest RAM alone until the reset.
    func deliver(_ body: () -> Void) {
        let stopped = device.needsReset
        if stopped { ram.takeSnapshot() }
        body()
        if stopped, let address = ram.firstChangeSinceSnapshot() {
            fatalError("virtio device \(device.deviceType) wrote guest RAM at \(address) after a queue broke")
        }
        if device.needsReset {
            transport.enterNeedsReset("virtio device \(device.deviceType): a queue is broken; the driver must reset it")
        }
    }

    /// Plays the events in order; `backend` handles `.backend` ones.
    func play(backend: (FuzzEvent) -> Void) {
        setUp()
        for event in events {
            switch event.kind {
            case .notify:
                let queue = Int(event.arg) % (device.queueCount + 1)
                deliver { if transport.isActive { device.queueNotified(queue) } }
            case .store16:
                try? ram.memory.store(UInt16(truncatingIfNeeded: event.b), at: GuestAddress(UInt64(event.a)))
            case .store32:
                try? ram.memory.store(event.b, at: GuestAddress(UInt64(event.a)))
            case .backend:
                deliver { backend(event) }
            case .reset:
                setUp()
            }
        }
        // The driver goes away: what the device holds is released, as on a reboot.
        write(20, 0, size: 1)
    }
}

/// SWIFTLET_FUZZ_VERBOSE=1 makes the virtio targets print what each input did (a request count,
/// the frames moved), to check by hand that a seed reaches what it was written for.
let fuzzVerbose = getenv("SWIFTLET_FUZZ_VERBOSE") != nil

/// Prints `line` when `fuzzVerbose`.
func fuzzLog(_ line: @autoclosure () -> String) {
    if fuzzVerbose { print(line()) }
}

/// Interrupts go nowhere: what the device signals is not what these targets check.
struct NoMSIDelivery: MSIDelivery {
    func deliver(address: UInt64, data: UInt32) {}
}

/// A byte pattern for back ends to fill buffers with: `seed`, `seed + 1`, … so the bytes a device
/// copies are recognisable and still change from one input to the next.
func fillPattern(_ buffer: UnsafeMutableRawBufferPointer, seed: UInt8) {
    for i in 0..<buffer.count { buffer[i] = seed &+ UInt8(truncatingIfNeeded: i) }
}

/// Reads every byte of `buffer` (so ASan checks them) and folds them into a value nobody uses.
@inline(never)
func touch(_ buffer: UnsafeRawBufferPointer) -> UInt8 {
    var sum: UInt8 = 0
    for byte in buffer { sum &+= byte }
    return sum
}
