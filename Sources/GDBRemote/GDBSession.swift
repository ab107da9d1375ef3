/// What the stub debugs: one vCPU's registers, its memory as the guest sees it, and breakpoints.
/// Calls come from the session's thread while the guest is stopped.
public protocol GDBTarget: AnyObject {
    func readRegisters() -> AMD64Registers?
    func writeRegisters(_ registers: AMD64Registers) -> Bool
    /// Up to `count` bytes from guest-virtual `address`: fewer (possibly none) where memory ends.
    func readMemory(at address: UInt64, count: Int) -> [UInt8]
    /// Writes all of `bytes` or nothing; false when any byte is outside guest memory.
    func writeMemory(at address: UInt64, bytes: [UInt8]) -> Bool
    func insertBreakpoint(_ kind: GDBRequest.BreakpointKind, address: UInt64, length: UInt64) -> GDBBreakpointResult
    func removeBreakpoint(_ kind: GDBRequest.BreakpointKind, address: UInt64, length: UInt64) -> GDBBreakpointResult
}

/// A target's answer to Z/z: done, not a kind it has (GDB then falls back), or refused.
public enum GDBBreakpointResult: Sendable {
    case done, unsupported, failed
}

/// The byte stream to the debugger. `receive` blocks; nil means the debugger is gone (or the
/// stub must stop waiting: the transport decides).
public protocol GDBTransport: AnyObject {
    func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int?
    func send(_ bytes: [UInt8]) -> Bool
}

/// Why the guest stopped, as the stub reports it to GDB.
public enum GDBStop: Equatable, Sendable {
    /// Stopped with a signal and no more detail (5 = SIGTRAP at start or after a step, 2 = SIGINT).
    case signal(UInt8)
    case softwareBreakpoint
    case hardwareBreakpoint
    case watchpoint(GDBRequest.BreakpointKind, address: UInt64)
}

/// What the debugger asked the stopped guest to do next.
public enum GDBResume: Equatable, Sendable {
    case resume, step, detach, kill
    /// The connection closed or failed while the guest was stopped.
    case disconnected
}

/// One debugger connection speaking GDB's remote serial protocol over a transport. It serves
/// packets while the guest is stopped (`serve`) and reports how the guest ended; it never
/// trusts a packet: bad checksums get `-`, bad or oversized requests an error reply, unknown
/// ones the empty reply. One thread uses it at a time (the stopped vCPU's, or the watcher while
/// the guest runs).
public final class GDBSession: @unchecked Sendable {
    /// The payload size announced in qSupported (PacketSize, in hex there).
    public static let maximumPacket = 16384
    private let transport: any GDBTransport
    private let target: any GDBTarget
    private var decoder = GDBPacketDecoder(maximumPayload: GDBSession.maximumPacket)
    private var acknowledging = true
    private var stopReasonFeatures = false
    /// Set once GDB read our target description: from then on `g` carries all 65 registers.
    private var described = false
    private var lastStop = GDBStop.signal(5)
    private var lastReply: [UInt8] = []
    private var buffer = [UInt8](repeating: 0, count: 4096)
    /// What follows the name of the `q` packet being answered (`qXfer`'s object and range).
    private var lastArguments: [UInt8]?

    public init(transport: any GDBTransport, target: any GDBTarget) {
        self.transport = transport
        self.target = target
    }

    /// Reports `stop` (unless `announce` is false: the first stop, which GDB asks for with `?`)
    /// and serves requests until the debugger resumes, detaches or kills the guest.
    public func serve(stop: GDBStop, announce: Bool = true) -> GDBResume {
        lastStop = stop
        if announce { reply(stopReply(stop)) }
        while true {
            guard let n = buffer.withUnsafeMutableBytes({ transport.receive(into: $0) }), n > 0 else { return .disconnected }
            var requests: [GDBPacketEvent] = []
            decoder.feed(buffer[0..<n]) { requests.append($0) }
            for event in requests {
                switch event {
                case .packet(let payload):
                    if acknowledging { _ = transport.send([UInt8(ascii: "+")]) }
                    if payload.first == UInt8(ascii: "q"), let colon = payload.firstIndex(of: UInt8(ascii: ":")) {
                        lastArguments = Array(payload[(colon + 1)...])
                    } else {
                        lastArguments = nil
                    }
                    if let resume = handle(GDBRequest(payload)) { return resume }
                case .badChecksum:
                    if acknowledging { _ = transport.send([UInt8(ascii: "-")]) }
                case .tooLong:
                    if acknowledging { _ = transport.send([UInt8(ascii: "+")]) }
                    reply("E01")
                case .nak:
                    if acknowledging, !lastReply.isEmpty { _ = transport.send(lastReply) }
                case .ack, .interrupt:
                    break
                }
            }
        }
    }

    /// Tells the debugger the guest exited with `status` (GDB prints "exited with code N").
    public func reportExit(status: Int32) {
        reply("W" + hex2(UInt8(truncatingIfNeeded: status)))
    }

    /// Tells the debugger the guest was ended by `signal` (a fault the tender ended it for).
    public func reportTermination(signal: UInt8) {
        reply("X" + hex2(signal))
    }

    /// Feeds bytes that arrived while the guest ran (the Ctrl-C watcher reads them); true when
    /// they held an interrupt request.
    public func takeRunningInput(_ bytes: ArraySlice<UInt8>) -> Bool {
        var interrupted = false
        decoder.feed(bytes) { if $0 == .interrupt { interrupted = true } }
        return interrupted
    }

    // MARK: Requests

    /// Answers one request; a non-nil result ends `serve`.
    private func handle(_ request: GDBRequest) -> GDBResume? {
        switch request {
        case .haltReason:
            reply(stopReply(lastStop))
        case .readRegisters:
            guard let r = target.readRegisters() else { reply("E01"); break }
            reply(Hex.encode(described ? r.bytes[...] : r.bytes.prefix(AMD64Registers.builtinByteCount)))
        case .writeRegisters(let data):
            guard var r = target.readRegisters() else { reply("E01"); break }
            r.overwrite(with: data)
            reply(target.writeRegisters(r) ? "OK" : "E01")
        case .readRegister(let n):
            guard n < AMD64Registers.count, let r = target.readRegisters() else { reply("E01"); break }
            reply(Hex.encode(r.bytes(of: n)))
        case .writeRegister(let n, let value):
            guard n < AMD64Registers.count, value.count == AMD64Registers.size(of: n),
                  var r = target.readRegisters() else { reply("E01"); break }
            r.set(n, bytes: value)
            reply(target.writeRegisters(r) ? "OK" : "E01")
        case .readMemory(let address, let length):
            // A reply holds two hex digits a byte; longer requests get what fits (GDB asks again).
            let count = Int(min(length, UInt64(Self.maximumPacket / 2)))
            let bytes = target.readMemory(at: address, count: count)
            if bytes.isEmpty && count > 0 { reply("E14") } else { reply(Hex.encode(bytes)) }
        case .writeMemory(let address, let bytes):
            reply(target.writeMemory(at: address, bytes: bytes) ? "OK" : "E14")
        case .resume(let address), .step(let address):
            if let address {
                guard var r = target.readRegisters() else { reply("E01"); break }
                r[.rip] = address
                guard target.writeRegisters(r) else { reply("E01"); break }
            }
            if case .step = request { return .step }
            return .resume
        case .insertBreakpoint(let kind, let address, let length):
            replyBreakpoint(target.insertBreakpoint(kind, address: address, length: length))
        case .removeBreakpoint(let kind, let address, let length):
            replyBreakpoint(target.removeBreakpoint(kind, address: address, length: length))
        case .detach:
            reply("OK")
            return .detach
        case .kill:
            // GDB does not wait for an answer to `k`; vKill expects OK.
            reply("OK")
            return .kill
        case .querySupported:
            // The stop reasons swbreak/hwbreak tell GDB the pc needs no adjusting after a trap.
            stopReasonFeatures = true
            reply("PacketSize=\(String(Self.maximumPacket, radix: 16));QStartNoAckMode+;swbreak+;hwbreak+;qXfer:features:read+")
        case .startNoAckMode:
            reply("OK")
            acknowledging = false
        case .query(let name):
            switch name {
            case "qAttached": reply("1")             // detach, not kill, when GDB quits
            case "qC": reply("QC1")
            case "qfThreadInfo": reply("m1")
            case "qsThreadInfo": reply("l")
            case "qOffsets": reply("Text=0;Data=0;Bss=0")
            case "qXfer": reply(transferFeatures(request))
            default: reply("")
            }
        case .setThread, .threadAlive:
            reply("OK")
        case .malformed:
            reply("E01")
        case .unsupported:
            reply("")
        }
        return nil
    }

    /// `qXfer:features:read:target.xml:OFFSET,LENGTH`: a piece of the target description, `m`
    /// when more follows, `l` for the last.
    private func transferFeatures(_ request: GDBRequest) -> [UInt8] {
        guard case .query = request, let arguments = lastArguments,
              arguments.starts(with: Array("features:read:target.xml:".utf8)) else { return [] }
        let range = arguments.dropFirst("features:read:target.xml:".utf8.count)
        let parts = range.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
        guard parts.count == 2, let offset = Hex.number(parts[0]), let length = Hex.number(parts[1]) else { return Array("E01".utf8) }
        let document = Array(AMD64Registers.targetDescription.utf8)
        described = true
        guard offset < UInt64(document.count) else { return [UInt8(ascii: "l")] }
        let end = Int(min(UInt64(document.count), offset + min(length, UInt64(Self.maximumPacket / 2))))
        let piece = document[Int(offset)..<end]
        return [end == document.count ? UInt8(ascii: "l") : UInt8(ascii: "m")] + piece
    }

    private func replyBreakpoint(_ result: GDBBreakpointResult) {
        switch result {
        case .done: reply("OK")
        case .unsupported: reply("")
        case .failed: reply("E01")
        }
    }

    private func stopReply(_ stop: GDBStop) -> String {
        switch stop {
        case .signal(let s): return "S" + hex2(s)
        case .softwareBreakpoint: return stopReasonFeatures ? "T05swbreak:;" : "S05"
        case .hardwareBreakpoint: return stopReasonFeatures ? "T05hwbreak:;" : "S05"
        case .watchpoint(let kind, let address):
            let name = kind == .readWatch ? "rwatch" : kind == .accessWatch ? "awatch" : "watch"
            return "T05\(name):\(String(address, radix: 16));"
        }
    }

    private func reply(_ text: String) { reply(Array(text.utf8)) }

    private func reply(_ payload: [UInt8]) {
        lastReply = GDBPacketEncoder.frame(payload)
        _ = transport.send(lastReply)
    }

    private func hex2(_ b: UInt8) -> String { String(decoding: Hex.byte(b), as: UTF8.self) }
}
