import CHost
import Host
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A failed system call or process operation, as one line.
public struct ProcessError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
    static func errno(_ what: String, _ code: Int32 = Glibc.errno) -> ProcessError {
        ProcessError("\(what): \(HostError.text(errno: code))")
    }
}

/// Process plumbing for the supervisor: spawning VM processes in their own session, pidfds, and
/// identifying a process again after a daemon restart (pid + start time + command line).
public enum ProcessTools {
    // glibc's <spawn.h> defines POSIX_SPAWN_SETSID (0x80) only under _GNU_SOURCE, which Swift's
    // Glibc module does not see.
    static let spawnSetSID: Int16 = 0x80

    /// Starts `path argv` with stdin from /dev/null and stdout+stderr appended to `outputPath`, in a
    /// new session (so a terminal's Ctrl-C or the daemon's death never reaches it), with the
    /// signal mask and the dispositions of the usual signals reset (the daemon blocks SIGTERM and
    /// ignores SIGPIPE; both would otherwise survive exec). Returns the pid.
    static func spawn(path: String, arguments: [String], outputPath: String) throws(ProcessError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o640)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Descriptors the daemon holds (client connections, pidfds) must not leak into a VM even if
        // one was opened without close-on-exec.
        _ = chost_spawn_close_from(&actions, 3)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGQUIT] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, spawnSetSID | Int16(POSIX_SPAWN_SETSIGMASK) | Int16(POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw ProcessError.errno("cannot start \(path)", rc) }
        return pid
    }

    /// A pidfd for `pid` (close-on-exec, as the kernel always makes them), or nil when the kernel or
    /// libc has none or the process is gone.
    static func pidfdOpen(_ pid: pid_t) -> Int32? {
        let fd = chost_pidfd_open(pid)
        return fd >= 0 ? fd : nil
    }

    /// Sends `signal` through the pidfd when there is one (it cannot hit a recycled pid), else by pid.
    static func send(_ signal: Int32, pid: pid_t, pidfd: Int32?) -> Bool {
        if let pidfd {
            let result = chost_pidfd_send_signal(pidfd, signal)
            if result != -ENOSYS { return result == 0 }
        }
        return kill(pid, signal) == 0
    }

    /// Facts about a live process from /proc/PID/stat: its start time (clock ticks after boot, field
    /// 22) and its state letter (Z for a zombie). Nil when there is no such process.
    static func stat(_ pid: pid_t) -> (startTicks: UInt64, state: Character)? {
        guard pid > 0, let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        // The command name in parentheses may itself contain spaces and parentheses.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let ticks = UInt64(fields[19]) else { return nil }
        return (ticks, state)
    }

    /// The command line of `pid`, split at NULs.
    static func commandLine(_ pid: pid_t) -> [String] {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return [] }
        return data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Whether `pid` is still the very process the daemon started: alive (not a zombie), started at
    /// `startTicks`, and serving `apiSocket`. Guards against pid reuse after a daemon restart.
    static func isSameProcess(pid: pid_t, startTicks: UInt64, apiSocket: String) -> Bool {
        guard let s = stat(pid), s.state != "Z", s.startTicks == startTicks else { return false }
        return commandLine(pid).contains(apiSocket)
    }

    /// The outcome of a waited-for child: exit code or terminating signal.
    enum Termination: Equatable { case exited(Int32), signaled(Int32) }

    /// Reaps `pid` if it has ended (our own child only). Nil while it runs.
    static func reap(_ pid: pid_t) -> Termination?? {
        var status: Int32 = 0
        var rc: pid_t
        repeat { rc = waitpid(pid, &status, WNOHANG) } while rc < 0 && errno == EINTR
        if rc == 0 { return .some(nil) }       // still running
        if rc < 0 { return nil }               // not our child (ECHILD): the caller checks otherwise
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import.
        let signal = status & 0x7f
        if signal == 0 { return .some(.exited((status >> 8) & 0xff)) }
        return .some(.signaled(signal))
    }

    /// The executable's own directory (for the default `swiftlet` beside `swiftletd`).
    static func executableDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let path = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (path as NSString).deletingLastPathComponent
    }

    /// Creates a close-on-exec, non-blocking pipe: the supervisor's wake-up line.
    static func pipe() throws(ProcessError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard Glibc.pipe(&fds) == 0 else { throw ProcessError.errno("pipe") }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        return (fds[0], fds[1])
    }
}
