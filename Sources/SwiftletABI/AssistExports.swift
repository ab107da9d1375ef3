import CSwiftlet
import Hypervisor

// The assists of swiftlet.h (version 1): run only when the client calls them, on the exit the
// vCPU last returned. They serve the exit the library recorded, not the client's copy of it, so
// a stale or altered `struct swiftlet_exit` cannot steer them outside the run area.

@_cdecl("swiftlet_assist_io")
public func swiftlet_assist_io(_ vcpu: UInt64, _ exit: UnsafePointer<swiftlet_exit>?,
                               _ callback: swiftlet_io_callback?, _ context: UnsafeMutableRawPointer?) -> Int32 {
    abiCall { () throws(ABIError) in
        let (v, given, serve) = try assistArguments(vcpu, exit, callback)
        try v.claim { () throws(ABIError) in
            guard given.pointee.reason == UInt32(SWIFTLET_EXIT_IO), case .portIO(let io)? = v.lastExit else {
                throw ABIError(SWIFTLET_E_WRONG_EXIT, "swiftlet_assist_io on an exit that is not the vCPU's last port-I/O exit")
            }
            var access = swiftlet_io_access()
            access.port = io.port
            access.width = UInt8(truncatingIfNeeded: io.size)
            access.is_write = io.isWrite ? 1 : 0
            // Items move as 1-, 2- or 4-byte values, not copies (a memcpy call per byte showed
            // in the exit round trip's profile).
            PortIOAssist.forEachItem(of: io, data: v.vcpu.ioData) { _, item in
                access.data = io.isWrite ? ioAccessData(PortIOAssist.value(of: item)) : (0, 0, 0, 0)
                serve(context, &access)
                if !io.isWrite {
                    PortIOAssist.store(UInt32(littleEndian: withUnsafeBytes(of: access.data) { $0.loadUnaligned(as: UInt32.self) }), into: item)
                }
            }
        }
    }
}

@_cdecl("swiftlet_assist_mem")
public func swiftlet_assist_mem(_ vcpu: UInt64, _ exit: UnsafePointer<swiftlet_exit>?,
                                _ callback: swiftlet_mem_callback?, _ context: UnsafeMutableRawPointer?) -> Int32 {
    abiCall { () throws(ABIError) in
        let (v, given, serve) = try assistArguments(vcpu, exit, callback)
        try v.claim { () throws(ABIError) in
            switch (given.pointee.reason, v.lastExit) {
            case (UInt32(SWIFTLET_EXIT_MMIO), .mmio(let mmio)?):
                try serveDecodedAccess(mmio, data: v.vcpu.mmioData, serve, context)
            case (UInt32(SWIFTLET_EXIT_INTERNAL_ERROR), .internalError?):
                try MemoryAssist.emulateAtRIP(v, serve, context)
            default:
                throw ABIError(SWIFTLET_E_WRONG_EXIT, "swiftlet_assist_mem on an exit that is not the vCPU's last MMIO or emulation-failure exit")
            }
        }
    }
}

/// `value` as swiftlet_io_access.data: little-endian bytes.
@inline(__always)
private func ioAccessData(_ value: UInt32) -> (UInt8, UInt8, UInt8, UInt8) {
    (UInt8(truncatingIfNeeded: value), UInt8(truncatingIfNeeded: value >> 8),
     UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 24))
}

/// The arguments both assists take, checked.
@inline(__always)
private func assistArguments<Callback>(_ vcpu: UInt64, _ exit: UnsafePointer<swiftlet_exit>?, _ callback: Callback?)
    throws(ABIError) -> (ABIVCPU, UnsafePointer<swiftlet_exit>, Callback) {
    let v = try ABIRegistry.vcpu(vcpu)
    let given = try sized(exit, "swiftlet_exit", version1Size: ABIVersion.exitSize)
    return (v, given, try required(callback, "callback"))
}

/// An MMIO exit KVM decoded: one access to the callback; a read's answer goes where KVM picks
/// it up to finish the instruction at the next run.
private func serveDecodedAccess(_ mmio: MMIOExit, data: UnsafeMutableRawBufferPointer,
                                _ serve: swiftlet_mem_callback, _ context: UnsafeMutableRawPointer?) throws(ABIError) {
    guard (1...8).contains(mmio.size), mmio.size <= data.count, let area = data.baseAddress else {
        throw ABIError(SWIFTLET_E_UNSUPPORTED, "MMIO access of \(mmio.size) bytes")
    }
    var access = swiftlet_mem_access()
    access.gpa = mmio.address
    access.width = UInt32(mmio.size)
    access.is_write = mmio.isWrite ? 1 : 0
    withUnsafeMutableBytes(of: &access.data) { bytes in
        if mmio.isWrite { bytes.baseAddress!.copyMemory(from: area, byteCount: mmio.size) }
    }
    serve(context, &access)
    if !mmio.isWrite {
        withUnsafeBytes(of: access.data) { bytes in area.copyMemory(from: bytes.baseAddress!, byteCount: mmio.size) }
    }
}

/// The full assist, for an instruction KVM could not emulate: our decoder and emulator
/// (Hypervisor's MMIOAssist) over the vCPU's registers and the machine's mappings, with the
/// device reached through the client's callback.
enum MemoryAssist {
    static func emulateAtRIP(_ v: ABIVCPU, _ serve: swiftlet_mem_callback, _ context: UnsafeMutableRawPointer?) throws(ABIError) {
        var registers = try ABIError.wrap { () throws(HypervisorError) in try v.vcpu.registers() }
        let special = try ABIError.wrap { () throws(HypervisorError) in try v.vcpu.specialRegisters() }
        func access(_ address: UInt64, _ size: Int, _ value: UInt64, write: Bool) -> UInt64 {
            var access = swiftlet_mem_access()
            access.gpa = address
            access.width = UInt32(truncatingIfNeeded: size)
            access.is_write = write ? 1 : 0
            withUnsafeMutableBytes(of: &access.data) { $0.storeBytes(of: value.littleEndian, as: UInt64.self) }
            serve(context, &access)
            return UInt64(littleEndian: withUnsafeBytes(of: access.data) { $0.loadUnaligned(as: UInt64.self) })
        }
        do {
            _ = try MMIOAssist.emulateAtRIP(
                registers: &registers, specialRegisters: special, memory: v.owner.machine.memory,
                readOnlyRanges: v.owner.machine.readOnlyRanges,
                read: { address, size in access(address, size, 0, write: false) },
                write: { address, size, value in _ = access(address, size, value, write: true) })
        } catch {
            let status: Int32 = switch error {
            case .decode, .unsupported: SWIFTLET_E_UNSUPPORTED
            default: SWIFTLET_E_GUEST
            }
            throw ABIError(status, error.description)
        }
        try ABIError.wrap { () throws(HypervisorError) in try v.vcpu.setRegisters(registers) }
    }
}
