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
    private let listener: ConsoleListener
    private let log: FileDescriptor?
    private let client = Mutex<StreamConnection?>(nil)

    public init(socketPath: String, logPath: String?) throws(VMMError) {
        self.socketPath = socketPath
        do {
            log = try logPath.map { (path) throws(HostError) in
                try FileDescriptor.open(path, flags: O_WRONLY | O_CREAT | O_APPEND)
            }
        } catch { throw VMMError(.configuration, "console log \(error)") }
        do { listener = try ConsoleListener(path: socketPath, backlog: 4) } catch {
            throw VMMError(.configuration, "console socket \(error)")
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        if let log { try? log.writeAll(bytes) }
        guard !bytes.isEmpty else { return }
        client.withLock { client in
            // A slow reader loses what did not fit; a client that is gone is dropped.
            if let connection = client, connection.sendWithoutWaiting(bytes) == .failed { client = nil }
        }
    }

    /// Accepts clients and feeds what they send to `input` on a thread of its own.
    func startInput(_ input: @escaping @Sendable ([UInt8]) -> Void) {
        _ = try? HostThread(name: "console", role: .device) { [self] in
            var buffer = [UInt8](repeating: 0, count: 512)
            while true {
                let current = client.withLock { $0 }
                let ready = listener.wait(client: current)
                if ready.connecting {
                    // A new client replaces the previous one (which is closed when released).
                    if let fresh = listener.accept() { client.withLock { $0 = fresh } }
                    continue
                }
                guard let current, ready.clientReadable else { continue }
                if let got = buffer.withUnsafeMutableBytes({ current.read(into: $0, shouldStop: { false }) }) {
                    input(Array(buffer[0..<got]))
                } else {
                    client.withLock { if $0 === current { $0 = nil } }
                }
            }
        }
    }
}

/// A console on one end of a connected stream the embedding program holds the other end of (the
/// C library's `swiftlet_vm_console`): output is written whole, at the reader's pace, so nothing
/// the guest wrote is lost (a reader that stops reading stalls the guest's console writes, as a
/// full pipe stalls Firecracker's serial); what the other end sends is the guest's serial input.
public final class StreamConsole: ConsoleSink, @unchecked Sendable {
    private let stream: FileDescriptor
    /// Where output goes: the stream, or stdout after `useStandardOutput` (set before the VM
    /// starts, never while the guest writes).
    private var output: FileDescriptor

    public init(_ stream: FileDescriptor) {
        self.stream = stream
        output = stream
    }

    /// Sends the output to the process's standard output instead (no one holds the other end).
    /// Call before the VM starts.
    public func useStandardOutput() {
        output = (try? FileDescriptor.duplicate(standardStream: 1)) ?? FileDescriptor(owning: -1)
    }

    public func write(_ bytes: UnsafeRawBufferPointer) { try? output.writeAll(bytes) }

    /// Feeds what the other end sends to `input` on a thread of its own, until it closes.
    func startInput(_ input: @escaping @Sendable ([UInt8]) -> Void) {
        _ = try? HostThread(name: "console", role: .device) { [stream] in
            var buffer = [UInt8](repeating: 0, count: 512)
            while let got = try? buffer.withUnsafeMutableBytes({ (bytes) throws(HostError) in try stream.read(into: bytes) }), got > 0 {
                input(Array(buffer[0..<got]))
            }
        }
    }
}

/// A VM's console: the process's stdio, a ``SocketConsole``, or a ``StreamConsole``.
public enum VMConsole: Sendable {
    case stdio
    case socket(SocketConsole)
    case stream(StreamConsole)

    var sink: any ConsoleSink {
        switch self {
        // A descriptor of its own, so the sink's end never closes standard output; without one
        // (no stdout at all) the output is lost, never the VM.
        case .stdio: (try? FileDescriptor.duplicate(standardStream: 1)) ?? FileDescriptor(owning: -1)
        case .socket(let socket): socket
        case .stream(let stream): stream
        }
    }
}
