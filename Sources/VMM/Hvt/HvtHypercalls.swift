import GuestMemory
import Host
import Hypervisor
#if canImport(Glibc)
import Glibc
#endif

/// A guest request that breaks the ABI (a pointer outside its memory, an unknown call): the run
/// ends with exit status 1 and this one-line message.
struct HvtGuestFault: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// The hvt hypercalls (Solo5 hvt_abi.h): OUTL of a 32-bit guest address to port 0x500 + number.
/// Every argument struct and every buffer it names is checked against guest memory before use;
/// handlers allocate nothing.
final class HvtHypercalls {
    static let portBase: UInt16 = 0x500
    enum Number: UInt16 {
        case walltime = 1, puts, poll, blockWrite, blockRead, netWrite, netRead, halt
    }
    // Solo5 result codes (solo5.h).
    static let ok: Int32 = 0, again: Int32 = 1, invalid: Int32 = 2, unspecified: Int32 = 3

    let memory: GuestMemory
    let devices: [HvtDevice?]
    let poller: Poller
    let console: any ConsoleSink
    /// Whether the vCPU that makes these calls was kicked (a pause or a stop): a POLL then returns
    /// at once rather than sleep through its timeout. Nil without a vCPU (the fuzz target).
    var kickPending: (() -> Bool)?
    /// Per manifest entry (nil for unattached entries), for metrics.
    let counters: [DeviceCounters]
    /// Bit i set when net device i has input; filled by the poller callback.
    private var readySet: UInt64 = 0

    /// - Parameter counters: per manifest entry, shared with the network ring.
    init(memory: GuestMemory, devices: [HvtDevice?], counters: [DeviceCounters], console: any ConsoleSink) throws(VMMError) {
        self.counters = counters
        self.memory = memory
        self.devices = devices
        self.console = console
        do {
            poller = try Poller()
            for (index, device) in devices.enumerated() {
                if case .net(let net)? = device { try poller.add(net.tap.fd.rawValue, token: UInt64(index)) }
            }
        } catch { throw VMMError(.host, "\(error)") }
    }

    /// The argument struct of `size` bytes at `address`, or a fault when it is not guest memory.
    @inline(__always)
    private func argument(_ address: UInt64, _ size: UInt64, _ call: StaticString) throws(HvtGuestFault) -> UnsafeMutableRawBufferPointer {
        do { return try memory.bytes(at: GuestAddress(address), count: size) } catch {
            throw HvtGuestFault("invalid guest memory access in \(call) hypercall: \(error)")
        }
    }

    @inline(__always)
    private func buffer(_ address: UInt64, _ length: UInt64, _ call: StaticString) throws(HvtGuestFault) -> UnsafeMutableRawBufferPointer {
        do { return try memory.bytes(at: GuestAddress(address), count: length) } catch {
            throw HvtGuestFault("invalid guest buffer in \(call) hypercall: \(error)")
        }
    }

    /// Handles every hypercall but HALT. `stopRequested` lets a long poll end early on a kick.
    @inline(__always)
    func handle(_ number: Number, argument address: UInt64) throws(HvtGuestFault) {
        switch number {
        case .walltime:
            let a = try argument(address, 8, "WALLTIME")
            a.storeBytes(of: Clock.realtimeNanoseconds(), toByteOffset: 0, as: UInt64.self)

        case .puts:
            let a = try argument(address, 16, "PUTS")
            let data = a.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
            let length = a.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            let text = try buffer(data, length, "PUTS")
            console.write(UnsafeRawBufferPointer(text))

        case .poll:
            let a = try argument(address, 24, "POLL")
            let timeout = a.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
            readySet = 0
            let completed = if let kickPending {
                poller.wait(timeoutNanoseconds: timeout, interruptibleBy: VCPU.kickSignal, unless: kickPending) { token in
                    if token < 64 { self.readySet |= 1 << token }
                }
            } else {
                poller.wait(timeoutNanoseconds: timeout) { token in
                    if token < 64 { self.readySet |= 1 << token }
                }
            }
            a.storeBytes(of: readySet, toByteOffset: 8, as: UInt64.self)
            a.storeBytes(of: Int32(completed ? readySet.nonzeroBitCount : 0), toByteOffset: 16, as: Int32.self)

        case .blockWrite, .blockRead:
            let isWrite = number == .blockWrite
            let a = try argument(address, 40, isWrite ? "BLOCK_WRITE" : "BLOCK_READ")
            let handle = a.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
            let offset = a.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            let data = a.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
            let length = a.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
            guard handle < UInt64(devices.count), case .block(let disk)? = devices[Int(handle)],
                  disk.accepts(offset: offset, length: length) else {
                a.storeBytes(of: Self.invalid, toByteOffset: 32, as: Int32.self)
                return
            }
            let bytes = try buffer(data, length, isWrite ? "BLOCK_WRITE" : "BLOCK_READ")
            var result = Self.ok
            do {
                if isWrite {
                    // A read-only device fails the write as a host write error would (Solo5
                    // has no read-only status): the guest sees EUNSPEC, the file is untouched.
                    guard !disk.readOnly else { throw HostError("pwrite", errno: EROFS) }
                    try disk.file.pwrite(UnsafeRawBufferPointer(bytes), at: offset)
                    // Solo5 has no flush: a write the guest sees complete must be durable, so it
                    // completes only once fdatasync has returned (a power cut loses nothing the
                    // guest was told was written; DurabilityTests check the order).
                    try disk.file.syncData()
                } else if try disk.file.pread(into: bytes, at: offset) != bytes.count {
                    result = Self.unspecified
                }
            } catch {
                result = Self.unspecified
            }
            a.storeBytes(of: result, toByteOffset: 32, as: Int32.self)
            if result == Self.ok { counters[Int(handle)].record(intoGuest: isWrite ? 0 : length, fromGuest: isWrite ? length : 0) }

        case .netWrite:
            let a = try argument(address, 32, "NET_WRITE")
            let handle = a.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
            let data = a.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            let length = a.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
            guard handle < UInt64(devices.count), case .net(let nic)? = devices[Int(handle)],
                  length > 0, length <= nic.maxFrame else {
                a.storeBytes(of: Self.invalid, toByteOffset: 24, as: Int32.self)
                return
            }
            let frame = try buffer(data, length, "NET_WRITE")
            let result: Int32 = (try? nic.tap.write(UnsafeRawBufferPointer(frame))) != nil ? Self.ok : Self.unspecified
            if result == Self.ok { counters[Int(handle)].record(fromGuest: length) }
            a.storeBytes(of: result, toByteOffset: 24, as: Int32.self)

        case .netRead:
            let a = try argument(address, 32, "NET_READ")
            let handle = a.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
            let data = a.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            let length = a.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
            guard handle < UInt64(devices.count), case .net(let nic)? = devices[Int(handle)], length > 0 else {
                a.storeBytes(of: Self.invalid, toByteOffset: 24, as: Int32.self)
                return
            }
            let frame = try buffer(data, length, "NET_READ")
            var result = Self.ok
            do {
                if let n = try nic.tap.read(into: frame) {
                    // Never more than the guest's buffer (a tap reports a longer frame's length).
                    let received = min(UInt64(n), length)
                    a.storeBytes(of: received, toByteOffset: 16, as: UInt64.self)
                    counters[Int(handle)].record(intoGuest: received)
                } else {
                    result = Self.again
                }
            } catch {
                result = Self.unspecified
            }
            a.storeBytes(of: result, toByteOffset: 24, as: Int32.self)

        case .halt:
            break // handled by the exit loop: it ends the run
        }
    }

    /// Reads HALT's exit status (the cookie, a trap-frame hint, is not needed to exit).
    /// HALT's exit status and cookie (struct hvt_hc_halt: u64 cookie, int exit_status). A
    /// cookie (a trap frame the guest saved, Solo5's PANIC) must name HVT_HALT_COOKIE_MAX = 512
    /// bytes of guest memory, as solo5-hvt checks; nil when the guest passed none.
    func halt(argument address: UInt64) throws(HvtGuestFault) -> (status: Int32, cookie: UInt64?) {
        let a = try argument(address, 16, "HALT")
        let status = a.loadUnaligned(fromByteOffset: 8, as: Int32.self)
        let cookie = a.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
        guard cookie != 0 else { return (status, nil) }
        _ = try argument(cookie, Self.haltCookieSize, "HALT (cookie)")
        return (status, cookie)
    }

    /// HVT_HALT_COOKIE_MAX: the bytes a HALT cookie may point to.
    static let haltCookieSize: UInt64 = 512
}
