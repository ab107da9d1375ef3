#if canImport(Glibc)
import CHost
import Host
import Glibc
#endif

/// Unix-socket and epoll plumbing for the vsock backend: non-blocking, close-on-exec stream
/// sockets; an epoll set driven edge-triggered so a hung-up or full socket never spins the loop.
enum VsockSocket {
    static let streamFlags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)

    /// Calls `body` with a sockaddr_un for `path`; nil when the path does not fit sun_path.
    static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let utf8 = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !utf8.isEmpty, utf8.count < capacity, !utf8.contains(0) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in utf8.enumerated() { raw[i] = byte }
            raw[utf8.count] = 0
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + utf8.count + 1)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }


    /// Binds and listens on `path`, first removing a stale socket file there (not other files).
    static func listen(path: String, backlog: Int32 = 128) throws(VirtioDeviceError) -> Int32 {
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFSOCK else {
                throw VirtioDeviceError("virtio-vsock: \(path) exists and is not a socket")
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, streamFlags, 0)
        guard fd >= 0 else { throw VirtioDeviceError("virtio-vsock: socket: \(HostError.text(errno: errno))") }
        guard let result = withAddress(path, { bind(fd, $0, $1) }) else {
            close(fd)
            throw VirtioDeviceError("virtio-vsock: socket path too long: \(path)")
        }
        guard result == 0, Glibc.listen(fd, backlog) == 0 else {
            let e = errno
            close(fd)
            throw VirtioDeviceError("virtio-vsock: bind/listen \(path): \(HostError.text(errno: e))")
        }
        return fd
    }

    /// Connects a non-blocking stream socket to `path`; nil when nobody listens there (or its
    /// backlog is full: a Unix socket never completes a connect later, we do not wait).
    static func connect(path: String) -> Int32? {
        let fd = socket(AF_UNIX, streamFlags, 0)
        guard fd >= 0 else { return nil }
        guard let result = withAddress(path, { Glibc.connect(fd, $0, $1) }), result == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    static func accept(_ listener: Int32) -> Int32? {
        while true {
            let fd = Glibc.accept(listener, nil, nil)
            if fd >= 0 {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                return fd
            }
            if errno == EINTR { continue }
            // ECONNABORTED and friends: the client went away; EAGAIN: nothing left.
            if errno == ECONNABORTED || errno == EPROTO { continue }
            return nil
        }
    }

    /// send(2) without SIGPIPE; bytes sent, or -errno.
    static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        guard bytes.count > 0 else { return 0 }
        while true {
            let n = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            return -Int(errno)
        }
    }

    /// recv(2); bytes read (0 at end of stream), or -errno.
    static func receive(_ fd: Int32, _ bytes: UnsafeMutableRawBufferPointer, flags: Int32 = 0) -> Int {
        guard bytes.count > 0 else { return 0 }
        while true {
            let n = recv(fd, bytes.baseAddress, bytes.count, flags | Int32(MSG_DONTWAIT))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            return -Int(errno)
        }
    }

    // MARK: epoll (through CHost: struct epoll_event is packed on x86-64)

    static let epollIn: UInt32 = 0x001, epollOut: UInt32 = 0x004, epollRDHUP: UInt32 = 0x2000,
               epollET: UInt32 = 1 << 31
    static let streamEvents = epollIn | epollOut | epollRDHUP | epollET

    @discardableResult
    static func epollAdd(_ epoll: Int32, _ fd: Int32, token: UInt64, events: UInt32 = streamEvents) -> Bool {
        epollControl(epoll, 1 /* EPOLL_CTL_ADD */, fd, events: events, token: token)
    }

    @discardableResult
    static func epollRemove(_ epoll: Int32, _ fd: Int32) -> Bool {
        epollControl(epoll, 2 /* EPOLL_CTL_DEL */, fd, events: 0, token: 0)
    }

    private static func epollControl(_ epoll: Int32, _ op: Int32, _ fd: Int32, events: UInt32, token: UInt64) -> Bool {
        chost_epoll_control(epoll, op, fd, events, token) == 0
    }
}
