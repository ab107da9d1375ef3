import Host
import Hypervisor
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where a VM's console output goes. Written from vCPU threads: must not block for long.
public protocol ConsoleSink: Sendable {
    func write(_ bytes: UnsafeRawBufferPointer)
}

/// A file or terminal as console: stdout for `swiftlet run` and `swiftlet hvt`. A write error
/// (a closed terminal) loses the output, never the VM.
extension FileDescriptor: ConsoleSink {
    public func write(_ bytes: UnsafeRawBufferPointer) { try? writeAll(bytes) }
}

/// A console on a Unix socket, as vmd gives each VM a tty for `vmctl console`: output is appended
/// to a log file (for `swiftlet ctl logs`) and copied to the one attached client; what the client
/// sends is the guest's serial input. A new client replaces the previous one. A client that does
/// not keep up loses output rather than stalling the guest (the log keeps everything).
/// The socket and log are opened when the VM is built, before privileges are dropped.
public final class SocketConsole: ConsoleSink, @unchecked Sendable {
    public let socketPath: String
    private let listener: Int32
    private let log: FileDescriptor?
    private let client = Mutex<Int32>(-1)

    public init(socketPath: String, logPath: String?) throws(VMMError) {
        self.socketPath = socketPath
        do {
            log = try logPath.map { (path) throws(HostError) in
                try FileDescriptor.open(path, flags: O_WRONLY | O_CREAT | O_APPEND)
            }
        } catch { throw VMMError(.configuration, "console log \(error)") }
        do { listener = try UnixSocket.listen(path: socketPath, backlog: 4) } catch {
            throw VMMError(.configuration, "console socket \(error)")
        }
    }

    deinit { close(listener) }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        if let log { try? log.writeAll(bytes) }
        client.withLock { fd in
            guard fd >= 0, !bytes.isEmpty else { return }
            var done = 0
            while done < bytes.count {
                let n = send(fd, bytes.baseAddress! + done, bytes.count - done, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                if n > 0 { done += n; continue }
                if n < 0 && errno == EINTR { continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return } // slow reader: drop
                close(fd)
                fd = -1
                return
            }
        }
    }

    /// Accepts clients and feeds what they send to `input` on a thread of its own.
    func startInput(_ input: @escaping @Sendable ([UInt8]) -> Void) {
        let listener = self.listener
        _ = try? VCPUThread(name: "console") { [self] in
            var buffer = [UInt8](repeating: 0, count: 512)
            while true {
                let current = client.withLock { $0 }
                var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: current, events: Int16(POLLIN), revents: 0)]
                let n = poll(&fds, current >= 0 ? 2 : 1, -1)
                if n < 0 { if errno == EINTR { continue }; return }
                if fds[0].revents & Int16(POLLIN) != 0 {
                    let fd = accept(listener, nil, nil)
                    if fd >= 0 {
                        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                        client.withLock { old in
                            if old >= 0 { close(old) }
                            old = fd
                        }
                    }
                    continue
                }
                if current >= 0 && fds[1].revents != 0 {
                    let got = buffer.withUnsafeMutableBytes { recv(current, $0.baseAddress, $0.count, 0) }
                    if got > 0 {
                        input(Array(buffer[0..<got]))
                    } else if got == 0 || (errno != EINTR && errno != EAGAIN) {
                        client.withLock { fd in
                            if fd == current { close(fd); fd = -1 }
                        }
                    }
                }
            }
        }
    }
}

/// A VM's console: the process's stdio, or a ``SocketConsole``.
public enum VMConsole: Sendable {
    case stdio
    case socket(SocketConsole)

    var sink: any ConsoleSink {
        switch self {
        case .stdio: FileDescriptor(owning: dup(1))
        case .socket(let socket): socket
        }
    }
}
