import CHost
#if canImport(Glibc)
import Glibc
#endif

/// How a child process ended: its exit code, or the signal that terminated it.
public enum ProcessTermination: Sendable, Equatable {
    case exited(Int32)
    case signaled(Int32)

    /// Decodes a wait status (WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import).
    init(waitStatus status: Int32) {
        let signal = status & 0x7f
        self = signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal)
    }
}

/// Other processes: starting them, signalling them, reaping them, reading what /proc says about
/// them. The one place our code calls posix_spawn, kill and waitpid.
public enum HostProcess {
    /// The signals whose dispositions a new process gets back at their defaults: a supervisor
    /// ignores SIGPIPE and blocks the stop signals, and both would otherwise survive exec.
    static let signalsReset: [Int32] = [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGQUIT]

    // glibc's <spawn.h> defines POSIX_SPAWN_SETSID (0x80) only under _GNU_SOURCE, which Swift's
    // Glibc module does not see.
    private static let spawnSetSID: Int16 = 0x80

    /// Starts `path arguments` with stdin from /dev/null and stdout+stderr going to `outputPath`
    /// (created or truncated, mode 0640), in a new session (so a terminal's Ctrl-C or the parent's
    /// death never reaches it), with an empty signal mask and `signalsReset` at their defaults,
    /// and with no descriptor above stderr inherited (even one opened without close-on-exec).
    /// Returns the pid. The error's operation is "cannot start PATH".
    public static func spawn(path: String, arguments: [String], outputPath: String) throws(HostError) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o640)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        _ = chost_spawn_close_from(&actions, 3)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in signalsReset { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, spawnSetSID | Int16(POSIX_SPAWN_SETSIGMASK) | Int16(POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw HostError("cannot start \(path)", errno: rc) }
        return pid
    }

    /// Starts `path arguments` as a confined helper of this process (an extension): stdin from
    /// /dev/null, stdout and stderr shared with ours, `channel` as its descriptor 3 and no other
    /// descriptor inherited, `SWIFTLET_EXTENSION_FD=3` added to the environment, an empty signal
    /// mask and `signalsReset` at their defaults; then `user`'s group and user (no supplementary
    /// groups), no_new_privs, and `policy`'s seccomp filter, before it executes. Returns the pid.
    /// The error's operation is "cannot start PATH".
    public static func spawnHelper(path: String, arguments: [String], channel: Int32, user: (uid: UInt32, gid: UInt32)?,
                                   policy: SeccompPolicy?) throws(HostError) -> Int32 {
        var environment: [String] = []
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if !text.hasPrefix("SWIFTLET_EXTENSION_FD=") { environment.append(text) }
            entry += 1
        }
        environment.append("SWIFTLET_EXTENSION_FD=3")
        let filter = (policy?.program() ?? []).map { sock_filter(code: $0.code, jt: $0.jt, jf: $0.jf, k: $0.k) }
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer { for p in argv + envp { free(p) } }
        var error: Int32 = 0
        let pid = filter.withUnsafeBufferPointer { program in
            chost_spawn_confined(path, argv, envp, channel, program.baseAddress, UInt16(program.count),
                                 user.map { Int32(bitPattern: $0.uid) } ?? -1, user.map { Int32(bitPattern: $0.gid) } ?? -1, &error)
        }
        guard pid > 0 else { throw HostError("cannot start \(path)", errno: error) }
        return pid
    }

    /// The value of the environment variable `name`, or nil.
    public static func environmentValue(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// Replaces this process with `path arguments` (execv; argv[0] is `argumentZero`), keeping its
    /// pid, descriptors, signal mask and environment. Returns only on failure.
    public static func replace(with path: String, argumentZero: String, arguments: [String]) -> HostError {
        let argv: [UnsafeMutablePointer<CChar>?] = ([argumentZero] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        execv(path, argv)
        return HostError("cannot run \(path)", errno: errno)
    }

    /// A companion executable of ours: `name` beside the running executable (a build directory, or
    /// PREFIX/bin), else in PREFIX/libexec/swiftlet where scripts/install puts helpers that are not
    /// commands of their own, else (from such a helper) in PREFIX/bin. Nil when none exists.
    public static func companionExecutable(_ name: String) -> String? {
        guard let path = executablePath(), let slash = path.lastIndex(of: "/") else { return nil }
        let directory = String(path[..<slash])
        for candidate in [directory + "/" + name, directory + "/../libexec/swiftlet/" + name, directory + "/../../bin/" + name] where access(candidate, X_OK) == 0 {
            return candidate
        }
        return nil
    }

    /// Whether a debugger (ptrace) is attached to this process: /proc/self/status's TracerPid is not
    /// 0. True when that cannot be read, so callers that would disturb a debugger stay careful.
    public static func isBeingTraced() -> Bool {
        guard let text = try? readWholeFile("/proc/self/status"), let status = String(validating: text, as: UTF8.self),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("TracerPid:") }) else { return true }
        return line.dropFirst("TracerPid:".count).trimmingPrefix(while: \.isWhitespace) != "0"
    }

    /// Sends `signal` to `pid` (kill). False when there is no such process or it is not ours to signal.
    public static func send(_ signal: Int32, to pid: Int32) -> Bool { kill(pid, signal) == 0 }

    /// Sends `signal` through `descriptor` when there is one and the kernel supports it (it cannot
    /// hit a recycled pid), else by pid.
    public static func send(_ signal: Int32, to pid: Int32, descriptor: ProcessDescriptor?) -> Bool {
        if let sent = descriptor?.send(signal) { return sent }
        return send(signal, to: pid)
    }

    /// A child's state as `reap` finds it.
    public enum ChildState: Sendable, Equatable {
        /// Still running.
        case running
        /// It ended and is reaped now.
        case ended(ProcessTermination)
        /// Not a child of this process (ECHILD), or already reaped: ask some other way.
        case notChild
    }

    /// Reaps `pid` if it has ended (waitpid WNOHANG); never waits.
    public static func reap(_ pid: Int32) -> ChildState {
        var status: Int32 = 0
        var rc: pid_t
        repeat { rc = waitpid(pid, &status, WNOHANG) } while rc < 0 && errno == EINTR
        if rc == 0 { return .running }
        if rc < 0 { return .notChild }
        return .ended(ProcessTermination(waitStatus: status))
    }

    /// The command line of `pid` (/proc/PID/cmdline split at NULs); empty when it is gone.
    public static func commandLine(_ pid: Int32) -> [String] {
        guard pid > 0, let bytes = try? readWholeFile("/proc/\(pid)/cmdline") else { return [] }
        return bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The path of the running executable (/proc/self/exe).
    public static func executablePath() -> String? { try? FileSystem.linkTarget("/proc/self/exe") }
}

/// What /proc/PID/stat says about a live process: its start time (clock ticks after boot, field
/// 22) and its state letter (Z for a zombie).
public struct ProcessStat: Sendable, Equatable {
    public var startTicks: UInt64
    public var state: Character

    /// Reads /proc/`pid`/stat; nil when there is no such process.
    public init?(pid: Int32) {
        guard pid > 0, let bytes = try? readWholeFile("/proc/\(pid)/stat") else { return nil }
        self.init(parsing: String(decoding: bytes, as: UTF8.self))
    }

    /// Parses the text of a stat file.
    public init?(parsing text: String) {
        // The command name in parentheses may itself contain spaces and parentheses.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let ticks = UInt64(fields[19]) else { return nil }
        startTicks = ticks
        self.state = state
    }
}

/// A process named for good: pid plus start time, which a recycled pid does not repeat. What a
/// supervisor records to find its processes again after its own restart.
public struct ProcessIdentity: Sendable, Equatable {
    public var pid: Int32
    public var startTicks: UInt64

    public init(pid: Int32, startTicks: UInt64) { self.pid = pid; self.startTicks = startTicks }

    /// The identity of the process `pid` is now; nil when there is none.
    public init?(currentOf pid: Int32) {
        guard let stat = ProcessStat(pid: pid) else { return nil }
        self.init(pid: pid, startTicks: stat.startTicks)
    }

    /// Whether this very process still runs: the pid exists, started at `startTicks`, and is not a zombie.
    public var isRunning: Bool {
        guard let stat = ProcessStat(pid: pid) else { return false }
        return stat.state != "Z" && stat.startTicks == startTicks
    }
}

/// A pidfd (pidfd_open): refers to one process for good, so a signal sent through it cannot hit a
/// recycled pid, and it turns readable (in a `Poller`) once the process has exited. Owned:
/// closed on deinit, which also takes it out of any epoll set it was added to.
public final class ProcessDescriptor: Sendable {
    /// The descriptor, for `Poller.add`. Valid while this object lives.
    public let fd: Int32

    /// A pidfd for `pid`, or nil when the kernel has none (before 5.3) or the process is gone.
    public init?(pid: Int32) {
        let fd = chost_pidfd_open(pid)
        guard fd >= 0 else { return nil }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Sends `signal`; nil when the kernel has no pidfd_send_signal (then send by pid).
    public func send(_ signal: Int32) -> Bool? {
        let result = chost_pidfd_send_signal(fd, signal)
        if result == -ENOSYS { return nil }
        return result == 0
    }

    /// Whether the process has exited (the pidfd is readable); never waits.
    public var hasExited: Bool { chost_poll2(fd, -1, 0) & 1 != 0 }
}
