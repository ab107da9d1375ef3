import CHost
#if canImport(Glibc)
import Glibc
#endif

/// The VM process of an OCI container (`swiftlet oci create`), set up the way runc sets up its
/// `runc init`: in the namespaces the bundle names, holding the container's stdio, and waiting on
/// a FIFO until `start` (which is when it execs the VMM, keeping its pid).
public enum ContainerProcess {
    /// Namespaces a container's process gets of its own (the spec's entries without a path).
    public struct Namespaces: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let mount = Namespaces(rawValue: chost_CLONE_NEWNS())
        public static let uts = Namespaces(rawValue: chost_CLONE_NEWUTS())
        public static let ipc = Namespaces(rawValue: chost_CLONE_NEWIPC())
        public static let pid = Namespaces(rawValue: chost_CLONE_NEWPID())
        public static let network = Namespaces(rawValue: chost_CLONE_NEWNET())
        public static let cgroup = Namespaces(rawValue: chost_CLONE_NEWCGROUP())
    }

    /// Starts `path` with `arguments` (argv[0] is `path`) and this process's environment: in new
    /// `namespaces`, in the network namespace at `networkNamespace` (a path such as
    /// /var/run/netns/X, or nil to keep ours), with `console` (a pty's slave) as its stdio and
    /// controlling terminal or else our stdio. It waits on the FIFO `gate` before it execs.
    /// Returns its pid once it is set up and waiting.
    public static func spawn(path: String, arguments: [String], gate: String, namespaces: Namespaces,
                             networkNamespace: String?, console: FileDescriptor?) throws(HostError) -> Int32 {
        let netns: FileDescriptor?
        if let networkNamespace {
            do { netns = try FileDescriptor.open(networkNamespace, flags: O_RDONLY | O_CLOEXEC) } catch {
                throw HostError(message: "network namespace \(networkNamespace): \(error)")
            }
        } else {
            netns = nil
        }
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var failure: Int32 = 0
        let unshare = Int32(bitPattern: namespaces.subtracting(.pid).rawValue)
        let clone = Int32(bitPattern: namespaces.intersection(.pid).rawValue)
        let pid = HostProcess.signalsReset.withUnsafeBufferPointer { signals in
            chost_spawn_container(path, argv, environ, gate, clone, unshare, netns?.rawValue ?? -1, console?.rawValue ?? -1,
                                  signals.baseAddress, Int32(signals.count), &failure)
        }
        guard pid > 0 else { throw HostError("cannot start \(path)", errno: failure) }
        return pid
    }

    /// Lets the process waiting on `gate` go: opens the FIFO to read (never blocking) and takes
    /// the byte the process writes once it has passed, within `milliseconds`. False when no
    /// process came through (it died before, or never reached the FIFO).
    public static func release(gate: String, milliseconds: Int) throws(HostError) -> Bool {
        let fifo = try FileDescriptor.open(gate, flags: O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        let deadline = Clock.monotonicNanoseconds() + UInt64(milliseconds) * 1_000_000
        var byte: UInt8 = 0
        while Clock.monotonicNanoseconds() < deadline {
            var p = pollfd(fd: fifo.rawValue, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 50)
            if Glibc.read(fifo.rawValue, &byte, 1) == 1 { return true }
        }
        return false
    }
}

/// A pseudo-terminal for a container run with a terminal (`ctr run -t`): the master goes to the
/// runtime's caller over `--console-socket` (as runc sends it), the slave becomes the VM's console.
public enum PseudoTerminal {
    /// Opens a pty, sends its master to the Unix socket at `socketPath` (SCM_RIGHTS, with the
    /// name /dev/ptmx as runc sends it) and returns the slave.
    public static func sendMaster(to socketPath: String) throws(HostError) -> FileDescriptor {
        var slaveFD: Int32 = -1
        let masterFD = chost_open_pty(&slaveFD)
        guard masterFD >= 0 else { throw HostError("cannot open a pseudo-terminal", errno: -masterFD) }
        let master = FileDescriptor(owning: masterFD), slave = FileDescriptor(owning: slaveFD)
        let socket = FileDescriptor(owning: try UnixSocket.connect(path: socketPath))
        let result = chost_send_descriptor(socket.rawValue, master.rawValue, "/dev/ptmx")
        guard result == 0 else { throw HostError("sending the terminal", errno: -result) }
        return slave
    }
}

extension HostProcess {
    /// Runs `path` with `arguments` to its end, in the network namespace at `networkNamespace`
    /// (nil: ours), and returns its exit status and what it printed (stdout and stderr, at most
    /// 1 MiB). For iproute2's `ip` and `tc` inside a container's namespace.
    public static func output(of path: String, _ arguments: [String], networkNamespace: String? = nil) throws(HostError) -> (status: Int32, output: String) {
        let netns: FileDescriptor? = try networkNamespace.map { path throws(HostError) in try FileDescriptor.open(path, flags: O_RDONLY | O_CLOEXEC) }
        var ends: [Int32] = [-1, -1]
        let piped = chost_pipe(&ends)
        guard piped == 0 else { throw HostError("pipe", errno: -piped) }
        let reader = FileDescriptor(owning: ends[0])
        var writer: FileDescriptor? = FileDescriptor(owning: ends[1])
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var failure: Int32 = 0
        let pid = chost_spawn_in_netns(path, argv, environ, netns?.rawValue ?? -1, writer?.rawValue ?? -1, &failure)
        writer = nil
        guard pid > 0 else { throw HostError("cannot run \(path)", errno: failure) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(reader.rawValue, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk[0..<n]
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        return (code, String(decoding: bytes, as: UTF8.self))
    }
}
