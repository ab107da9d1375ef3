import DaemonProtocol
import Foundation
import HTTPUnix
import Host
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Supervises named VMs, each in its own `swiftlet api` process (OpenBSD vmd's privilege
/// separation): spawns and configures them, watches them exit or crash, cleans up after them, and
/// after a restart of the daemon finds the ones still running from the state directory.
///
/// All mutable state lives in `state` (a `Mutex`); slow work (spawning, waiting for sockets, API
/// calls to a VM) happens outside it, and a per-VM `generation` makes a late result of an older
/// run harmless. One thread of its own watches the VM processes: it sleeps in epoll on their
/// pidfds and a wake-up eventfd, so an exit is seen at once and an idle daemon does nothing.
public final class Supervisor: Sendable {
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
        /// Jail every VM process (docs/jail.md): `--jail STATE/NAME.jail`, a new PID namespace,
        /// cgroup limits; config `jail: false` or `--no-jail` turns it off.
        public var jail = false

        public init(stateDirectory: String, swiftletPath: String, uid: UInt32? = nil, gid: UInt32? = nil) {
            self.stateDirectory = stateDirectory; self.swiftletPath = swiftletPath; self.uid = uid; self.gid = gid
        }
    }

    /// One VM's runtime facts. Read and mutated only inside `Supervisor.state.withLock`, which is
    /// what makes sharing it between threads sound.
    final class Entry: @unchecked Sendable {
        let name: String
        /// What the next start uses (the config file's definition or the ad-hoc one).
        var definition: VMDefinition
        /// What the live (or last) process was started with.
        var active: VMDefinition?
        var inConfig: Bool
        var state: VMState = .stopped
        var pid: Int32?
        var startTicks: UInt64?
        var startedAt: Double?
        /// Started by this daemon instance (waitpid works); adopted VMs are watched via pidfd or /proc.
        var ownChild = false
        /// Its pidfd, registered in the monitor's poller; dropping it closes it (and unregisters it).
        var pidfd: ProcessDescriptor?
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

    /// Everything that changes, under one lock.
    private struct State {
        var entries: [String: Entry] = [:]
        var finished = false
        /// Threads waiting for a VM's end to be recorded (`waitUntilEnded`); signalled at each end.
        var endWaiters: [EventFD] = []
        /// Autostarts still running in the background.
        var background: [BackgroundThread] = []
    }

    public let options: Options
    let logger: Logger
    private let state = Mutex(State())
    /// Wakes the monitor when a VM process appears or the daemon shuts down.
    private let wake: EventFD
    /// The monitor's epoll set: `wake` and the pidfd of every live VM.
    private let poller: Poller
    private let monitor = Mutex<HostThread?>(nil)

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
        do {
            wake = try EventFD()
            poller = try Poller()
            try poller.add(wake.fd, token: 0)
        } catch { throw DaemonError(500, error.description) }
        var entries: [String: Entry] = [:]
        for (name, definition) in config.vms {
            entries[name] = Entry(name: name, definition: definition, inConfig: true)
        }
        recover(into: &entries)
        for e in entries.values { watch(e) }
        state.withLock { $0.entries = entries }
        do {
            let thread = try HostThread(name: "vm-monitor") { [self] in monitorLoop() }
            monitor.withLock { $0 = thread }
        } catch { throw DaemonError(500, error.description) }
    }

    /// Stops watching (VM processes keep running; a new daemon adopts them). Returns once the
    /// monitor thread has ended; autostarts still under way finish on their own.
    public func shutdown() {
        state.withLock { s in
            s.finished = true
            for e in s.entries.values { e.pidfd = nil }
        }
        wakeMonitor()
        monitor.withLock { $0 }?.join()
    }

    func paths(_ name: String) -> VMPaths { VMPaths(directory: options.stateDirectory, name: name) }

    // MARK: - queries

    public func list() -> [VMStatus] {
        state.withLock { s in s.entries.values.map(status) }.sorted { $0.name < $1.name }
    }

    public func status(name: String) throws(DaemonError) -> VMStatus {
        try state.withLock { s throws(DaemonError) in
            guard let e = s.entries[name] else { throw notFound(name) }
            return status(e)
        }
    }

    /// Seconds since 1970 (start times and uptime).
    private static func now() -> Double { Double(Clock.realtimeNanoseconds()) / 1e9 }

    private func status(_ e: Entry) -> VMStatus {
        // A live VM shows what it runs with; otherwise what the next start would use.
        let d = e.state.isLive ? (e.active ?? e.definition) : e.definition
        var uptime: Double?
        if e.state.isLive, e.state != .starting, let startedAt = e.startedAt { uptime = max(0, Self.now() - startedAt) }
        return VMStatus(name: e.name, state: e.state, pid: e.state.isLive ? e.pid : nil, vcpus: d.cpus, memoryMiB: d.memoryMiB,
                        uptimeSeconds: uptime, exitStatus: e.exitStatus, signal: e.signal, crashes: e.crashes, kernel: d.kernel,
                        autostart: e.definition.autostart, adHoc: !e.inConfig, lastError: e.lastError)
    }

    private func notFound(_ name: String) -> DaemonError { DaemonError(404, "no VM named '\(name)'") }

    /// The console log (all of it, or its last `tail` bytes).
    public func logs(name: String, tail: Int?) throws(DaemonError) -> [UInt8] {
        guard state.withLock({ $0.entries[name] != nil }) else { throw notFound(name) }
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
        try state.withLock { s throws(DaemonError) in
            guard let e = s.entries[name] else { throw notFound(name) }
            guard e.state == .running || e.state == .paused else { throw DaemonError(409, "VM '\(name)' is \(e.state.rawValue), not running") }
            return paths(name).consoleSocket
        }
    }

    /// Every VM for `/metrics`; running VMs are asked for their counters in parallel.
    public func metrics() -> [VMMetricsSample] {
        let snapshot = state.withLock { s in s.entries.values.map { e in (status(e), e.state == .running || e.state == .paused) } }
        let stateDirectory = options.stateDirectory
        let results = Workers.map(snapshot.count, width: 8, name: "vm-metrics") { i -> VMProcessMetrics? in
            guard snapshot[i].1 else { return nil }
            return VMProcessAPI(socketPath: VMPaths(directory: stateDirectory, name: snapshot[i].0.name).apiSocket).metrics()
        }
        return snapshot.enumerated().map { i, item in
            let s = item.0
            return VMMetricsSample(name: s.name, state: s.state, uptimeSeconds: s.uptimeSeconds ?? 0, vcpus: s.vcpus,
                                   memoryMiB: s.memoryMiB, crashes: s.crashes, process: results[i])
        }
    }

    // MARK: - start

    /// Starts a VM: the configured one, or (with `definition`) an ad-hoc one. Returns when the VM
    /// runs (InstanceStart answered) or throws with the reason it did not.
    @discardableResult
    public func start(name: String, definition adHoc: VMDefinition? = nil) throws(DaemonError) -> VMStatus {
        guard isValidName(name) else { throw DaemonError(400, "'\(name)' is not a VM name (1 to 64 of A-Z a-z 0-9 . _ -)") }
        let paths = paths(name)
        let (e, generation, definition) = try state.withLock { s throws(DaemonError) -> (Entry, Int, VMDefinition) in
            let e: Entry
            if let existing = s.entries[name] {
                e = existing
                if adHoc != nil && e.inConfig {
                    throw DaemonError(409, "VM '\(name)' is defined in the config file; start it without a definition")
                }
            } else if let adHoc {
                e = Entry(name: name, definition: adHoc, inConfig: false)
                s.entries[name] = e
            } else {
                throw notFound(name)
            }
            guard !e.state.isLive else { throw DaemonError(409, "VM '\(name)' is already \(e.state.rawValue)") }
            if let adHoc { e.definition = adHoc }
            e.generation += 1
            e.state = .starting
            e.exitStatus = nil; e.signal = nil; e.lastError = nil
            e.stopRequested = false; e.forceRequested = false; e.startFailed = false
            e.pid = nil; e.startTicks = nil; e.startedAt = nil; e.ownChild = false
            e.active = e.definition
            // NAME.json is written once the process exists (a record without a pid helps no one).
            return (e, e.generation, e.definition)
        }

        // Leftovers of an earlier run would confuse the new process and the socket wait below.
        FileSystem.removeIfPresent([paths.apiSocket, paths.consoleSocket, paths.exitFile, paths.pidFile])
        try? FileSystem.rename(paths.consoleLog, to: paths.consoleLog + ".old")

        let t0 = Clock.monotonicNanoseconds()
        var arguments = ["api", "--api-sock", paths.apiSocket, "--id", name, "--console-sock", paths.consoleSocket,
                         "--console-log", paths.consoleLog, "--exit-file", paths.exitFile]
        if let uid = options.uid, let gid = options.gid { arguments += ["--uid", String(uid), "--gid", String(gid)] }
        arguments += options.extraArguments
        if options.jail { arguments += ["--jail", paths.jailDirectory] }
        // Extensions are the VMM's to start (before the jail, as the VM's user): not the API's.
        for spec in definition.extensions { arguments += ["--extension", spec.text] }
        let pid: Int32
        do {
            // Jailed, the VM process is pid 1 of a PID namespace of its own; the pid here (the
            // daemon's view) is what the pid file, signals, waitpid and the pidfd use.
            pid = options.jail
                ? try HostProcess.spawnInNewPIDNamespace(path: options.swiftletPath, arguments: arguments, outputPath: paths.stderrFile)
                : try HostProcess.spawn(path: options.swiftletPath, arguments: arguments, outputPath: paths.stderrFile)
        } catch {
            failStart(e, generation: generation, message: error.description)
            throw DaemonError(500, "VM '\(name)': \(error.description)")
        }

        state.withLock { _ in
            e.pid = pid
            e.ownChild = true
            e.startTicks = ProcessStat(pid: pid)?.startTicks
            e.pidfd = ProcessDescriptor(pid: pid)
            e.startedAt = Self.now()
            try? "\(pid)\n".write(toFile: paths.pidFile, atomically: true, encoding: .utf8)
            persist(e)
            watch(e)
        }
        wakeMonitor()
        logger.debug("vm process spawned", metadata: ["vm": "\(name)", "pid": "\(pid)"])

        // The API socket appears once `swiftlet api` is listening. Nothing announces it, so this
        // one wait looks every millisecond (a start's socket wait is tens of milliseconds).
        let t1 = Clock.monotonicNanoseconds()
        let deadline = t1 + UInt64(options.startTimeout * 1e9)
        while !UnixSocket.isListening(paths.apiSocket) {
            if let failure = startAbandoned(e, generation: generation) { throw failure }
            if Clock.monotonicNanoseconds() > deadline {
                abortStart(e, generation: generation, message: "no API socket after \(Int(options.startTimeout)) s")
                throw DaemonError(500, "VM '\(name)': the VM process did not open its API socket within \(Int(options.startTimeout)) s")
            }
            Clock.sleep(milliseconds: 1)
        }

        let t2 = Clock.monotonicNanoseconds()
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
        let answer = try state.withLock { _ throws(DaemonError) -> VMStatus in
            guard e.generation == generation else { throw DaemonError(409, "VM '\(name)' ended and was started again meanwhile") }
            if e.state == .starting {
                e.state = .running
                e.startedAt = Self.now()
                persist(e)
            }
            return status(e)
        }
        let t3 = Clock.monotonicNanoseconds()
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
        state.withLock { _ in
            if e.generation == generation && e.state == .starting { return nil }
            // A stop asked for during the start, still under way or already done (a fast stop
            // ends the process before the start looks again): the client's conflict, not ours.
            if e.generation == generation && (e.state == .stopping || e.stopRequested) {
                return DaemonError(409, "VM '\(e.name)' was stopped while starting")
            }
            var message = "VM '\(e.name)': the VM process ended while starting"
            if let status = e.exitStatus { message += " (exit status \(status))" }
            if let signal = e.signal { message += " (signal \(signal))" }
            if let error = e.lastError { message += ": \(error)" }
            return DaemonError(500, message)
        }
    }

    /// A start that failed before a process existed.
    private func failStart(_ e: Entry, generation: Int, message: String) {
        state.withLock { _ in
            guard e.generation == generation else { return }
            e.state = .stopped
            e.lastError = message
            e.startedAt = nil
            persist(e)
        }
        logger.error("vm start failed", metadata: ["vm": "\(e.name)", "error": "\(message)"])
    }

    /// A start that failed with a process: kill it (it never ran a guest) and wait until the
    /// monitor has recorded its end, so the answer and `status` agree.
    private func abortStart(_ e: Entry, generation: Int, message: String) {
        let killed = state.withLock { _ -> Int32? in
            guard e.generation == generation, e.state.isLive, let pid = e.pid else { return nil }
            e.stopRequested = true
            e.forceRequested = true
            e.startFailed = true
            e.lastError = message
            _ = HostProcess.send(SIGKILL, to: pid, descriptor: e.pidfd)
            return pid
        }
        guard let pid = killed else { return }
        wakeMonitor()
        logger.error("vm start failed", metadata: ["vm": "\(e.name)", "pid": "\(pid)", "error": "\(message)"])
        waitUntilEnded(e, generation: generation, timeout: 5)
    }

    /// Returns once the monitor has recorded the end of run `generation` of `e`, or after
    /// `timeout` seconds. Sleeps on an eventfd `processEnded` signals, not in a polling loop.
    private func waitUntilEnded(_ e: Entry, generation: Int, timeout: Double) {
        let deadline = Clock.monotonicNanoseconds() + UInt64(timeout * 1e9)
        func ended() -> Bool { e.generation != generation || !e.state.isLive }
        let signal: EventFD
        let poller: Poller
        do {
            signal = try EventFD()
            poller = try Poller()
            try poller.add(signal.fd, token: 0)
        } catch {
            // Out of descriptors: look now and then instead.
            while !state.withLock({ _ in ended() }) && Clock.monotonicNanoseconds() < deadline { Clock.sleep(milliseconds: 2) }
            return
        }
        let alreadyEnded = state.withLock { s in
            if ended() { return true }
            s.endWaiters.append(signal)
            return false
        }
        if alreadyEnded { return }
        defer { state.withLock { s in s.endWaiters.removeAll { $0 === signal } } }
        while !state.withLock({ _ in ended() }) {
            let now = Clock.monotonicNanoseconds()
            guard now < deadline else { return }
            _ = poller.wait(timeoutNanoseconds: deadline - now) { _ in }
            _ = signal.drain()
        }
    }

    // MARK: - stop, pause, resume, remove

    /// SIGTERM (the VM process stops the VM cleanly) or, with `force`, SIGKILL. With `wait`,
    /// returns once the process has exited.
    @discardableResult
    public func stop(name: String, force: Bool = false, wait: Bool = false) throws(DaemonError) -> VMStatus {
        let (e, generation, pid, sent) = try state.withLock { s throws(DaemonError) -> (Entry, Int, Int32, Bool) in
            guard let e = s.entries[name] else { throw notFound(name) }
            guard e.state.isLive else { throw DaemonError(409, "VM '\(name)' is not running (\(e.state.rawValue))") }
            guard let pid = e.pid else { throw DaemonError(409, "VM '\(name)' is starting; try again in a moment") }
            e.stopRequested = true
            if force { e.forceRequested = true }
            e.state = .stopping
            persist(e)
            return (e, e.generation, pid, HostProcess.send(force ? SIGKILL : SIGTERM, to: pid, descriptor: e.pidfd))
        }
        wakeMonitor()
        logger.info("vm stop requested", metadata: ["vm": "\(name)", "pid": "\(pid)", "force": "\(force)", "signal_sent": "\(sent)"])
        if wait {
            waitUntilEnded(e, generation: generation, timeout: options.stopTimeout)
            let ended = state.withLock { _ in e.generation != generation || !e.state.isLive }
            if !ended {
                throw DaemonError(504, "VM '\(name)' did not exit within \(Int(options.stopTimeout)) s (stop it with force)")
            }
        }
        return try status(name: name)
    }

    /// Pauses (`true`) or resumes a running VM through its API (PATCH /vm).
    @discardableResult
    public func setPaused(name: String, _ paused: Bool) throws(DaemonError) -> VMStatus {
        let (e, generation) = try state.withLock { s throws(DaemonError) -> (Entry, Int) in
            guard let e = s.entries[name] else { throw notFound(name) }
            let required: VMState = paused ? .running : .paused
            guard e.state == required else { throw DaemonError(409, "VM '\(name)' is \(e.state.rawValue), not \(required.rawValue)") }
            return (e, e.generation)
        }
        do { try VMProcessAPI(socketPath: paths(name).apiSocket).setPaused(paused) } catch {
            throw DaemonError(400, "VM '\(name)': \(error.description)")
        }
        state.withLock { _ in
            if e.generation == generation && (e.state == .running || e.state == .paused) {
                e.state = paused ? .paused : .running
                persist(e)
            }
        }
        logger.info(paused ? "vm paused" : "vm resumed", metadata: ["vm": "\(name)"])
        return try status(name: name)
    }

    /// Forgets an ad-hoc VM that is not running, with its state files.
    public func remove(name: String) throws(DaemonError) {
        try state.withLock { s throws(DaemonError) in
            guard let e = s.entries[name] else { throw notFound(name) }
            guard !e.inConfig else { throw DaemonError(409, "VM '\(name)' is defined in the config file") }
            guard !e.state.isLive else { throw DaemonError(409, "VM '\(name)' is \(e.state.rawValue); stop it first") }
            s.entries[name] = nil
        }
        let p = paths(name)
        FileSystem.removeIfPresent([p.stateFile, p.exitFile, p.stderrFile, p.consoleLog, p.consoleLog + ".old", p.pidFile])
        logger.info("vm removed", metadata: ["vm": "\(name)"])
    }

    // MARK: - config reload

    /// Applies a new config: definitions change for the next start; a VM removed from the config
    /// keeps running (listed as ad hoc) or, when not running, is forgotten. New autostart VMs
    /// start in the background; their names are returned.
    @discardableResult
    public func reload(config: DaemonConfig) -> [String] {
        let added = state.withLock { s -> [String] in
            var added: [String] = []
            for (name, e) in s.entries where e.inConfig && config.vms[name] == nil {
                if e.state.isLive {
                    e.inConfig = false
                    persist(e)
                } else {
                    s.entries[name] = nil
                    FileSystem.removeIfPresent([paths(name).stateFile])
                }
            }
            for (name, definition) in config.vms {
                if let e = s.entries[name] {
                    e.definition = definition
                    e.inConfig = true
                } else {
                    s.entries[name] = Entry(name: name, definition: definition, inConfig: true)
                    if definition.autostart { added.append(name) }
                }
            }
            return added.sorted()
        }
        logger.info("config reloaded", metadata: ["vms": "\(config.vms.count)"])
        startInBackground(added)
        return added
    }

    /// Starts the configured autostart VMs that are not running, in the background; returns
    /// their names.
    @discardableResult
    public func autostart() -> [String] {
        let names = state.withLock { s in
            s.entries.values.filter { $0.inConfig && $0.definition.autostart && !$0.state.isLive }.map(\.name).sorted()
        }
        startInBackground(names)
        return names
    }

    private func startInBackground(_ names: [String]) {
        guard !names.isEmpty else { return }
        let thread = BackgroundThread.start(name: "vm-autostart") { [self] in startAll(names) }
        state.withLock { s in
            s.background.removeAll { $0.joinIfFinished() }
            if let thread { s.background.append(thread) }
        }
    }

    /// Starts `names` a few at a time and returns when all have been tried, logging failures.
    func startAll(_ names: [String], concurrency: Int = 4) {
        _ = Workers.map(names.count, width: concurrency, name: "vm-start") { [self] i in
            do { try start(name: names[i]) } catch {
                logger.error("autostart failed", metadata: ["vm": "\(names[i])", "error": "\(error)"])
            }
        }
    }

    // MARK: - watching processes

    private func wakeMonitor() { wake.signal() }

    /// Adds `e`'s pidfd to the monitor's epoll set (under the lock, or before the monitor runs).
    /// Closing the pidfd later takes it out again: epoll forgets a file once its last descriptor
    /// is closed, and nothing else holds a pidfd (the kernel makes it close-on-exec).
    private func watch(_ e: Entry) {
        guard let pidfd = e.pidfd else { return }
        do { try poller.add(pidfd.fd, token: 1) } catch {
            // Watched through /proc then, as on a kernel without pidfds.
            logger.warning("cannot watch the VM process", metadata: ["vm": "\(e.name)", "error": "\(error)"])
            e.pidfd = nil
        }
    }

    /// Sleeps in epoll on the pidfds of live VMs and the wake-up eventfd, then checks every live
    /// VM. Only a VM without a pidfd (a kernel before 5.3) makes it look every 500 ms.
    private func monitorLoop() {
        while true {
            let (finished, unwatched) = state.withLock { s in
                (s.finished, s.entries.values.contains { $0.state.isLive && $0.pid != nil && $0.pidfd == nil })
            }
            if finished { return }
            _ = poller.wait(timeoutNanoseconds: unwatched ? 500_000_000 : nil) { _ in }
            _ = wake.drain()
            checkProcesses()
        }
    }

    /// Finds VM processes that have ended and records how.
    func checkProcesses() {
        let live = state.withLock { s in
            s.entries.values.compactMap { e -> (Entry, Int, Int32, Bool, ProcessDescriptor?, UInt64?)? in
                guard e.state.isLive, let pid = e.pid else { return nil }
                return (e, e.generation, pid, e.ownChild, e.pidfd, e.startTicks)
            }
        }
        for (e, generation, pid, ownChild, pidfd, startTicks) in live {
            if ownChild {
                switch HostProcess.reap(pid) {
                case .running: continue
                case .ended(let termination): processEnded(e, generation: generation, termination: termination); continue
                case .notChild: break  // checked below, as an adopted one
                }
            }
            // Not our child (adopted after a daemon restart): the pidfd turns readable at exit.
            let ended = pidfd?.hasExited ?? !ProcessIdentity(pid: pid, startTicks: startTicks ?? 0).isRunning
            if ended { processEnded(e, generation: generation, termination: nil) }
        }
    }

    /// Records the end of a VM process: stopped (an exit status; or a signal we sent) or crashed
    /// (a signal nobody asked for, or gone without its exit file). Cleans up its files.
    private func processEnded(_ e: Entry, generation: Int, termination: ProcessTermination?) {
        let paths = paths(e.name)
        let fromFile = Self.readExitFile(paths.exitFile)
        let recorded = state.withLock { s -> (pid: Int32, code: Int32?, signal: Int32?, state: VMState, error: String?)? in
            guard e.generation == generation, e.state.isLive else { return nil }
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
            e.pidfd = nil
            e.startedAt = nil
            e.ownChild = false
            FileSystem.removeIfPresent([paths.apiSocket, paths.consoleSocket, paths.pidFile])
            persist(e)
            for waiter in s.endWaiters { waiter.signal() }
            return (pid, code, signal, e.state, e.lastError)
        }
        guard let recorded else { return }
        if options.jail { Self.removeJail(paths: paths) }
        var metadata: Logger.Metadata = ["vm": "\(e.name)", "pid": "\(recorded.pid)"]
        if let code = recorded.code { metadata["exit_status"] = "\(code)" }
        if let signal = recorded.signal { metadata["signal"] = "\(signal)" }
        if let error = recorded.error, recorded.state == .crashed || (recorded.code ?? 0) != 0 { metadata["error"] = "\(error)" }
        if recorded.state == .crashed {
            logger.warning("vm crashed", metadata: metadata)
        } else {
            logger.info("vm stopped", metadata: metadata)
        }
    }

    /// What a jailed VM process leaves once it has ended: its (empty) cgroups, named by the VM,
    /// under the daemon's own, and its jail directory (empty on the host: the jail's tmpfs lived
    /// in the process's mount namespace).
    static func removeJail(paths: VMPaths) {
        CgroupHost.current()?.plan(id: paths.name, limits: Jail.limits(memoryMiB: 0, vcpus: 1)).remove()
        Jail.removeRoot(paths.jailDirectory)
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

    /// Writes `NAME.json` (inside `state.withLock`, or before the monitor runs).
    private func persist(_ e: Entry) {
        let record = VMRecord(name: e.name, definition: e.active ?? e.definition, adHoc: !e.inConfig, state: e.state, pid: e.pid,
                              startTicks: e.startTicks, startedAt: e.startedAt, exitStatus: e.exitStatus, signal: e.signal,
                              crashes: e.crashes, lastError: e.lastError)
        do { try record.save(to: paths(e.name).stateFile) } catch {
            logger.error("cannot write state file", metadata: ["vm": "\(e.name)", "error": "\(error.localizedDescription)"])
        }
    }

    // MARK: - after a daemon restart

    /// Whether `pid` is still the very process a daemon started for the VM at `apiSocket`: the
    /// same process (start time), and serving that socket. Guards against pid reuse.
    static func isVMProcess(_ identity: ProcessIdentity, apiSocket: String) -> Bool {
        identity.isRunning && HostProcess.commandLine(identity.pid).contains(apiSocket)
    }

    /// Reads every `NAME.json` into `entries` (before the monitor runs): VMs whose process still
    /// runs (same pid, start time and API socket) are adopted; VMs that ended while no daemon
    /// watched are recorded as stopped or crashed.
    private func recover(into entries: inout [String: Entry]) {
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
               Self.isVMProcess(ProcessIdentity(pid: pid, startTicks: ticks), apiSocket: paths.apiSocket) {
                e.pid = pid
                e.startTicks = ticks
                e.startedAt = record.startedAt
                e.ownChild = false
                e.pidfd = ProcessDescriptor(pid: pid)
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
                    _ = HostProcess.send(SIGKILL, to: pid, descriptor: e.pidfd)
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
                FileSystem.removeIfPresent([paths.apiSocket, paths.consoleSocket, paths.pidFile])
                logger.warning(e.state == .crashed ? "vm crashed while the daemon was away" : "vm stopped while the daemon was away",
                               metadata: ["vm": "\(name)", "pid": "\(record.pid ?? 0)"])
            }
            if !e.inConfig && !record.adHoc {
                // It came from a config file that no longer names it, and it is not running.
                FileSystem.removeIfPresent([paths.stateFile])
                continue
            }
            entries[name] = e
            persist(e)
        }
    }
}
