import Devices
import ExtensionProtocol
import GuestMemory
import Host
import Synchronization
import VMSpec
#if canImport(Glibc)
import Glibc
#endif

/// A device served by an extension process (Bareflank's extensions, as a process of their own):
/// `--extension PROGRAM` starts it with one end of a socket pair as its descriptor 3; it says
/// hello, claims port and MMIO ranges, and says ready, all before the VM starts; then every guest
/// access to its ranges is a message it answers (docs/abi.md, "Extensions").
///
/// An extension is trusted with nothing: its ranges are checked (no overlap with another device,
/// MMIO only in `mmioWindow`), its memory requests go through `GuestMemory`'s checks and are at
/// most 4 KiB, its messages are decoded strictly, and an access waits for it at most its timeout.
/// When it dies, stalls, sends garbage or breaks the protocol, the device fails: it is killed,
/// one line is logged, and from then on its ranges read as all ones and drop writes, as a device
/// that fell off the bus. The VM and the VMM go on.
///
/// Accesses are served one at a time (a device's registers are not reentrant); a reader thread
/// takes the extension's messages (answers, memory requests, interrupt levels) as they come.
/// Nothing is allocated per access.
final class ExtensionDevice: @unchecked Sendable {
    /// Where extension MMIO ranges may be: above the PCI ECAM (0xE000_0000, 1 MiB) and below
    /// the IOAPIC (0xFEC0_0000), clear of RAM and of the PCI BAR window.
    static let mmioWindow: Range<UInt64> = 0xF000_0000..<0xFEC0_0000
    /// Most ranges one extension may claim.
    static let maximumRanges = 16
    /// How long the extension has for hello, its registrations and ready, together.
    static let setUpMilliseconds = 5000

    let name: String
    private let spec: ExtensionSpec
    private let channel: FileDescriptor
    private let pid: Int32
    /// The extension's process when the VMM started it (a jail moves it into the VM's cgroup).
    var startedProcess: Int32? { isOurs ? pid : nil }
    /// Taken at start: the kill of a failed extension goes through it (never a recycled pid),
    /// and seccomp allows pidfd_send_signal where it refuses kill(2).
    private let process: ProcessDescriptor?
    /// The process is one the VMM started (not one that connected to `listen=PATH`): only then
    /// is it killed and reaped here.
    private let isOurs: Bool
    private let memory: GuestMemory
    private let line: (any InterruptLine)?
    private let log: VMMLog
    private let sendLock = Mutex(())
    /// One message each way, allocated once: the access path allocates nothing.
    private let sendBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: ExtensionMessage.headerSize + ExtensionMessage.maximumData, alignment: 8)
    private let receiveBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: ExtensionMessage.headerSize + ExtensionMessage.maximumData, alignment: 8)

    /// The one access in flight: its id, and the answer once the reader thread has it.
    private struct Exchange {
        var failed = false
        var busy = false
        var nextID: UInt64 = 1
        var awaiting: UInt64 = 0
        var answer: UInt64?
    }
    private let exchange = ConditionLock(Exchange())
    private let failedFlag = Atomic<Bool>(false)

    /// Starts the extension and runs its set-up: hello, registrations (each put on `ports` or
    /// `mmio` at once, so an overlap is found there), ready. A failure of the extension fails its
    /// device and is logged; the VM is built without it. Throws only when the program cannot be
    /// started at all (a user's mistake: a wrong path) or nothing connects to `listen=PATH`, with
    /// the one-line error.
    init(_ spec: ExtensionSpec, confinement: ExtensionSet, ports: IOBus, mmio: MMIOBus, memory: GuestMemory,
         line: (any InterruptLine)?, log: VMMLog) throws(VMMError) {
        self.spec = spec
        self.memory = memory
        self.line = line
        self.log = log
        name = spec.name
        (pid, channel, isOurs) = try Self.start(spec, confinement, log: log)
        process = isOurs ? ProcessDescriptor(pid: pid) : nil
        do throws(ExtensionFailure) {
            try setUp(ports: ports, mmio: mmio)
        } catch {
            fail(error.reason)
            return
        }
        do {
            _ = try HostThread(name: "ext-\(name.split(separator: "/").last?.prefix(10) ?? "")", role: .device) { [self] in serveMessages() }
        } catch { fail("cannot start its thread: \(error)") }
    }

    /// Starts the program with one end of a socket pair, or takes the connection to the socket
    /// of `listen=PATH`; returns the extension's pid, our end, and whether the process is ours
    /// (started here, so killed here). A started program's end is closed here once it has it,
    /// so its exit reads as the end of the stream.
    private static func start(_ spec: ExtensionSpec, _ confinement: ExtensionSet, log: VMMLog) throws(VMMError) -> (Int32, FileDescriptor, Bool) {
        switch spec.origin {
        case .program(let program, let arguments):
            let pair: (FileDescriptor, FileDescriptor)
            do { pair = try UnixSocket.pair() } catch { throw VMMError(.host, "extension \(program): \(error)") }
            do {
                let pid = try HostProcess.spawnHelper(path: program, arguments: arguments, channel: pair.1.rawValue,
                                                      user: confinement.user.map { ($0.uid, $0.gid) },
                                                      policy: confinement.seccomp ? .extensionProcess : nil)
                return (pid, pair.0, true)
            } catch {
                throw VMMError(.configuration, "--extension \(program): \(error)")
            }
        case .socket(let path):
            // The socket exists only until the extension connects: one extension per socket,
            // and nothing is left behind.
            let listener: FileDescriptor
            do { listener = FileDescriptor(owning: try UnixSocket.listen(path: path, backlog: 1)) } catch {
                throw VMMError(.configuration, "--extension listen=\(path): \(error)")
            }
            defer { FileSystem.removeIfPresent([path]) }
            log.info("extension \(path): waiting up to \(ExtensionSpec.connectSeconds) s for it to connect")
            do {
                let (connection, peer) = try UnixSocket.acceptOne(on: listener.rawValue, milliseconds: ExtensionSpec.connectSeconds * 1000)
                return (peer, connection, false)
            } catch {
                throw VMMError(.configuration, "--extension listen=\(path): \(error.errno == ETIMEDOUT ? "no extension connected within \(ExtensionSpec.connectSeconds) s" : "\(error)")")
            }
        }
    }

    deinit {
        stop()
        sendBuffer.deallocate()
        receiveBuffer.deallocate()
    }

    /// Ends the extension (at the VM's end): the process is killed and reaped.
    func stop() {
        failedFlag.store(true, ordering: .relaxed)
        channel.shutdownStream()
        killAndReap()
    }

    private struct ExtensionFailure: Error { let reason: String }

    // MARK: Set-up (before the VM starts)

    private func setUp(ports: IOBus, mmio: MMIOBus) throws(ExtensionFailure) {
        let deadline = Clock.monotonicNanoseconds() + UInt64(Self.setUpMilliseconds) * 1_000_000
        func next() throws(ExtensionFailure) -> ExtensionMessage {
            let left = Int((deadline &- Clock.monotonicNanoseconds()) / 1_000_000)
            guard left > 0, let message = try receive(milliseconds: left, late: "did not finish its set-up within \(Self.setUpMilliseconds) ms") else {
                throw ExtensionFailure(reason: left > 0 ? "exited during its set-up" : "did not finish its set-up within \(Self.setUpMilliseconds) ms")
            }
            return message
        }
        let hello = try next()
        guard hello.kind == .hello else { throw ExtensionFailure(reason: "its first message is not hello") }
        guard hello.value == ExtensionMessage.version else {
            try send(ExtensionMessage(.welcome, value: ExtensionMessage.version, status: -EPROTONOSUPPORT))
            throw ExtensionFailure(reason: "speaks protocol version \(hello.value); this VMM speaks \(ExtensionMessage.version)")
        }
        try send(ExtensionMessage(.welcome, value: ExtensionMessage.version))
        var claimed = 0
        while true {
            let message = try next()
            switch message.kind {
            case .register:
                claimed += 1
                let refusal = claimed > Self.maximumRanges ? "more than \(Self.maximumRanges) ranges"
                    : claim(message, ports: ports, mmio: mmio)
                try send(ExtensionMessage(.reply, id: message.id, status: refusal == nil ? 0 : -EINVAL))
                if let refusal { throw ExtensionFailure(reason: "range refused: \(refusal)") }
            case .ready:
                try send(ExtensionMessage(.reply, id: message.id))
                log.info("extension \(name) (pid \(pid)) ready")
                return
            default:
                throw ExtensionFailure(reason: "sent \(message.kind) during its set-up")
            }
        }
    }

    /// Puts one claimed range on its bus; the reason it cannot, or nil.
    private func claim(_ message: ExtensionMessage, ports: IOBus, mmio: MMIOBus) -> String? {
        let base = message.address, length = message.value
        switch ExtensionMessage.Space(rawValue: message.space) {
        case .port:
            guard length >= 1, base <= 0xFFFF, length <= 0x1_0000 - base else { return "ports \(base.hexString)+\(length)" }
            do { try ports.register(ExtensionRange(self, .port, base: base), base: UInt16(base), length: UInt16(truncatingIfNeeded: length)) } catch {
                return error.description
            }
        case .mmio:
            guard length >= 1, base >= Self.mmioWindow.lowerBound, base < Self.mmioWindow.upperBound,
                  length <= Self.mmioWindow.upperBound - base else {
                return "MMIO \(base.hexString)+\(length) is outside \(Self.mmioWindow.lowerBound.hexString)-\((Self.mmioWindow.upperBound - 1).hexString)"
            }
            do { try mmio.register(ExtensionRange(self, .mmio, base: base), base: base, length: length) } catch {
                return error.description
            }
        case nil:
            return "unknown space \(message.space)"
        }
        return nil
    }

    // MARK: Accesses (vCPU threads)

    /// One guest access: its value for a read (all ones once the device failed).
    func access(_ space: ExtensionMessage.Space, address: UInt64, width: Int, write: Bool, value: UInt64) -> UInt64 {
        let allOnes: UInt64 = width >= 8 ? .max : (1 << (UInt64(width) * 8)) - 1
        if failedFlag.load(ordering: .relaxed) { return allOnes }
        let timeout = spec.timeoutMilliseconds
        // Take the device (one access at a time), then send and wait for the answer.
        guard let id = exchange.wait(until: { !$0.busy || $0.failed }, milliseconds: timeout, then: { state -> UInt64? in
            guard !state.failed else { return nil }
            state.busy = true
            state.answer = nil
            state.awaiting = state.nextID
            state.nextID &+= 1
            return state.awaiting
        }), let id else { return allOnes }
        defer { exchange.withLockBroadcasting { $0.busy = false; $0.awaiting = 0 } }
        let request = ExtensionMessage(.access, id: id, address: address, value: value, width: UInt32(width),
                                       space: space.rawValue, isWrite: write ? 1 : 0)
        do throws(ExtensionFailure) { try send(request) } catch {
            fail(error.reason)
            return allOnes
        }
        let answer = exchange.wait(until: { $0.answer != nil || $0.failed }, milliseconds: timeout) { $0.answer }
        guard let answer, let answer else {
            if answer == nil { fail("did not answer an access within \(timeout) ms") }
            return allOnes
        }
        return answer & allOnes
    }

    // MARK: The extension's messages (its thread)

    private func serveMessages() {
        while !failedFlag.load(ordering: .relaxed) {
            do throws(ExtensionFailure) {
                guard let message = try receive(milliseconds: -1, late: "") else { throw ExtensionFailure(reason: "exited") }
                try handle(message)
            } catch {
                fail(error.reason)
            }
        }
    }

    private func handle(_ message: ExtensionMessage) throws(ExtensionFailure) {
        switch message.kind {
        case .accessDone:
            exchange.withLockBroadcasting { state in
                if state.busy && state.awaiting == message.id { state.answer = message.value }
            }
        case .memRead:
            let length = Int(message.width)
            guard (1...ExtensionMessage.maximumData).contains(length) else { throw ExtensionFailure(reason: "a memory read of \(length) bytes") }
            do {
                let bytes = try memory.read(at: GuestAddress(message.address), count: UInt64(length))
                try send(ExtensionMessage(.memData, id: message.id, address: message.address, width: UInt32(length), data: bytes))
            } catch {
                try send(ExtensionMessage(.memData, id: message.id, address: message.address, status: -EFAULT))
            }
        case .memWrite:
            guard !message.data.isEmpty else { throw ExtensionFailure(reason: "an empty memory write") }
            let status: Int32 = (try? memory.write(message.data, at: GuestAddress(message.address))) == nil ? -EFAULT : 0
            try send(ExtensionMessage(.reply, id: message.id, status: status))
        case .irq:
            guard let line else { throw ExtensionFailure(reason: "raised an interrupt without irq=N") }
            line.setLevel(message.value != 0)
        default:
            throw ExtensionFailure(reason: "sent \(message.kind) while the VM runs")
        }
    }

    // MARK: Transport

    private func send(_ message: ExtensionMessage) throws(ExtensionFailure) {
        let failure: HostError? = sendLock.withLock { _ in
            let size = message.encode(into: sendBuffer)
            do throws(HostError) {
                try channel.sendAll(UnsafeRawBufferPointer(rebasing: sendBuffer[0..<size]), milliseconds: spec.timeoutMilliseconds)
                return nil
            } catch { return error }
        }
        if let failure { throw ExtensionFailure(reason: failure.errno == ETIMEDOUT ? "stopped reading its messages" : "\(failure)") }
    }

    /// The next message, or nil when the extension closed its end; `late` is the failure when
    /// `milliseconds` pass first. One thread at a time (the set-up's, then the reader's).
    private func receive(milliseconds: Int, late: String) throws(ExtensionFailure) -> ExtensionMessage? {
        do throws(ExtensionMessage.ReceiveFailure<HostError>) {
            return try ExtensionMessage.receive(into: receiveBuffer) { (part, inHeader) throws(HostError) in
                try channel.receiveExactly(part, milliseconds: inHeader ? milliseconds : spec.timeoutMilliseconds)
            }
        } catch {
            switch error {
            case .transport(let failure, let inHeader):
                let timedOut = failure.errno == ETIMEDOUT
                throw ExtensionFailure(reason: timedOut ? (inHeader ? late : "stalled inside a message") : "\(failure)")
            case .truncated: throw ExtensionFailure(reason: "closed inside a message")
            case .malformed(let malformed): throw ExtensionFailure(reason: "sent a malformed message (\(malformed.reason))")
            }
        }
    }

    // MARK: Failure

    /// Fails the device once: logs why, wakes a waiting access, kills the process.
    private func fail(_ reason: String) {
        guard !failedFlag.exchange(true, ordering: .relaxed) else { return }
        log.warn("extension \(name) (pid \(pid)) failed: \(reason); its device now reads as all ones, the VM goes on")
        exchange.withLockBroadcasting { $0.failed = true }
        channel.shutdownStream()
        killAndReap()
    }

    private let killed = Atomic<Bool>(false)

    /// Kills the process once. It is reaped only where the process may wait for children
    /// (wait4 is outside the VM process's seccomp policy): in a confined VM process it stays a
    /// zombie until the VMM exits, which is soon after the VM ends.
    private func killAndReap() {
        guard !killed.exchange(true, ordering: .relaxed), isOurs else { return }
        _ = HostProcess.send(SIGKILL, to: pid, descriptor: process)
        guard !Sandbox.isProcessConfined else { return }
        for _ in 0..<200 {
            if HostProcess.reap(pid) != .running { return }
            Clock.sleep(milliseconds: 5)
        }
    }
}

/// One range an extension claimed, as its bus sees it: an access at `offset` is the extension's
/// access at `base + offset`.
final class ExtensionRange: PortIODevice, MMIODevice, @unchecked Sendable {
    private let device: ExtensionDevice
    private let space: ExtensionMessage.Space
    private let base: UInt64

    init(_ device: ExtensionDevice, _ space: ExtensionMessage.Space, base: UInt64) {
        self.device = device
        self.space = space
        self.base = base
    }

    func read(offset: UInt16, size: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: device.access(space, address: base + UInt64(offset), width: size, write: false, value: 0))
    }

    func write(offset: UInt16, size: Int, value: UInt32) {
        _ = device.access(space, address: base + UInt64(offset), width: size, write: true, value: UInt64(value))
    }

    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        let value = device.access(space, address: base &+ offset, width: data.count, write: false, value: 0)
        withUnsafeBytes(of: value.littleEndian) { data.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<min(8, data.count)])) }
    }

    func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        var value: UInt64 = 0
        withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: data[0..<min(8, data.count)])) }
        _ = device.access(space, address: base &+ offset, width: data.count, write: true, value: UInt64(littleEndian: value))
    }
}
