#if canImport(Glibc)
import Glibc
#endif

/// A failed KVM or system call: what was attempted and the errno it returned.
public struct KVMError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What Swiftlet was doing, e.g. "KVM_CREATE_VM" or "open /dev/kvm".
    public var operation: String
    /// The errno value, or 0 when the failure is not an errno (e.g. a missing capability).
    public var errno: Int32
    /// Extra context for failures that are not plain errno values.
    public var detail: String?

    public init(operation: String, errno: Int32, detail: String? = nil) {
        self.operation = operation
        self.errno = errno
        self.detail = detail
    }

    public var description: String {
        var text = operation
        if errno != 0 { text += ": " + String(cString: strerror(errno)) }
        if let detail { text += ": " + detail }
        return text
    }
}

/// The syscall choke point: every ioctl and open in this target goes through these functions, which
/// read errno at once, retry EINTR where the call is restartable, and throw a typed error.
enum Syscall {
    /// ioctl with a pointer argument; EINTR retried.
    @inline(__always)
    static func ioctl(_ fd: Int32, _ request: UInt, _ arg: UnsafeMutableRawPointer?, _ name: StaticString) throws(KVMError) -> Int32 {
        while true {
            let result = ckvmIoctlPointer(fd, request, arg)
            if result >= 0 { return result }
            let code = Glibc.errno
            if code == EINTR { continue }
            throw KVMError(operation: name.description, errno: code)
        }
    }

    /// ioctl with an integer argument; EINTR retried.
    @inline(__always)
    static func ioctl(_ fd: Int32, _ request: UInt, value: UInt, _ name: StaticString) throws(KVMError) -> Int32 {
        while true {
            let result = ckvmIoctlValue(fd, request, value)
            if result >= 0 { return result }
            let code = Glibc.errno
            if code == EINTR { continue }
            throw KVMError(operation: name.description, errno: code)
        }
    }

    static func open(_ path: String, _ flags: Int32) throws(KVMError) -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC)
            if fd >= 0 { return fd }
            let code = Glibc.errno
            if code == EINTR { continue }
            throw KVMError(operation: "open \(path)", errno: code)
        }
    }
}
