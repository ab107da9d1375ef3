/// A Linux x86 bzImage, checked against the boot protocol (Documentation/arch/x86/boot.rst):
/// "HdrS" setup header, protocol 2.12 or later (64-bit entry, xloadflags), and the protected-mode
/// kernel that follows the real-mode setup sectors.
public struct LinuxKernelImage: Sendable {
    /// The setup header as it sits in the file (from 0x1F1 to its stated end), copied into the
    /// zero page by the loader.
    public let setupHeader: ArraySlice<UInt8>
    /// The protected-mode kernel (everything after the setup sectors).
    public let protectedModeKernel: ArraySlice<UInt8>
    public let protocolVersion: UInt16
    /// Highest address the initrd may end at (initrd_addr_max + 1).
    public let initrdLimit: UInt64
    /// Longest command line the kernel accepts, without the NUL.
    public let commandLineLimit: Int
    /// Memory the kernel needs from its load address while it decompresses and boots.
    public let initSize: UInt64
    public let kernelAlignment: UInt64
    public let relocatable: Bool

    public static let setupHeaderOffset = 0x1F1
    static let minimumProtocol: UInt16 = 0x020C
    static let xlfKernel64: UInt16 = 1

    public init(bytes: [UInt8], name: String) throws(BootError) {
        let r = ByteReader(bytes: bytes, what: name)
        guard bytes.count >= 0x264, (try? r.u32(0x202)) == 0x5372_6448 else { // "HdrS"
            throw BootError("\(name): not a Linux bzImage (no boot protocol header)")
        }
        let version = try r.u16(0x206)
        guard version >= Self.minimumProtocol else {
            throw BootError("\(name): boot protocol \(version >> 8).\(version & 0xFF) is too old (need 2.12 for 64-bit entry)")
        }
        guard try r.u16(0x236) & Self.xlfKernel64 != 0 else {
            throw BootError("\(name): kernel has no 64-bit entry point (XLF_KERNEL_64 unset)")
        }
        guard try r.u8(0x211) & 1 != 0 else { throw BootError("\(name): kernel is not a bzImage (zImage is not supported)") }
        var setupSectors = UInt64(try r.u8(0x1F1))
        if setupSectors == 0 { setupSectors = 4 }
        let kernelOffset = (setupSectors + 1) * 512
        guard kernelOffset < UInt64(bytes.count) else {
            throw BootError("\(name): truncated kernel image (\(bytes.count) bytes, setup alone is \(kernelOffset))")
        }
        let syssize = UInt64(try r.u32(0x1F4)) * 16
        guard UInt64(bytes.count) - kernelOffset >= syssize else {
            throw BootError("\(name): truncated kernel image (\(UInt64(bytes.count) - kernelOffset) of \(syssize) kernel bytes)")
        }
        let headerEnd = 0x202 + Int(try r.u8(0x201))
        setupHeader = try r.slice(UInt64(Self.setupHeaderOffset), UInt64(headerEnd - Self.setupHeaderOffset))
        protectedModeKernel = bytes[Int(kernelOffset)...]
        protocolVersion = version
        initrdLimit = UInt64(try r.u32(0x22C)) + 1
        commandLineLimit = Int(try r.u32(0x238))
        kernelAlignment = UInt64(try r.u32(0x230))
        relocatable = try r.u8(0x234) != 0
        initSize = UInt64(try r.u32(0x260))
    }
}
