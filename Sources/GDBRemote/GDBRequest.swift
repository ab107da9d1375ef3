/// A debugger request, parsed from one packet's payload. Anything the stub does not serve is
/// `.unsupported` (answered with an empty packet, which tells GDB so); a served packet with bad
/// arguments is `.malformed` (answered `E01`).
public enum GDBRequest: Equatable, Sendable {
    /// The kinds of `Z`/`z` breakpoints: 0 software, 1 hardware, 2 write, 3 read, 4 access watchpoints.
    public enum BreakpointKind: UInt8, Sendable {
        case software = 0, hardware = 1, writeWatch = 2, readWatch = 3, accessWatch = 4
    }

    case haltReason                                   // ?
    case readRegisters                                // g
    case writeRegisters([UInt8])                      // G XX...
    case readRegister(Int)                            // p n
    case writeRegister(Int, [UInt8])                  // P n=XX...
    case readMemory(address: UInt64, length: UInt64)  // m addr,len
    case writeMemory(address: UInt64, bytes: [UInt8]) // M addr,len:XX... and X addr,len:binary
    /// c [addr] / C sig[;addr]: resume, optionally from `address`.
    case resume(address: UInt64?)
    /// s [addr] / S sig[;addr]: execute one instruction.
    case step(address: UInt64?)
    case insertBreakpoint(BreakpointKind, address: UInt64, length: UInt64)
    case removeBreakpoint(BreakpointKind, address: UInt64, length: UInt64)
    case detach                                       // D, D;pid
    case kill                                         // k, vKill
    /// qSupported, with the features GDB offers.
    case querySupported
    case startNoAckMode                               // QStartNoAckMode
    case query(String)                                // other q packets, by name
    case setThread                                    // H g/c id
    case threadAlive                                  // T id
    case malformed
    case unsupported

    public init(_ p: [UInt8]) {
        guard let first = p.first else { self = .unsupported; return }
        let rest = p.dropFirst()
        switch first {
        case UInt8(ascii: "?"): self = .haltReason
        case UInt8(ascii: "g"): self = rest.isEmpty ? .readRegisters : .malformed
        case UInt8(ascii: "G"): self = Hex.decode(rest).map { .writeRegisters($0) } ?? .malformed
        case UInt8(ascii: "p"):
            guard let n = Hex.number(rest), n < 1024 else { self = .malformed; return }
            self = .readRegister(Int(n))
        case UInt8(ascii: "P"):
            let parts = rest.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, let n = Hex.number(parts[0]), n < 1024, let v = Hex.decode(parts[1]) else { self = .malformed; return }
            self = .writeRegister(Int(n), v)
        case UInt8(ascii: "m"):
            guard let (address, length) = Self.addressAndLength(rest) else { self = .malformed; return }
            self = .readMemory(address: address, length: length)
        case UInt8(ascii: "M"), UInt8(ascii: "X"):
            guard let colon = rest.firstIndex(of: UInt8(ascii: ":")),
                  let (address, length) = Self.addressAndLength(rest[rest.startIndex..<colon]) else { self = .malformed; return }
            let data = rest[rest.index(after: colon)...]
            let bytes: [UInt8]? = first == UInt8(ascii: "M") ? Hex.decode(data) : Array(data)
            guard let bytes, UInt64(bytes.count) == length else { self = .malformed; return }
            self = .writeMemory(address: address, bytes: bytes)
        case UInt8(ascii: "c"), UInt8(ascii: "s"), UInt8(ascii: "C"), UInt8(ascii: "S"):
            var arguments = rest[...]
            if first == UInt8(ascii: "C") || first == UInt8(ascii: "S") {
                // The signal is ignored (a unikernel has no signals); an address may follow ';'.
                let parts = arguments.split(separator: UInt8(ascii: ";"), maxSplits: 1, omittingEmptySubsequences: false)
                guard let signal = parts.first, Hex.number(signal) != nil else { self = .malformed; return }
                arguments = parts.count == 2 ? parts[1] : []
            }
            var address: UInt64? = nil
            if !arguments.isEmpty {
                guard let a = Hex.number(arguments) else { self = .malformed; return }
                address = a
            }
            self = first == UInt8(ascii: "c") || first == UInt8(ascii: "C") ? .resume(address: address) : .step(address: address)
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            let parts = rest.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
            guard parts.count >= 3, parts[0].count == 1, let t = Hex.number(parts[0]),
                  let kind = BreakpointKind(rawValue: UInt8(t)),
                  let address = Hex.number(parts[1]),
                  let length = Hex.number(parts[2].prefix { $0 != UInt8(ascii: ";") }) else {
                // Unknown kinds (and conditions GDB only sends when we say we evaluate them) are
                // not supported rather than malformed, so GDB falls back.
                self = parts.first.flatMap { Hex.number($0) }.map { $0 > 4 } == true ? .unsupported : .malformed
                return
            }
            self = first == UInt8(ascii: "Z") ? .insertBreakpoint(kind, address: address, length: length)
                                             : .removeBreakpoint(kind, address: address, length: length)
        case UInt8(ascii: "D"): self = .detach
        case UInt8(ascii: "k"): self = .kill
        case UInt8(ascii: "H"): self = .setThread
        case UInt8(ascii: "T"): self = .threadAlive
        case UInt8(ascii: "q"), UInt8(ascii: "Q"):
            let name = String(decoding: p.prefix { $0 != UInt8(ascii: ":") && $0 != UInt8(ascii: ",") }, as: UTF8.self)
            switch name {
            case "qSupported": self = .querySupported
            case "QStartNoAckMode": self = .startNoAckMode
            default: self = .query(name)
            }
        case UInt8(ascii: "v"):
            self = p.starts(with: Array("vKill".utf8)) ? .kill : .unsupported
        default: self = .unsupported
        }
    }

    /// `addr,len` in hex.
    private static func addressAndLength(_ text: ArraySlice<UInt8>) -> (UInt64, UInt64)? {
        let parts = text.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
        guard parts.count == 2, let a = Hex.number(parts[0]), let l = Hex.number(parts[1]) else { return nil }
        return (a, l)
    }
}
