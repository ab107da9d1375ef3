import Glibc
import Testing
@testable import Host

@Suite struct ProcessTests {
    let output = "/tmp/swiftlet-process-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

    /// Waits (without polling) until the process behind `descriptor` has exited.
    func waitForExit(_ descriptor: ProcessDescriptor) throws {
        let poller = try Poller()
        try poller.add(descriptor.fd, token: 1)
        var ready = false
        for _ in 0..<100 where !ready { _ = poller.wait(timeoutNanoseconds: 100_000_000) { _ in ready = true } }
        #expect(ready)
    }

    func spawnShell(_ script: String) throws -> (pid: Int32, descriptor: ProcessDescriptor) {
        let pid = try HostProcess.spawn(path: "/bin/sh", arguments: ["-c", script], outputPath: output)
        let descriptor = try #require(ProcessDescriptor(pid: pid))
        return (pid, descriptor)
    }

    func outputLines() throws -> [String] {
        String(decoding: try readWholeFile(output), as: UTF8.self).split(separator: "\n").map(String.init)
    }

    @Test func spawnRedirectsOutputAndReapsTheExitCode() throws {
        defer { unlink(output) }
        let (pid, descriptor) = try spawnShell("echo out; echo err >&2; read line; echo \"stdin:$line.\"; exit 3")
        try waitForExit(descriptor)
        #expect(descriptor.hasExited)
        #expect(HostProcess.reap(pid) == .ended(.exited(3)))
        #expect(HostProcess.reap(pid) == .notChild)
        #expect(try outputLines() == ["out", "err", "stdin:."])
    }

    @Test func spawnStartsANewSessionWithACleanMaskAndNoInheritedDescriptors() throws {
        defer { unlink(output) }
        // Not close-on-exec on purpose: the spawn must close it anyway.
        let leaked = open("/dev/null", O_RDONLY)
        defer { close(leaked) }
        #expect(leaked > 2)
        // The shell reads its own mask with builtins: a `grep` child could read it while dash
        // still has every signal blocked around the fork of that very child (under ASan's
        // timing it did).
        let script = "echo $$; cut -d' ' -f6 /proc/$$/stat; while read k v; do [ \"$k\" = SigBlk: ] && echo \"$k $v\"; done < /proc/$$/status; ls /proc/$$/fd"
        // Spawned from a thread that blocks SIGTERM, as the daemon's threads do.
        nonisolated(unsafe) var spawned: Result<(pid: Int32, descriptor: ProcessDescriptor), any Error>?
        let thread = try HostThread(name: "spawn-test") {
            Signals.block([SIGTERM])
            spawned = Result { try spawnShell(script) }
        }
        thread.join()
        let (pid, descriptor) = try #require(spawned).get()
        try waitForExit(descriptor)
        #expect(HostProcess.reap(pid) == .ended(.exited(0)))
        let lines = try outputLines()
        #expect(lines.count >= 3)
        #expect(lines[0] == "\(pid)")
        #expect(lines[1] == "\(pid)")  // session id = its own pid: setsid
        #expect(lines[2].hasSuffix("0000000000000000"))
        #expect(!lines.dropFirst(3).contains("\(leaked)"))
    }

    @Test func spawnOfAMissingProgramNamesIt() {
        #expect(throws: HostError("cannot start /nonexistent/prog", errno: ENOENT)) {
            try HostProcess.spawn(path: "/nonexistent/prog", arguments: [], outputPath: "/dev/null")
        }
    }

    @Test func identityDescriptorAndSignals() throws {
        defer { unlink(output) }
        let (pid, descriptor) = try spawnShell("exec sleep 30")
        #expect(HostProcess.reap(pid) == .running)
        let identity = try #require(ProcessIdentity(currentOf: pid))
        #expect(identity.isRunning)
        #expect(!ProcessIdentity(pid: pid, startTicks: identity.startTicks + 1).isRunning)
        #expect(!descriptor.hasExited)
        #expect(HostProcess.send(SIGKILL, to: pid, descriptor: descriptor))
        try waitForExit(descriptor)
        #expect(!identity.isRunning)  // a zombie until reaped
        #expect(ProcessStat(pid: pid)?.state == "Z")
        #expect(HostProcess.reap(pid) == .ended(.signaled(SIGKILL)))
        #expect(ProcessStat(pid: pid) == nil)
        #expect(ProcessIdentity(currentOf: pid) == nil)
        #expect(HostProcess.commandLine(pid).isEmpty)
    }

    @Test func commandLineAndExecutable() throws {
        #expect(HostProcess.commandLine(getpid()) == CommandLine.arguments)
        let exe = try #require(HostProcess.executablePath())
        #expect(exe.hasPrefix("/"))
    }

    @Test func statParsesANameWithSpacesAndParentheses() {
        let text = "42 (a b) (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10"
        #expect(ProcessStat(parsing: text)?.startTicks == 123456)
        #expect(ProcessStat(parsing: text)?.state == "S")
        #expect(ProcessStat(parsing: "42 (short) S 1") == nil)
    }

    @Test func waitStatusDecoding() {
        #expect(ProcessTermination(waitStatus: 3 << 8) == .exited(3))
        #expect(ProcessTermination(waitStatus: 9) == .signaled(9))
        #expect(ProcessTermination(waitStatus: 0x80 | 11) == .signaled(11))  // core dumped
    }
}

@Suite struct FileLockTests {
    @Test func secondHolderIsRefusedUntilTheFirstLetsGo() throws {
        let path = "/tmp/swiftlet-lock-test-\(getpid())"
        defer { unlink(path) }
        var first = try FileLock.tryAcquire(path)
        #expect(first != nil)
        #expect(try FileLock.tryAcquire(path) == nil)
        first = nil
        #expect(try FileLock.tryAcquire(path) != nil)
        #expect(throws: HostError.self) { try FileLock.tryAcquire("/nonexistent/dir/lock") }
    }
}
