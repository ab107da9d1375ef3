/// The x86-64 register file of the `g`/`G` packets: first what GDB's amd64 target uses when a stub
/// sends no target description (16 general registers, rip, eflags, six segment selectors,
/// ST0-ST7, the eight x87 control registers, XMM0-XMM15 and MXCSR: 57 registers, 536 bytes), then
/// what our target description (`targetDescription`) adds: fs_base, gs_base and the system
/// registers cr0, cr2, cr3, cr4, cr8 and efer — 65 registers, 600 bytes, little-endian.
public struct AMD64Registers: Equatable, Sendable {
    /// GDB's numbers for the registers the stub maps by name.
    public enum Number: Int, CaseIterable, Sendable {
        case rax = 0, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15
        case rip = 16, eflags, cs, ss, ds, es, fs, gs
        case st0 = 24
        case fctrl = 32, fstat, ftag, fiseg, fioff, foseg, fooff, fop
        case xmm0 = 40
        case mxcsr = 56
        case fsBase = 57, gsBase, cr0, cr2, cr3, cr4, cr8, efer
    }

    public static let count = 65
    /// The registers GDB knows without a target description (its built-in amd64 layout).
    public static let builtinCount = 57
    /// Byte size of register `n`.
    public static func size(of n: Int) -> Int {
        switch n {
        case 0...16: 8
        case 17...23: 4
        case 24...31: 10
        case 32...39: 4
        case 40...55: 16
        case 56: 4
        default: 8
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
    /// The bytes of the built-in layout (536): all a `g` reply may hold for a GDB that did not
    /// read our target description.
    public static var builtinByteCount: Int { offsets[builtinCount] }

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

extension AMD64Registers {
    /// The target description GDB reads with `qXfer:features:read:target.xml`: GDB's own
    /// `org.gnu.gdb.i386.core`, `.sse` and `.segments` features (same names, sizes and order as
    /// its built-in amd64 layout) and a feature of ours with the control registers, so
    /// `p $cr2` works after a page fault.
    public static let targetDescription: String = {
        func regs(_ names: [String], bits: Int, type: String, group: String? = nil) -> String {
            names.map { "<reg name=\"\($0)\" bitsize=\"\(bits)\" type=\"\(type)\"\(group.map { " group=\"\($0)\"" } ?? "")/>" }
                .joined(separator: "\n")
        }
        func flags(_ id: String, _ fields: [(String, Int)]) -> String {
            "<flags id=\"\(id)\" size=\"4\">"
                + fields.map { "<field name=\"\($0.0)\" start=\"\($0.1)\" end=\"\($0.1)\"/>" }.joined()
                + "</flags>"
        }
        let eflags = flags("i386_eflags", [("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8), ("IF", 9),
                                           ("DF", 10), ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17), ("AC", 18),
                                           ("VIF", 19), ("VIP", 20), ("ID", 21)])
        let mxcsr = flags("i386_mxcsr", [("IE", 0), ("DE", 1), ("ZE", 2), ("OE", 3), ("UE", 4), ("PE", 5), ("DAZ", 6),
                                         ("IM", 7), ("DM", 8), ("ZM", 9), ("OM", 10), ("UM", 11), ("PM", 12), ("FZ", 15)])
        let vectors = """
            <vector id="v4f" type="ieee_single" count="4"/>
            <vector id="v2d" type="ieee_double" count="2"/>
            <vector id="v16i8" type="int8" count="16"/>
            <vector id="v8i16" type="int16" count="8"/>
            <vector id="v4i32" type="int32" count="4"/>
            <vector id="v2i64" type="int64" count="2"/>
            <union id="vec128"><field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>\
            <field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/><field name="v4_int32" type="v4i32"/>\
            <field name="v2_int64" type="v2i64"/><field name="uint128" type="uint128"/></union>
            """
        return """
            <?xml version="1.0"?>
            <!DOCTYPE target SYSTEM "gdb-target.dtd">
            <target version="1.0">
            <architecture>i386:x86-64</architecture>
            <feature name="org.gnu.gdb.i386.core">
            \(eflags)
            \(regs(["rax", "rbx", "rcx", "rdx", "rsi", "rdi"], bits: 64, type: "int64"))
            \(regs(["rbp", "rsp"], bits: 64, type: "data_ptr"))
            \(regs((8...15).map { "r\($0)" }, bits: 64, type: "int64"))
            <reg name="rip" bitsize="64" type="code_ptr"/>
            <reg name="eflags" bitsize="32" type="i386_eflags"/>
            \(regs(["cs", "ss", "ds", "es", "fs", "gs"], bits: 32, type: "int32"))
            \(regs((0...7).map { "st\($0)" }, bits: 80, type: "i387_ext"))
            \(regs(["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"], bits: 32, type: "int", group: "float"))
            </feature>
            <feature name="org.gnu.gdb.i386.sse">
            \(vectors)
            \(mxcsr)
            \(regs((0...15).map { "xmm\($0)" }, bits: 128, type: "vec128"))
            <reg name="mxcsr" bitsize="32" type="i386_mxcsr" group="vector"/>
            </feature>
            <feature name="org.gnu.gdb.i386.segments">
            \(regs(["fs_base", "gs_base"], bits: 64, type: "int"))
            </feature>
            <feature name="org.swiftlet.gdb.x86.system">
            \(regs(["cr0", "cr2", "cr3", "cr4", "cr8", "efer"], bits: 64, type: "int64", group: "system"))
            </feature>
            </target>
            """
    }()
}
