import CSwiftlet
import ExtensionProtocol
import Host
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// The extension helpers of swiftlet.h (version 2, SWIFTLET_1.1): the extension's side of the
// protocol (docs/abi.md, "Extensions"), for extension programs in C or anything with a C FFI.
// The channel is the program's descriptor (the VMM passed it); the library never closes it.

/// One channel's transport: whole messages, no deadline (the VMM sets the pace; its end going
/// away ends every wait with SWIFTLET_E_STATE).
enum ExtensionChannel {
    static let maximumMessage = ExtensionMessage.headerSize + ExtensionMessage.maximumData

    static func send(_ channel: Int32, _ message: ExtensionMessage) throws(ABIError) {
        try withUnsafeTemporaryAllocation(byteCount: maximumMessage, alignment: 8) { (buffer) throws(ABIError) in
            let size = message.encode(into: buffer)
            do throws(HostError) {
                try FileDescriptor.sendAll(UnsafeRawBufferPointer(rebasing: buffer[0..<size]), on: channel, milliseconds: -1)
            } catch { throw ABIError(SWIFTLET_E_STATE, "the VMM is gone (\(error))") }
        }
    }

    static func receive(_ channel: Int32) throws(ABIError) -> ExtensionMessage {
        try withUnsafeTemporaryAllocation(byteCount: maximumMessage, alignment: 8) { (buffer) throws(ABIError) -> ExtensionMessage in
            let message: ExtensionMessage?
            do throws(ExtensionMessage.ReceiveFailure<HostError>) {
                message = try ExtensionMessage.receive(into: buffer) { (part, _) throws(HostError) in
                    try FileDescriptor.receiveExactly(part, on: channel, milliseconds: -1)
                }
            } catch {
                let why = switch error {
                case .transport(let failure, _): "\(failure)"
                case .truncated: "it closed the channel inside a message"
                case .malformed(let malformed): "a malformed message: \(malformed.reason)"
                }
                throw ABIError(SWIFTLET_E_STATE, "the VMM is gone (\(why))")
            }
            guard let message else { throw ABIError(SWIFTLET_E_STATE, "the VMM is gone (it closed the channel)") }
            return message
        }
    }

    /// A request with an answer: sends it with a fresh id and returns the answer.
    static func request(_ channel: Int32, _ message: ExtensionMessage, answer: ExtensionMessage.Kind) throws(ABIError) -> ExtensionMessage {
        var message = message
        message.id = nextID.add(1, ordering: .relaxed).newValue
        try send(channel, message)
        let reply = try receive(channel)
        guard reply.kind == answer, reply.id == message.id else {
            throw ABIError(SWIFTLET_E_STATE, "the VMM answered \(reply.kind) \(reply.id), not \(answer) \(message.id) (an access must be completed first)")
        }
        return reply
    }

    static let nextID = Atomic<UInt64>(0)
}

@_cdecl("swiftlet_ext_connect")
public func swiftlet_ext_connect(_ name: UnsafePointer<CChar>?, _ channel: UnsafeMutablePointer<Int32>?) -> Int32 {
    abiCall { () throws(ABIError) in
        let text = String(cString: try required(name, "name"))
        let out = try required(channel, "channel")
        guard !text.isEmpty, text.utf8.count <= ExtensionMessage.maximumName else {
            throw ABIError.invalid("an extension name of \(text.utf8.count) bytes (1 to \(ExtensionMessage.maximumName))")
        }
        // Started by the VMM: its descriptor. Else the socket of `--extension listen=PATH`.
        let fd: Int32
        var connected: FileDescriptor?
        if let value = HostProcess.environmentValue("SWIFTLET_EXTENSION_FD") {
            guard let number = Int32(value), number >= 0 else { throw ABIError.invalid("SWIFTLET_EXTENSION_FD=\(value)") }
            fd = number
        } else if let path = HostProcess.environmentValue("SWIFTLET_EXTENSION_SOCKET") {
            do { connected = FileDescriptor(owning: try UnixSocket.connect(path: path)) } catch {
                throw ABIError(SWIFTLET_E_STATE, "SWIFTLET_EXTENSION_SOCKET: \(error)")
            }
            fd = connected!.rawValue
        } else {
            throw ABIError(SWIFTLET_E_STATE, "neither SWIFTLET_EXTENSION_FD nor SWIFTLET_EXTENSION_SOCKET is set: start the program with swiftlet run --extension PROGRAM, or name the socket of --extension listen=PATH")
        }
        try ExtensionChannel.send(fd, ExtensionMessage(.hello, value: ExtensionMessage.version, data: Array(text.utf8)))
        let welcome = try ExtensionChannel.receive(fd)
        guard welcome.kind == .welcome, welcome.status == 0 else {
            throw ABIError(SWIFTLET_E_VERSION, "the VMM refused protocol version \(ExtensionMessage.version) (status \(welcome.status))")
        }
        // The connection is the caller's from here (on a failure above, it is closed).
        if let connected {
            do { out.pointee = try connected.duplicateForCaller() } catch { throw ABIError(SWIFTLET_E_STATE, "\(error)") }
        } else {
            out.pointee = fd
        }
    }
}

@_cdecl("swiftlet_ext_register")
public func swiftlet_ext_register(_ channel: Int32, _ space: UInt32, _ base: UInt64, _ length: UInt64) -> Int32 {
    abiCall { () throws(ABIError) in
        guard ExtensionMessage.Space(rawValue: space) != nil else { throw ABIError.invalid("space \(space) (SWIFTLET_EXT_PORT or SWIFTLET_EXT_MMIO)") }
        let reply = try ExtensionChannel.request(channel, ExtensionMessage(.register, address: base, value: length, space: space), answer: .reply)
        guard reply.status == 0 else { throw ABIError(SWIFTLET_E_OVERLAP, "the VMM refused the range \(base.hexString)+\(length)") }
    }
}

@_cdecl("swiftlet_ext_ready")
public func swiftlet_ext_ready(_ channel: Int32) -> Int32 {
    abiCall { () throws(ABIError) in
        _ = try ExtensionChannel.request(channel, ExtensionMessage(.ready), answer: .reply)
    }
}

@_cdecl("swiftlet_ext_next_access")
public func swiftlet_ext_next_access(_ channel: Int32, _ access: UnsafeMutablePointer<swiftlet_ext_access>?) -> Int32 {
    abiCall { () throws(ABIError) in
        let out = try required(access, "access")
        let message = try ExtensionChannel.receive(channel)
        guard message.kind == .access else { throw ABIError(SWIFTLET_E_STATE, "the VMM sent \(message.kind), not an access") }
        out.pointee = swiftlet_ext_access(id: message.id, address: message.address, value: message.value, width: message.width,
                                          space: message.space, is_write: message.isWrite, reserved: 0)
    }
}

@_cdecl("swiftlet_ext_complete")
public func swiftlet_ext_complete(_ channel: Int32, _ access: UnsafePointer<swiftlet_ext_access>?, _ value: UInt64) -> Int32 {
    abiCall { () throws(ABIError) in
        let served = try required(access, "access")
        try ExtensionChannel.send(channel, ExtensionMessage(.accessDone, id: served.pointee.id, value: value))
    }
}

@_cdecl("swiftlet_ext_read_memory")
public func swiftlet_ext_read_memory(_ channel: Int32, _ gpa: UInt64, _ buffer: UnsafeMutableRawPointer?, _ length: UInt32) -> Int32 {
    abiCall { () throws(ABIError) in
        let out = try required(buffer, "buffer")
        guard (1...UInt32(ExtensionMessage.maximumData)).contains(length) else { throw ABIError.invalid("a memory read of \(length) bytes (1 to 4096)") }
        let reply = try ExtensionChannel.request(channel, ExtensionMessage(.memRead, address: gpa, width: length), answer: .memData)
        guard reply.status == 0, reply.data.count == Int(length) else {
            throw ABIError(SWIFTLET_E_GUEST, "guest memory \(gpa.hexString)+\(length) is not RAM")
        }
        reply.data.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }
}

@_cdecl("swiftlet_ext_write_memory")
public func swiftlet_ext_write_memory(_ channel: Int32, _ gpa: UInt64, _ buffer: UnsafeRawPointer?, _ length: UInt32) -> Int32 {
    abiCall { () throws(ABIError) in
        let bytes = try required(buffer, "buffer")
        guard (1...UInt32(ExtensionMessage.maximumData)).contains(length) else { throw ABIError.invalid("a memory write of \(length) bytes (1 to 4096)") }
        let data = Array(UnsafeRawBufferPointer(start: bytes, count: Int(length)))
        let reply = try ExtensionChannel.request(channel, ExtensionMessage(.memWrite, address: gpa, data: data), answer: .reply)
        guard reply.status == 0 else { throw ABIError(SWIFTLET_E_GUEST, "guest memory \(gpa.hexString)+\(length) is not RAM") }
    }
}

@_cdecl("swiftlet_ext_set_irq")
public func swiftlet_ext_set_irq(_ channel: Int32, _ level: UInt32) -> Int32 {
    abiCall { () throws(ABIError) in
        guard level <= 1 else { throw ABIError.invalid("interrupt level \(level) (0 or 1)") }
        try ExtensionChannel.send(channel, ExtensionMessage(.irq, value: UInt64(level)))
    }
}
