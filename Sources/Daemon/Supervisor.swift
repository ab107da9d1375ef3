import Foundation
import HTTPUnix
import Host
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// An error for an API client: the HTTP status to answer and one line of explanation.
public struct DaemonError: Error, Sendable, CustomStringConvertible, Equatable {
    public var status: Int
    public var message: String
    public init(_ status: Int, _ message: String) { self.status = status; self.message = message }
    public var description: String { message }
}

/// Supervises named VMs, each in its own `swiftlet api` process (OpenBSD vmd's privilege
/// separation): spawns and configures them, watches them exit or crash, cleans up after them, and
/// after a restart of the daemon finds the ones still running from the state directory.
///
/// All mutable state lives in `entries` under `lock`; slow work (spawning, waiting for sockets,
/// API calls to a VM) happens outside it, and a per-VM `generation` makes a late result of an
/// older run harmless.
public final class Supervisor: @unchecked Sendable {
    /// How the supervisor runs VM processes.
    public struct Options: Sendable {
        public var stateDirectory: String
        /// The `swiftlet` binary that runs `swiftlet api`.
        public var swiftletPath: String
        /// VM processes drop to these ids (`--uid/--gid`).
        public var uid: UInt32?
        public var gid: UInt32?
        /// Seconds to wait for a new VM process's API socket.
        public var startTimeout: Double = 10
        /// Seconds `stop?wait=1` waits for the VM process to exit.
        public var stopTimeout: Double = 30
        /// Extra arguments for every `swiftlet api` (e.g. `--no-seccomp` in a debugging session).
        public var extraArguments: [String] = []

        public init(stateDirectory: String, swiftletPath: String, uid: UInt32? = nil, gid: UInt32? = nil) {
            self.stateDirectory = stateDirectory; self.swiftletPath = swiftletPath; self.uid = uid; self.gid = gid
        }
    }

    /// One VM's runtime facts. Mutated only under `Supervisor.lock`.
    final class Entry {
        let name: String
        /// What the next start uses (the config file's definition or the ad-hoc one).
        var definition: VMDefinition
        /// What the live (or last) process was started with.
        var active: VMDefinition?
        var inConfig: Bool
        var state: VMState = .stopped
        var pid: pid_t?
        var startTicks: UInt64?
        var startedAt: Double?
        /// Started by this daemon instance (waitpid works); adopted VMs are watched via pidfd or /proc.
        var ownChild = false
        var pidfd: Int32?
        var exitStatus: Int32?
        var signal: Int32?
        var crashes = 0
        var lastError: String?
        var stopRequested = false
        var forceRequested = false
        /// The daemon killed it because configuring or booting failed (not a stop, not a crash).
        var startFailed = false
        var generation = 0

        init(name: String, definition: VMDefinition, inConfig: Bool) {
            self.name = name; self.definition = definition; self.inConfig = inConfig
        }
    }

    public let options: Options
    let logger: Logger
    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private let wake: (read: Int32, write: Int32)
    private var monitor: Thread?
    private var finished = false

    /// Creates the state directory if needed, reads back what a previous daemon left there
    /// (adopting VM processes that still run), and starts watching.
    public init(options: Options, config: DaemonConfig, logger: Logger) throws(DaemonError) {
        self.options = options
        self.logger = logger
        do { try VMPaths.checkDirectory(options.stateDirectory) } catch { throw DaemonError(400, error.message) }
        do {
            try FileManager.default.createDirectory(atPath: options.stateDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw DaemonError(500, "cannot create state directory \(options.stateDirectory): \(error.localizedDescription)")
        }
        do { wake = try ProcessTools.pipe() } catch { throw DaemonError(500, error.description) }
        for (name, definition) in config.vms {
            entries[name] = Entry(name: name, definition: definition, inConfig: true)
        }
        recover()
        let thread = Thread { [self] in monitorLoop() }
        thread.name = "vm-monitor"
        monitor = thread
        thread.start()
    }

    /// Stops watching (VM processes keep running; a new daemon adopts them).
    public func shutdown() {
        lock.lock()
        finished = true
        for e in entries.values { if let fd = e.pidfd { close(fd); e.pidfd = nil } }
        lock.unlock()
        wakeMonitor()
    }

    func paths(_ name: String) -> VMPaths { VMPaths(directory: options.stateDirectory, name: name) }

    // MARK: - queries

    public func list() -> [VMStatus] {
        lock.lock(); defer { lock.unlock() }
        return entries.values.map(status).sorted { $0.name < $1.name }
    }

    public func status(name: String) throws(DaemonError) -> VMStatus {
        lock.lock(); defer { lock.unlock() }
        guard let e = entries[name] else { throw notFound(name) }
        return status(e)
    }

    private func status(_ e: Entry) -> VMStatus {
        // A live VM shows what it runs with; otherwise what the next start would use.
        let d = e.state.isLive ? (e.active ?? e.definition) : e.definition
        var uptime: Double?
        if e.state.isLive, e.state != .starting, let startedAt = e.startedAt { uptime = max(0, Date().timeIntervalSince1970 - startedAt) }
        return VMStatus(name: e.name, state: e.state, pid: e.state.isLive ? e.pid : nil, vcpus: d.cpus, memoryMiB: d.memoryMiB,
                        uptimeSeconds: uptime, exitStatus: e.exitStatus, signal: e.signal, crashes: e.crashes, kernel: d.kernel,
                        autostart: e.definition.autostart, adHoc: !e.inConfig, lastError: e.lastError)
    }

    private func notFound(_ name: String) -> DaemonError { DaemonError(404, "no VM named '\(name)'") }

    /// The console log (all of it, or its last `tail` bytes).
    public func logs(name: String, tail: Int?) throws(DaemonError) -> [UInt8] {
        lock.lock()
        let known = entries[name] != nil
        lock.unlock()
        guard known else { throw notFound(name) }
        guard let handle = FileHandle(forReadingAtPath: paths(name).consoleLog) else { return [] }
        defer { try? handle.close() }
        if let tail, let end = try? handle.seekToEnd(), end > UInt64(tail) {
            try? handle.seek(toOffset: end - UInt64(tail))
        } else {
            try? handle.seek(toOffset: 0)
        }
        return Array((try? handle.readToEnd()) ?? Data())
    }

    /// The console socket of a running VM.
    public func consoleSocket(name: String) throws(DaemonError) -> String {
        lock.lock(); defer { lock.unlock() }
        guard let e = entries[name] else { throw notFound(name) }
        guard e.state == .running || e.state == .paused else { throw DaemonError(409, "VM '\(name)' is \(e.state.rawValue), not running") }
        return paths(name).consoleSocket
    }

    /// Every VM for `/metrics`; running VMs are asked for their counters in parallel.
    public func metrics() -> [VMMetricsSample] {
        lock.lock()
        let snapshot = entries.values.map { e in (status(e), e.state == .running || e.state == .paused) }
        lock.unlock()
        let results = Results(count: snapshot.count)
        let stateDirectory = options.stateDirectory
        DispatchQueue.concurrentPerform(iterations: snapshot.count) { i in
            guard snapshot[i].1 else { return }
            let socket = VMPaths(directory: stateDirectory, name: snapshot[i].0.name).apiSocket
            results.set(i, VMProcessAPI(socketPath: socket).metrics())
        }
        return snapshot.enumerated().map { i, item in
            let s = item.0
            return VMMetricsSample(name: s.name, state: s.state, uptimeSeconds: s.uptimeSeconds ?? 0, vcpus: s.vcpus,
                                   memoryMiB: s.memoryMiB, crashes: s.crashes, process: results.get(i))
        }
    }

    // MARK: - start

    /// Starts a VM: the configured one, or (with `definition`) an ad-hoc one. Returns when the VM
    /// runs (InstanceStart answered) or throws with the reason it did not.
    @discardableResult
    public func start(name: String, definition adHoc: VMDefinition? = nil) throws(DaemonError) -> VMStatus {
        guard isValidName(name) else { throw DaemonError(400, "'\(name)' is not a VM name (1 to 64 of A-Z a-z 0-9 . _ -)") }
        let paths = paths(name)
        lock.lock()
        let e: Entry
        if let existing = entries[name] {
            e = existing
            if adHoc != nil && e.inConfig {
                lock.unlock()
                throw DaemonError(409, "VM '\(name)' is defined in the config file; start it without a definition")
            }
        } else if let adHoc {
            e = Entry(name: name, definition: adHoc, inConfig: false)
            entries[name] = e
        } else {
            lock.unlock()
            throw notFound(name)
        }
        guard !e.state.isLive else {
            let state = e.state
            lock.unlock()
            throw DaemonError(409, "VM '\(name)' is already \(state.rawValue)")
        }
        if let adHoc { e.definition = adHoc }
        e.generation += 1
        let generation = e.generation
        e.state = .starting
        e.exitStatus = nil; e.signal = nil; e.lastError = nil
        e.stopRequested = false; e.forceRequested = false; e.startFailed = false
        e.pid = nil; e.startTicks = nil; e.startedAt = nil; e.ownChild = false
        e.active = e.definition
        let definition = e.definition
        // NAME.json is written once the process exists (a record without a pid helps no one).
        lock.unlock()

        // Leftovers of an earlier run would confuse the new process and the socket wait below.
        for file in [paths.apiSocket, paths.consoleSocket, paths.exitFile, paths.pidFile] { unlink(file) }
        rename(paths.consoleLog, paths.consoleLog + ".old")

        let t0 = DispatchTime.now().uptimeNanoseconds
        var arguments = ["api", "--api-sock", paths.apiSocket, "--id", name, "--console-sock", paths.consoleSocket,
                         "--console-log", paths.consoleLog, "--exit-file", paths.exitFile]
        if let uid = options.uid, let gid = options.gid { arguments += ["--uid", String(uid), "--gid", String(gid)] }
        arguments += options.extraArguments
        let pid: pid_t
        do {
            pid = try ProcessTools.spawn(path: options.swiftletPath, arguments: arguments, outputPath: paths.stderrFile)
        } catch {
            failStart(e, generation: generation, message: error.description)
            throw DaemonError(500, "VM '\(name)': \(error.description)")
        }

        lock.lock()
        e.pid = pid
        e.ownChild = true
        e.startTicks = ProcessTools.stat(pid)?.startTicks
        e.pidfd = ProcessTools.pidfdOpen(pid)
        e.startedAt = Date().timeIntervalSince1970
        try? "\(pid)\n".write(toFile: paths.pidFile, atomically: true, encoding: .utf8)
        persist(e)
        lock.unlock()
        wakeMonitor()
        logger.debug("vm process spawned", metadata: ["vm": "\(name)", "pid": "\(pid)"])

        // The API socket appears once `swiftlet api` is listening.
        let t1 = DispatchTime.now().uptimeNanoseconds
        let deadline = Date().addingTimeInterval(options.startTimeout)
        while !UnixSocket.isListening(paths.apiSocket) {
            if let failure = startAbandoned(e, generation: generation) { throw failure }
            if Date() > deadline {
                abortStart(e, generation: generation, message: "no API socket after \(Int(options.startTimeout)) s")
                throw DaemonError(500, "VM '\(name)': the VM process did not open its API socket within \(Int(options.startTimeout)) s")
            }
            usleep(1000)
        }

        let t2 = DispatchTime.now().uptimeNanoseconds
        do {
            try VMProcessAPI(socketPath: paths.apiSocket).configureAndStart(definition)
        } catch {
            if let failure = startAbandoned(e, generation: generation) { throw failure }
            abortStart(e, generation: generation, message: error.description)
            throw DaemonError(400, "VM '\(name)': \(error.description)")
        }

        // InstanceStart was answered: the VM ran, so the start succeeded. A guest that is quick
        // to finish (or a stop that came meanwhile) may already have ended it; the answer then
        // says so (stopped, with its exit status) rather than calling the start a failure. Only
        // a newer start of the same VM (another generation) makes this answer meaningless.
        lock.lock()
        guard e.generation == generation else {
            lock.unlock()
            throw DaemonError(409, "VM '\(name)' ended and was started again meanwhile")
        }
        if e.state == .starting {
            e.state = .running
            e.startedAt = Date().timeIntervalSince1970
            persist(e)
        }
        let answer = status(e)
        lock.unlock()
        let t3 = DispatchTime.now().uptimeNanoseconds
        func ms(_ a: UInt64, _ b: UInt64) -> String { String(format: "%.1f", Double(b - a) / 1e6) }
        // Where a start's time goes: spawning, until the API socket listens, configuring + booting.
        logger.info("vm started", metadata: ["vm": "\(name)", "pid": "\(pid)", "vcpus": "\(definition.cpus)",
                                             "memory_mib": "\(definition.memoryMiB)", "kernel": "\(definition.kernel)",
                                             "spawn_ms": "\(ms(t0, t1))", "socket_ms": "\(ms(t1, t2))", "boot_ms": "\(ms(t2, t3))"])
        return answer
    }

    /// Nil while the start may continue; the error to answer when the process ended or a stop
    /// was asked for meanwhile.
    private func startAbandoned(_ e: Entry, generation: Int) -> DaemonError? {
        lock.lock(); defer { lock.unlock() }
        if e.generation == generation && e.state == .starting { return nil }
        if e.generation == generation && e.state == .stopping { return DaemonError(409, "VM '\(e.name)' was stopped while starting") }
        var message = "VM '\(e.name)': the VM process ended while starting"
        if let status = e.exitStatus { message += " (exit status \(status))" }
        if let signal = e.signal { message += " (signal \(signal))" }
        if let error = e.lastError { message += ": \(error)" }
        return DaemonError(500, message)
    }

    /// A start that failed before a process existed.
    private func failStart(_ e: Entry, generation: Int, message: String) {
        lock.lock()
        if e.generation == generation {
            e.state = .stopped
            e.lastError = message
            e.startedAt = nil
            persist(e)
        }
        lock.unlock()
        logger.error("vm start failed", metadata: ["vm": "\(e.name)", "error": "\(message)"])
    }

    /// A start that failed with a process: kill it (it never ran a guest) and wait until the
    /// monitor has recorded its end, so the answer and `status` agree.
    private func abortStart(_ e: Entry, generation: Int, message: String) {
        lock.lock()
        guard e.generation == generation, e.state.isLive, let pid = e.pid else { lock.unlock(); return }
        e.stopRequested = true
        e.forceRequested = true
        e.startFailed = true
        e.lastError = message
        _ = ProcessTools.send(SIGKILL, pid: pid, pidfd: e.pidfd)
        lock.unlock()
        wakeMonitor()
        logger.error("vm start failed", metadata: ["vm": "\(e.name)", "pid": "\(pid)", "error": "\(message)"])
        waitUntilEnded(e, generation: generation, timeout: 5)
    }

    private func waitUntilEnded(_ e: Entry, generation: Int, timeout: Double) {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            lock.lock()
            let ended = e.generation != generation || !e.state.isLive
            lock.unlock()
            if ended { return }
            usleep(2000)
        }
    }

    // MARK: - stop, pause, resume, remove

    /// SIGTERM (the VM process stops the VM cleanly) or, with `force`, SIGKILL. With `wait`,
    /// returns once the process has exited.
    @discardableResult
    public func stop(name: String, force: Bool = false, wait: Bool = false) throws(DaemonError) -> VMStatus {
        lock.lock()
        guard let e = entries[name] else { lock.unlock(); throw notFound(name) }
        guard e.state.isLive else {
            let state = e.state
            lock.unlock()
            throw DaemonError(409, "VM '\(name)' is not running (\(state.rawValue))")
        }
        guard let pid = e.pid else {
            lock.unlock()
            throw DaemonError(409, "VM '\(name)' is starting; try again in a moment")
        }
        let generation = e.generation
        e.stopRequested = true
        if force { e.forceRequested = true }
        e.state = .stopping
        persist(e)
        let sent = ProcessTools.send(force ? SIGKILL : SIGTERM, pid: pid, pidfd: e.pidfd)
        lock.unlock()
        wakeMonitor()
        logger.info("vm stop requested", metadata: ["vm": "\(name)", "pid": "\(pid)", "force": "\(force)", "signal_sent": "\(sent)"])
        if wait {
            waitUntilEnded(e, generation: generation, timeout: options.stopTimeout)
            lock.lock()
            let ended = e.generation != generation || !e.state.isLive
            lock.unlock()
            if !ended {
                throw DaemonError(504, "VM '\(name)' did not exit within \(Int(options.stopTimeout)) s (stop it with force)")
            }
        }
        return try status(name: name)
    }

    /// Pauses (`true`) or resumes a running VM through its API (PATCH /vm).
    @discardableResult
    public func setPaused(name: String, _ paused: Bool) throws(DaemonError) -> VMStatus {
        lock.lock()
        guard let e = entries[name] else { lock.unlock(); throw notFound(name) }
        let required: VMState = paused ? .running : .paused
        guard e.state == required else {
            let state = e.state
            lock.unlock()
            throw DaemonError(409, "VM '\(name)' is \(state.rawValue), not \(required.rawValue)")
        }
        let generation = e.generation
        lock.unlock()
        do { try VMProcessAPI(socketPath: paths(name).apiSocket).setPaused(paused) } catch {
            throw DaemonError(400, "VM '\(name)': \(error.description)")
        }
        lock.lock()
        if e.generation == generation && (e.state == .running || e.state == .paused) {
            e.state = paused ? .paused : .running
            persist(e)
        }
        lock.unlock()
        logger.info(paused ? "vm paused" : "vm resumed", metadata: ["vm": "\(name)"])
        return try status(name: name)
    }

    /// Forgets an ad-hoc VM that is not running, with its state files.
    public func remove(name: String) throws(DaemonError) {
        lock.lock()
        guard let e = entries[name] else { lock.unlock(); throw notFound(name) }
        guard !e.inConfig else { lock.unlock(); throw DaemonError(409, "VM '\(name)' is defined in the config file") }
        guard !e.state.isLive else { lock.unlock(); throw DaemonError(409, "VM '\(name)' is \(e.state.rawValue); stop it first") }
        entries[name] = nil
        lock.unlock()
        let p = paths(name)
        for file in [p.stateFile, p.exitFile, p.stderrFile, p.consoleLog, p.consoleLog + ".old", p.pidFile] { unlink(file) }
        logger.info("vm removed", metadata: ["vm": "\(name)"])
    }

    // MARK: - config reload

    /// Applies a new config: definitions change for the next start; a VM removed from the config
    /// keeps running (listed as ad hoc) or, when not running, is forgotten. New autostart VMs
    /// start in the background; their names are returned.
    @discardableResult
    public func reload(config: DaemonConfig) -> [String] {
        lock.lock()
        var added: [String] = []
        for (name, e) in entries where e.inConfig && config.vms[name] == nil {
            if e.state.isLive {
                e.inConfig = false
                persist(e)
            } else {
                entries[name] = nil
                unlink(paths(name).stateFile)
            }
        }
        for (name, definition) in config.vms {
            if let e = entries[name] {
                e.definition = definition
                e.inConfig = true
            } else {
                entries[name] = Entry(name: name, definition: definition, inConfig: true)
                if definition.autostart { added.append(name) }
            }
        }
        lock.unlock()
        logger.info("config reloaded", metadata: ["vms": "\(config.vms.count)"])
        startInBackground(added.sorted())
        return added.sorted()
    }

    /// Starts the configured autostart VMs that are not running, in the background; returns
    /// their names.
    @discardableResult
    public func autostart() -> [String] {
        lock.lock()
        let names = entries.values.filter { $0.inConfig && $0.definition.autostart && !$0.state.isLive }.map(\.name).sorted()
        lock.unlock()
        startInBackground(names)
        return names
    }

    private func startInBackground(_ names: [String]) {
        guard !names.isEmpty else { return }
        DispatchQueue.global().async { [self] in startAll(names) }
    }

    /// Starts `names` a few at a time and returns when all have been tried, logging failures.
    func startAll(_ names: [String], concurrency: Int = 4) {
        let semaphore = DispatchSemaphore(value: concurrency)
        let group = DispatchGroup()
        for name in names {
            semaphore.wait()
            group.enter()
            DispatchQueue.global().async { [self] in
                defer { semaphore.signal(); group.leave() }
                do { try start(name: name) } catch {
                    logger.error("autostart failed", metadata: ["vm": "\(name)", "error": "\(error)"])
                }
            }
        }
        group.wait()
    }

    // MARK: - watching processes

    private func wakeMonitor() {
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
    }

    /// Sleeps in poll() on the pidfds of live VMs (and a wake-up pipe), then checks every live VM.
    /// The timeout also covers VMs without a pidfd (an old kernel), checked through /proc.
    private func monitorLoop() {
        while true {
            lock.lock()
            if finished { lock.unlock(); return }
            var fds = [pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
            for e in entries.values where e.state.isLive { if let fd = e.pidfd { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) } }
            lock.unlock()
            _ = poll(&fds, nfds_t(fds.count), 500)
            var drain = [UInt8](repeating: 0, count: 64)
            while read(wake.read, &drain, drain.count) > 0 {}
            checkProcesses()
        }
    }

    /// Finds VM processes that have ended and records how.
    func checkProcesses() {
        lock.lock()
        let live = entries.values.compactMap { e -> (Entry, Int, pid_t, Bool, Int32?, UInt64?)? in
            guard e.state.isLive, let pid = e.pid else { return nil }
            return (e, e.generation, pid, e.ownChild, e.pidfd, e.startTicks)
        }
        lock.unlock()
        for (e, generation, pid, ownChild, pidfd, startTicks) in live {
            if ownChild, let reaped = ProcessTools.reap(pid) {
                if let termination = reaped { processEnded(e, generation: generation, termination: termination) }
                continue
            }
            // Not our child (adopted after a daemon restart): the pidfd turns readable at exit.
            var ended: Bool
            if let pidfd {
                var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
                ended = poll(&p, 1, 0) > 0
            } else {
                ended = !ProcessTools.isSameProcess(pid: pid, startTicks: startTicks ?? 0, apiSocket: paths(e.name).apiSocket)
                    && ProcessTools.stat(pid).map { $0.startTicks != startTicks || $0.state == "Z" } ?? true
            }
            if ended { processEnded(e, generation: generation, termination: nil) }
        }
    }

    /// Records the end of a VM process: stopped (an exit status; or a signal we sent) or crashed
    /// (a signal nobody asked for, or gone without its exit file). Cleans up its files.
    private func processEnded(_ e: Entry, generation: Int, termination: ProcessTools.Termination?) {
        let paths = paths(e.name)
        let fromFile = Self.readExitFile(paths.exitFile)
        lock.lock()
        guard e.generation == generation, e.state.isLive else { lock.unlock(); return }
        let pid = e.pid ?? 0
        var code: Int32?
        var signal: Int32?
        switch termination {
        case .exited(let c)?: code = c
        case .signaled(let s)?: signal = s
        case nil: code = fromFile
        }
        if code == nil && signal == nil && e.forceRequested { signal = SIGKILL }
        if e.startFailed { code = nil; signal = nil }  // lastError says why; the kill was ours
        let wasStarting = e.state == .starting || (e.state == .stopping && e.startedAt == nil)
        if code != nil || e.startFailed {
            e.state = .stopped
        } else {
            e.state = e.stopRequested ? .stopped : .crashed
        }
        e.exitStatus = code
        e.signal = signal
        if e.state == .crashed { e.crashes += 1 }
        // The process's last stderr line explains a crash, a failed start or an unasked-for
        // non-zero status; after a stop it would only say "exiting on signal 15".
        if e.lastError == nil && (e.state == .crashed || wasStarting || ((code ?? 0) != 0 && !e.stopRequested)) {
            e.lastError = Self.lastLine(of: paths.stderrFile)
        }
        if let fd = e.pidfd { close(fd) }
        e.pidfd = nil
        e.startedAt = nil
        e.ownChild = false
        for file in [paths.apiSocket, paths.consoleSocket, paths.pidFile] { unlink(file) }
        persist(e)
        let state = e.state
        let error = e.lastError
        lock.unlock()
        var metadata: Logger.Metadata = ["vm": "\(e.name)", "pid": "\(pid)"]
        if let code { metadata["exit_status"] = "\(code)" }
        if let signal { metadata["signal"] = "\(signal)" }
        if let error, state == .crashed || (code ?? 0) != 0 { metadata["error"] = "\(error)" }
        if state == .crashed {
            logger.warning("vm crashed", metadata: metadata)
        } else {
            logger.info("vm stopped", metadata: metadata)
        }
    }

    static func readExitFile(_ path: String) -> Int32? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The last non-empty line of a (small) file: a VM process's own error message.
    static func lastLine(of path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        if let end = try? handle.seekToEnd(), end > 4096 { try? handle.seek(toOffset: end - 4096) } else { try? handle.seek(toOffset: 0) }
        let text = String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
        return text.split(whereSeparator: \.isNewline).last.map { String($0.prefix(400)) }
    }

    /// Writes `NAME.json` (under `lock`).
    private func persist(_ e: Entry) {
        let record = VMRecord(name: e.name, definition: e.active ?? e.definition, adHoc: !e.inConfig, state: e.state, pid: e.pid,
                              startTicks: e.startTicks, startedAt: e.startedAt, exitStatus: e.exitStatus, signal: e.signal,
                              crashes: e.crashes, lastError: e.lastError)
        do { try record.save(to: paths(e.name).stateFile) } catch {
            logger.error("cannot write state file", metadata: ["vm": "\(e.name)", "error": "\(error.localizedDescription)"])
        }
    }

    // MARK: - after a daemon restart

    /// Reads every `NAME.json`: VMs whose process still runs (same pid, start time and API socket)
    /// are adopted; VMs that ended while no daemon watched are recorded as stopped or crashed.
    private func recover() {
        let directory = options.stateDirectory
        guard let files = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for file in files.sorted() where file.hasSuffix(".json") {
            let name = String(file.dropLast(5))
            guard isValidName(name) else { continue }
            let paths = paths(name)
            guard let record = try? VMRecord.load(from: paths.stateFile), record.name == name else {
                logger.warning("ignoring unreadable state file", metadata: ["file": "\(paths.stateFile)"])
                continue
            }
            let e = entries[name] ?? Entry(name: name, definition: record.definition, inConfig: false)
            e.crashes = record.crashes
            e.active = record.definition
            e.exitStatus = record.exitStatus
            e.signal = record.signal
            e.lastError = record.lastError
            e.state = record.state.isLive ? .stopped : record.state
            if record.state.isLive, let pid = record.pid, let ticks = record.startTicks,
               ProcessTools.isSameProcess(pid: pid, startTicks: ticks, apiSocket: paths.apiSocket) {
                e.pid = pid
                e.startTicks = ticks
                e.startedAt = record.startedAt
                e.ownChild = false
                e.pidfd = ProcessTools.pidfdOpen(pid)
                e.generation = 1
                switch VMProcessAPI(socketPath: paths.apiSocket).state() {
                case "Paused": e.state = .paused
                case "Not started":
                    // The previous daemon died between spawning and InstanceStart; nobody will
                    // finish configuring it.
                    e.state = .starting
                    e.stopRequested = true
                    e.forceRequested = true
                    e.lastError = "the daemon restarted while the VM was starting"
                    _ = ProcessTools.send(SIGKILL, pid: pid, pidfd: e.pidfd)
                default:
                    e.state = record.state == .stopping ? .stopping : .running
                    e.stopRequested = record.state == .stopping
                }
                entries[name] = e
                logger.info("vm rediscovered", metadata: ["vm": "\(name)", "pid": "\(pid)", "state": "\(e.state.rawValue)"])
                continue
            }
            if record.state.isLive {
                // It ended while no daemon was watching: the exit file tells a normal end.
                if let code = Self.readExitFile(paths.exitFile) {
                    e.state = .stopped
                    e.exitStatus = code
                    e.signal = nil
                } else {
                    e.state = record.state == .stopping ? .stopped : .crashed
                    if e.state == .crashed {
                        e.crashes += 1
                        e.lastError = Self.lastLine(of: paths.stderrFile)
                    }
                }
                for file in [paths.apiSocket, paths.consoleSocket, paths.pidFile] { unlink(file) }
                logger.warning(e.state == .crashed ? "vm crashed while the daemon was away" : "vm stopped while the daemon was away",
                               metadata: ["vm": "\(name)", "pid": "\(record.pid ?? 0)"])
            }
            if !e.inConfig && !record.adHoc {
                // It came from a config file that no longer names it, and it is not running.
                unlink(paths.stateFile)
                continue
            }
            entries[name] = e
            persist(e)
        }
    }
}

/// Answers gathered by concurrentPerform's workers, each setting only its own slot.
private final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [VMProcessMetrics?]
    init(count: Int) { items = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ value: VMProcessMetrics?) { lock.lock(); items[i] = value; lock.unlock() }
    func get(_ i: Int) -> VMProcessMetrics? { lock.lock(); defer { lock.unlock() }; return items[i] }
}
