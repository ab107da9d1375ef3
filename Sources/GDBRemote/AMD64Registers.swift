/// The x86-64 register file in the order and sizes GDB's amd64 target uses when a stub sends no
/// target description (`g`/`G` packets): 16 general registers, rip, eflags, six segment
/// selectors, ST0-ST7, the eight x87 control registers, XMM0-XMM15 and MXCSR — 57 registers,
/// 536 bytes, little-endian.
public struct AMD64Registers: Equatable, Sendable {
    /// GDB's numbers for the registers the stub maps by name.
    public enum Number: Int, CaseIterable, Sendable {
        case rax = 0, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15
        case rip = 16, eflags, cs, ss, ds, es, fs, gs
        case st0 = 24
        case fctrl = 32, fstat, ftag, fiseg, fioff, foseg, fooff, fop
        case xmm0 = 40
        case mxcsr = 56
    }

    public static let count = 57
    /// Byte size of register `n`.
    public static func size(of n: Int) -> Int {
        switch n {
        case 0...16: 8
        case 17...23: 4
        case 24...31: 10
        case 32...39: 4
        case 40...55: 16
        default: 4
        }
    }
    /// Byte offset of each register in the `g` layout, and the total (536).
    static let offsets: [Int] = {
        var o: [Int] = [], at = 0
        for n in 0..<count { o.append(at); at += size(of: n) }
        o.append(at)
        return o
    }()
    public static var byteCount: Int { offsets[count] }

    /// The `g` packet's bytes (not hex).
    public private(set) var bytes: [UInt8] = Array(repeating: 0, count: AMD64Registers.byteCount)

    public init() {}

    /// Register `n`'s bytes.
    public func bytes(of n: Int) -> ArraySlice<UInt8> {
        bytes[Self.offsets[n]..<Self.offsets[n + 1]]
    }

    /// Overwrites register `n` with `value` (its first `size(of: n)` bytes; shorter is zero-extended).
    public mutating func set(_ n: Int, bytes value: some Collection<UInt8>) {
        let start = Self.offsets[n], size = Self.size(of: n)
        var i = 0
        for b in value.prefix(size) { bytes[start + i] = b; i += 1 }
        while i < size { bytes[start + i] = 0; i += 1 }
    }

    /// A register of up to 8 bytes as an integer.
    public subscript(_ r: Number) -> UInt64 {
        get {
            var v: UInt64 = 0
            for (i, b) in bytes(of: r.rawValue).prefix(8).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
            return v
        }
        set {
            let size = Self.size(of: r.rawValue)
            set(r.rawValue, bytes: (0..<min(size, 8)).map { UInt8(truncatingIfNeeded: newValue >> (8 * UInt64($0))) })
        }
    }

    /// Applies a `G` packet: as many whole bytes as it carries (GDB may send fewer registers).
    public mutating func overwrite(with data: [UInt8]) {
        for i in 0..<min(data.count, bytes.count) { bytes[i] = data[i] }
    }
}
