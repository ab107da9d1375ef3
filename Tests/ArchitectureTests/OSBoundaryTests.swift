import Foundation
import Testing

/// The architecture's rules that the compiler does not enforce, checked on the source tree itself:
/// no system call outside the OS layer. (Text-level checks: Foundation is fine in a test.)
@Suite struct OSBoundaryTests {
    /// Targets allowed to call the C library's system-call wrappers: the OS layer and KVM.
    static let osLayer: Set<String> = ["Host", "KVM", "CHost", "CKVM"]

    /// The libc wrappers of system calls (and the thread/signal/time calls that are one), as our
    /// code would spell them.
    static let systemCalls: Set<String> = [
        "open", "openat", "close", "read", "write", "pread", "pwrite", "readv", "writev", "preadv", "pwritev",
        "ioctl", "mmap", "munmap", "mprotect", "madvise", "mincore", "mremap", "msync",
        "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "eventfd", "timerfd_create", "timerfd_settime",
        "socket", "socketpair", "bind", "listen", "accept", "accept4", "connect", "send", "sendto", "sendmsg",
        "recv", "recvfrom", "recvmsg", "shutdown", "setsockopt", "getsockopt", "getsockname", "getpeername",
        "poll", "ppoll", "select", "fcntl", "fstat", "stat", "lstat", "statfs", "fstatfs", "unlink", "unlinkat",
        "rename", "renameat", "mkdir", "rmdir", "access", "readlink", "symlink", "chmod", "fchmod", "chown",
        "truncate", "ftruncate", "fsync", "fdatasync", "fallocate", "lseek", "dup", "dup2", "dup3", "pipe", "pipe2",
        "kill", "tgkill", "waitpid", "waitid", "wait4", "fork", "vfork", "execv", "execve", "execvp",
        "posix_spawn", "posix_spawnp", "signal", "sigaction", "sigprocmask", "pthread_sigmask", "sigwait",
        "pthread_kill", "pthread_create", "pthread_join", "pthread_self", "clock_gettime", "gettimeofday",
        "nanosleep", "usleep", "getpid", "getppid", "gettid", "prctl", "ptrace", "isatty", "tcgetattr",
        "tcsetattr", "flock", "setsid", "setuid", "setgid", "chdir", "chroot", "umask", "getrandom", "syscall",
        "opendir", "readdir", "dlsym", "dlopen", "pthread_mutex_init", "pthread_mutex_lock", "pthread_mutex_unlock",
        "pthread_mutex_destroy", "pthread_cond_init", "pthread_cond_wait", "pthread_cond_timedwait",
        "pthread_cond_signal", "pthread_cond_broadcast", "pthread_cond_destroy", "strerror",
    ]

    static var sourcesDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources")
    }

    /// Every call of a system-call wrapper in `text`: a bare name followed by "(" that is not a
    /// method (`x.read(`), a declaration (`func read(`), an enum case, or a name the file declares
    /// itself (a function, a closure parameter, a local).
    static func systemCallSites(in text: String) -> [(line: Int, name: String)] {
        let declared = declaredNames(in: text)
        var sites: [(Int, String)] = []
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = stripCommentsAndStrings(String(raw))
            let scalars = Array(line.unicodeScalars)
            var i = 0
            while i < scalars.count {
                guard isIdentifierHead(scalars[i]), i == 0 || !isIdentifier(scalars[i - 1]) else { i += 1; continue }
                var j = i
                while j < scalars.count, isIdentifier(scalars[j]) { j += 1 }
                let name = String(String.UnicodeScalarView(scalars[i..<j]))
                let before = String(String.UnicodeScalarView(scalars[..<i])).trimmingCharacters(in: .whitespaces)
                let qualifiedByLibc = before.hasSuffix("Glibc.")
                if j < scalars.count, scalars[j] == "(", systemCalls.contains(name), !declared.contains(name),
                   qualifiedByLibc || !(before.hasSuffix(".") || before.hasSuffix("func") || before.hasSuffix("case")) {
                    sites.append((number + 1, name))
                }
                i = j
            }
        }
        return sites
    }

    static func declaredNames(in text: String) -> Set<String> {
        var names: Set<String> = []
        let patterns = [#"func\s+([A-Za-z_]\w*)"#, #"(?:let|var)\s+([A-Za-z_]\w*)"#, #"[(,]\s*([A-Za-z_]\w*)\s*:"#, #"case\s+([A-Za-z_]\w*)"#]
        for pattern in patterns {
            let regex = try! NSRegularExpression(pattern: pattern)
            for match in regex.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                if let range = Range(match.range(at: 1), in: text) { names.insert(String(text[range])) }
            }
        }
        return names
    }

    static func stripCommentsAndStrings(_ line: String) -> String {
        var out = ""
        var inString = false
        var previous: Character = " "
        for c in line {
            if inString {
                if c == "\"" && previous != "\\" { inString = false }
            } else if c == "\"" {
                inString = true
            } else if c == "/" && previous == "/" {
                out.removeLast()
                break
            } else {
                out.append(c)
            }
            previous = c
        }
        return out
    }

    static func isIdentifierHead(_ s: Unicode.Scalar) -> Bool { s == "_" || s.properties.isAlphabetic }
    static func isIdentifier(_ s: Unicode.Scalar) -> Bool { isIdentifierHead(s) || ("0"..."9").contains(s) }

    @Test func theDetectorFindsCallsAndSkipsLookAlikes() {
        let text = """
        let n = read(fd, &buffer, 4)
        _ = Glibc.write(fd, p, 1)
        x.read(into: b)
        func open(_ path: String) {}
        // close(fd) in a comment
        print("usleep(1) in a string")
        case signal(UInt8)
        """
        let names = Self.systemCallSites(in: text).map(\.name)
        #expect(names == ["read", "write"])
    }

    @Test func noSystemCallOutsideTheOSLayer() throws {
        let fileManager = FileManager.default
        var offenders: [String] = []
        for target in try fileManager.contentsOfDirectory(atPath: Self.sourcesDirectory.path).sorted()
        where !Self.osLayer.contains(target) {
            let root = Self.sourcesDirectory.appendingPathComponent(target)
            guard let walker = fileManager.enumerator(atPath: root.path) else { continue }
            for case let file as String in walker where file.hasSuffix(".swift") {
                let text = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
                for site in Self.systemCallSites(in: text) {
                    offenders.append("\(target)/\(file):\(site.line): \(site.name)(")
                }
            }
        }
        #expect(offenders.isEmpty, "system calls outside Host/KVM/CHost/CKVM:\n\(offenders.joined(separator: "\n"))")
    }
}
