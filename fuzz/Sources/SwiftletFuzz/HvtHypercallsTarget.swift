import GuestMemory
import Host
@testable import VMM
#if canImport(Glibc)
import Glibc
#endif

extension FuzzTargets {
    /// The Solo5 hvt hypercall handlers (ABI 2, Solo5 v0.12.1: WALLTIME, PUTS, POLL, BLOCK_WRITE,
    /// BLOCK_READ, NET_WRITE, NET_READ, HALT) as the tender's exit loop calls them, over 64 KiB of
    /// fuzzed guest RAM between guard pages. Devices by manifest handle: 0 the reserved entry,
    /// 1 a 2 KiB block device, 2 the same read-only, 3 a network device on a tap that lives in a
    /// network namespace of this process's own (down, so writes fail and reads find nothing; when
    /// the namespace or the tap cannot be made, e.g. without root, handle 3 is empty and the net
    /// calls only reach their handle checks). PUTS goes to /dev/null; POLL's timeout is forced to
    /// 0 in guest memory before the call, so no input sleeps.
    ///
    /// Input: a byte n (1 + n % 16 calls), then per call one byte (the port offset from 0x500, mod
    /// 10: 0 and 9 are ports the exit loop refuses) and a u32 argument address (OUTL carries 32
    /// bits); the rest of the input is guest RAM from address 0. The sequence ends at HALT or at
    /// the first guest fault, as a run does. Checks: a fault is one line, results are Solo5's
    /// codes, a NET_READ never reports more bytes than the guest's buffer, and nothing is written
    /// outside guest RAM (the guard pages).
    static let hvtHypercalls = FuzzTarget(
        name: "hvt-hypercalls",
        summary: "Solo5 hvt hypercall handlers (walltime, puts, poll, block, net, halt) over fuzzed guest RAM"
    ) { bytes in
        var input = FuzzInput(bytes)
        let count = 1 + Int(input.byte()) % 16
        var calls: [(offset: UInt16, address: UInt64)] = []
        for _ in 0..<count { calls.append((UInt16(input.byte()) % 10, UInt64(input.integer(UInt32.self)))) }
        let fixture = HvtHypercallsFixture.shared
        let ram = fixture.ram.filled(with: input.remaining)
        fixture.resetDisk()

        for call in calls {
            // The exit loop's own refusal of a port that is no hypercall.
            guard let number = HvtHypercalls.Number(rawValue: call.offset) else { return }
            let bufferLength = try? ram.load(UInt64.self, at: GuestAddress(call.address + 16))
            do throws(HvtGuestFault) {
                if number == .halt {
                    _ = try fixture.calls.halt(argument: call.address)
                    return
                }
                if number == .poll { try? ram.store(UInt64(0), at: GuestAddress(call.address)) }
                try fixture.calls.handle(number, argument: call.address)
            } catch {
                requireOneLine(error.message, "hypercall \(number)")
                return
            }
            HvtHypercallsFixture.checkResult(of: number, at: call.address, bufferLength: bufferLength ?? 0, in: ram)
        }
    }
}

/// What the hypercall target builds once: RAM, the hypercall handlers and their devices.
final class HvtHypercallsFixture: @unchecked Sendable {
    static let shared = HvtHypercallsFixture()
    static let blockSize = 2048

    let ram = GuardedGuestRAM(regionSizes: [64 << 10])
    let calls: HvtHypercalls
    // The devices, held here too: inside `HvtDevice?` their pointers carry the enum's tag bits,
    // which LeakSanitizer does not see through (it would report them leaked at exit).
    private let disks: [HvtBlockDevice]
    private let net: HvtNetDevice?
    private let zeros = [UInt8](repeating: 0, count: HvtHypercallsFixture.blockSize)

    private init() {
        let console = try! FileDescriptor.open("/dev/null", flags: O_WRONLY)
        // Two small images, created here, opened and unlinked at once: nothing is left behind and
        // no input names a host path.
        disks = [false, true].map { readOnly in
            let path = "/tmp/swiftlet-fuzz-hvt-\(getpid())-\(readOnly ? "ro" : "rw").img"
            let file = try! FileDescriptor.open(path, flags: O_RDWR | O_CREAT | O_TRUNC, mode: 0o600)
            precondition(ftruncate(file.rawValue, off_t(Self.blockSize)) == 0)
            defer { unlink(path) }
            return try! HvtBlockDevice(.init(name: readOnly ? "ro" : "storage", path: path, readOnly: readOnly))
        }
        net = Self.privateNet()
        let devices: [HvtDevice?] = [nil, .block(disks[0]), .block(disks[1]), net.map { .net($0) }]
        calls = try! HvtHypercalls(memory: ram.memory, devices: devices, counters: devices.map { _ in DeviceCounters() },
                                   console: console)
    }

    /// A network device on a tap in a new network namespace (this thread's, which is the one
    /// libFuzzer runs inputs on): the host's network never sees it. Nil when that is not allowed.
    private static func privateNet() -> HvtNetDevice? {
        // Glibc's module hides unshare (it needs _GNU_SOURCE): look the C function up instead.
        typealias Unshare = @convention(c) (Int32) -> Int32
        let cloneNewNet: Int32 = 0x4000_0000
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "unshare"),
              unsafeBitCast(symbol, to: Unshare.self)(cloneNewNet) == 0,
              let tap = try? TapDevice(name: "swfuzz0", mustExist: false) else { return nil }
        // The device adopts a descriptor of its own; `tap` closes the first one.
        let descriptor = dup(tap.fd.rawValue)
        return try? HvtNetDevice(.init(name: "service", interface: "@\(descriptor)", mac: [2, 0, 0, 0, 0, 1]))
    }

    /// The writable image back to zeros, so every input sees the same disk.
    func resetDisk() {
        zeros.withUnsafeBytes { try! disks[0].file.pwrite($0, at: 0) }
    }

    /// Traps unless a call that returned left a result a guest may read: a Solo5 code, and for
    /// NET_READ no more bytes than the buffer it offered (`bufferLength`, read before the call).
    static func checkResult(of number: HvtHypercalls.Number, at address: UInt64, bufferLength: UInt64, in ram: GuestMemory) {
        let resultOffset: UInt64
        switch number {
        case .blockRead, .blockWrite: resultOffset = 32
        case .netRead, .netWrite: resultOffset = 24
        default: return
        }
        let result = try! ram.load(Int32.self, at: GuestAddress(address + resultOffset))
        guard [HvtHypercalls.ok, HvtHypercalls.again, HvtHypercalls.invalid, HvtHypercalls.unspecified].contains(result) else {
            fatalError("\(number): result \(result) is no Solo5 code")
        }
        if number == .netRead, result == HvtHypercalls.ok {
            let received = try! ram.load(UInt64.self, at: GuestAddress(address + 16))
            if received > bufferLength { fatalError("NET_READ: \(received) bytes reported into a \(bufferLength)-byte buffer") }
        }
    }
}
