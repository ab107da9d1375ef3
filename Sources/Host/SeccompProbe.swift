import CHost
#if canImport(Glibc)
import Glibc
#endif

/// The system calls `swiftlet seccomp-check` makes on purpose under the VMM's seccomp filter, so
/// tests can see what the filter lets through (these return) and what it kills (SIGSYS).
public enum SeccompProbe: String, CaseIterable, Sendable {
    case getpid, socketUnix = "socket-unix", thread
    case execve, socketInet = "socket-inet", fork, open, ptrace, mprotectExec = "mprotect-exec", kill
    /// Calls the process filter allows and some thread roles do not (`ThreadRole`): a KVM
    /// request and a terminal request (on no descriptor: the filter sees only the numbers), a
    /// disk write, removing a file, and the tap request a vCPU makes at virtio-net activation.
    case kvmIoctl = "kvm-ioctl", terminalIoctl = "terminal-ioctl", pwrite, unlink
    case tapOffloadIoctl = "tap-offload-ioctl"

    /// Makes the call; returns its result (or -1 for the failing ones).
    public func attempt() -> Int {
        switch self {
        case .getpid:
            return Int(Glibc.getpid())
        case .socketUnix, .socketInet:
            let fd = socket(self == .socketUnix ? AF_UNIX : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            if fd >= 0 { close(fd) }
            return Int(fd)
        case .thread:
            // pthread_create: clone3 gets ENOSYS and glibc falls back to clone(CLONE_THREAD).
            var thread = pthread_t()
            guard pthread_create(&thread, nil, { _ in nil }, nil) == 0 else { return -1 }
            return Int(pthread_join(thread, nil))
        case .execve:
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
            return Int(execv("/bin/true", argv))
        case .fork:
            // glibc's fork is clone without CLONE_THREAD.
            let pid = Glibc.fork()
            if pid == 0 { _exit(0) }
            return Int(pid)
        case .open:
            let fd = Glibc.open("/etc/hostname", O_RDONLY)
            if fd >= 0 { close(fd) }
            return Int(fd)
        case .ptrace:
            // ptrace is variadic in glibc, which Swift cannot call directly: CHost wraps it.
            return chost_ptrace_traceme() < 0 ? -1 : 0
        case .mprotectExec:
            let page = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let page, page != MAP_FAILED else { return -1 }
            return Int(mprotect(page, 4096, PROT_READ | PROT_EXEC))
        case .kill:
            return Int(Glibc.kill(Glibc.getpid(), 0))
        case .kvmIoctl:
            return Int(Glibc.ioctl(-1, UInt(0xAE00)))  // KVM_GET_API_VERSION
        case .terminalIoctl:
            return Int(Glibc.ioctl(-1, UInt(TCGETS)))
        case .pwrite:
            var byte: UInt8 = 0
            return Glibc.pwrite(-1, &byte, 1, 0)
        case .unlink:
            return Int(Glibc.unlink("/nonexistent/swiftlet-seccomp-probe"))
        case .tapOffloadIoctl:
            return Int(Glibc.ioctl(-1, UInt(chost_TUNSETOFFLOAD()), 0))
        }
    }

    /// The real user and group ids the probe ran as (after a privilege drop).
    public static var credentials: (uid: UInt32, gid: UInt32) { (getuid(), getgid()) }
}
