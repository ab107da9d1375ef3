import Foundation
import VMSpec
import HTTPUnix
import Host
import Logging
import Logs
import VMM
import FirecrackerJSON
#if canImport(Glibc)
import Glibc
#endif

/// The Firecracker-compatible API of one VM process: the configuration gathered by PUT requests
/// before boot, `InstanceStart`, and the running VM's controls (pause, resume, Ctrl+Alt+Del,
/// metrics). Requests arrive one at a time (the server's serial queue), like Firecracker's.
///
/// States: Not started → (InstanceStart) → Running ⇄ Paused → the process exits with the VM.
/// Configuration requests after boot and VM requests before it get 400, as in Firecracker.
public final class VMController: @unchecked Sendable {
    /// What the process was started with besides the API.
    public struct Options: Sendable {
        public var id = "anonymous-instance"
        /// Guest console on a Unix socket (with a log file) instead of stdio.
        public var consoleSocket: String?
        public var consoleLog: String?
        /// Drop to this uid/gid once the VM's files and devices are open.
        public var dropTo: (uid: UInt32, gid: UInt32)?
        /// Install the seccomp filter at InstanceStart.
        public var seccomp = true
        /// Enter this jail at InstanceStart, before the privilege drop (its namespaces were
        /// detached when the process started: `Jail.detachNamespaces`).
        public var jail: Jail?
        /// The process's log: the API's messages and the VMM's; `PUT /logger` configures it.
        public var log = LogDestination.apiProcess()
        /// Extension processes started with the VM (`--extension`).
        public var extensions: [ExtensionSpec] = []
        public init() {}
    }

    public enum State: String, Sendable { case notStarted = "Not started", running = "Running", paused = "Paused" }

    public static let version = SwiftletVersion.vmAPI

    public let options: Options
    /// Called on the VM's thread when the VM has ended, with the process exit status.
    private let onExit: @Sendable (Int32) -> Void
    /// Installs the sandbox at InstanceStart (the seccomp filter and privilege drop live in Host).
    private let sandbox: @Sendable (Options) throws(APIError) -> Void
    private let log: Logger

    // Configuration before boot.
    private(set) var bootSource: FirecrackerConfig.BootSource?
    private(set) var machineConfig = FirecrackerConfig.MachineConfig()
    private(set) var drives: [FirecrackerConfig.Drive] = []
    private(set) var networkInterfaces: [FirecrackerConfig.NetworkInterface] = []
    private(set) var vsock: FirecrackerConfig.Vsock?
    private var metricsFile: FileDescriptor?

    // After boot.
    public private(set) var state = State.notStarted
    private var vm: MicroVM?
    private var startedAt: UInt64 = 0

    public init(options: Options, sandbox: @escaping @Sendable (Options) throws(APIError) -> Void,
                onExit: @escaping @Sendable (Int32) -> Void) {
        self.options = options
        self.sandbox = sandbox
        self.onExit = onExit
        let destination = options.log
        log = Logger(label: "api") { SwiftletLogHandler(label: $0, destination: destination) }
    }

    /// Applies a whole Firecracker config file (`--config-file`) as the PUTs would.
    public func apply(_ config: FirecrackerConfig) {
        bootSource = config.bootSource
        if let m = config.machineConfig { machineConfig = m }
        drives = config.drives
        networkInterfaces = config.networkInterfaces
        vsock = config.vsock
    }

    /// The configuration so far, as a Firecracker config file would say it.
    public var configuration: FirecrackerConfig? {
        bootSource.map { FirecrackerConfig(bootSource: $0, machineConfig: machineConfig, drives: drives,
                                           networkInterfaces: networkInterfaces, vsock: vsock) }
    }

    // MARK: Routing

    /// Answers one request. Never throws or traps: every failure is a 400 with a fault message.
    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        let response: HTTPResponse
        do {
            response = try route(request)
        } catch {
            response = .json(400, JSONText.fault(error.message))
        }
        log.info("\(request.method) \(request.path) \(response.status)")
        return response
    }

    /// The methods each path of api/swiftlet-vm-api.yaml serves, for the 405 answer's Allow
    /// header; `route` below is what serves them (a unit test keeps the two in step).
    static let methodsByPath: [String: [String]] = [
        "/": ["GET"], "/version": ["GET"], "/machine-config": ["GET", "PUT", "PATCH"],
        "/boot-source": ["PUT"], "/vsock": ["PUT"], "/logger": ["PUT"], "/metrics": ["PUT"],
        "/actions": ["PUT"], "/vm": ["PATCH"], "/vm/config": ["GET"], "/swiftlet/metrics": ["GET"],
    ]

    static let pathPrefixes = ["/drives/", "/network-interfaces/"]

    /// The methods `path` serves, or nil for a path the API does not have.
    static func allowedMethods(_ path: String) -> [String]? {
        if let methods = methodsByPath[path] { return methods }
        return pathPrefixes.contains { identifier(path, prefix: $0) != nil } ? ["PUT"] : nil
    }

    /// A known path asked with a method it does not serve: 405 with the Allow header HTTP requires
    /// (Firecracker answers 400 there; its clients treat both as an error with a fault_message).
    /// An unknown path stays Firecracker's 400.
    static func refusal(_ r: HTTPRequest) -> HTTPResponse {
        guard let methods = allowedMethods(r.path) else {
            return .json(400, JSONText.fault("Invalid request method and/or path: \(r.method) \(r.path)."))
        }
        var response = HTTPResponse.json(405, JSONText.fault("\(r.method) is not allowed on \(r.path) (use \(methods.joined(separator: ", ")))."))
        response.headers = [("Allow", methods.joined(separator: ", "))]
        return response
    }

    /// Opens `path` as `Host.ImageFile` does for the VM (without waiting: a FIFO would block the
    /// API thread) and checks it is a regular file; the error line starts with the field's name.
    static func checkOpensAsFile(_ path: String, field: String, writable: Bool = false,
                                 blockDeviceAllowed: Bool = false) throws(APIError) {
        do { _ = try ImageFile.open(path, for: field, writable: writable, blockDeviceAllowed: blockDeviceAllowed) } catch {
            throw APIError(error.description)
        }
    }

    func route(_ r: HTTPRequest) throws(APIError) -> HTTPResponse {
        switch (r.method, r.path) {
        case ("GET", "/"): return .json(200, instanceInfo())
        case ("GET", "/version"):
            var j = JSONText(); j.add("firecracker_version", Self.version); return .json(200, j.text)
        case ("GET", "/machine-config"): return .json(200, machineConfigJSON())
        case ("PUT", "/machine-config"):
            try requireNotStarted()
            machineConfig = try decode(FirecrackerConfig.MachineConfig.self, r)
            return .noContent
        case ("PATCH", "/machine-config"):
            try requireNotStarted()
            try patchMachineConfig(r)
            return .noContent
        case ("PUT", "/boot-source"):
            try requireNotStarted()
            let source = try decode(FirecrackerConfig.BootSource.self, r)
            guard !source.kernelImagePath.isEmpty else { throw APIError("kernel_image_path: must not be empty") }
            // As Firecracker: a kernel or initrd that cannot be opened is refused here, at the PUT
            // that names it, not later at InstanceStart.
            try Self.checkOpensAsFile(source.kernelImagePath, field: "kernel_image_path")
            if let initrd = source.initrdPath { try Self.checkOpensAsFile(initrd, field: "initrd_path") }
            bootSource = source
            return .noContent
        case ("PUT", "/vsock"):
            try requireNotStarted()
            vsock = try decode(FirecrackerConfig.Vsock.self, r)
            return .noContent
        case ("PUT", "/logger"):
            try requireNotStarted()
            try options.log.apply(try decode(APIRequests.Logger.self, r))
            return .noContent
        case ("PUT", "/metrics"):
            try requireNotStarted()
            try openMetrics(try decode(APIRequests.Metrics.self, r))
            return .noContent
        case ("PUT", "/actions"):
            return try act(try decode(APIRequests.Action.self, r))
        case ("PATCH", "/vm"):
            return try changeState(try decode(APIRequests.VMState.self, r))
        case ("GET", "/vm/config"): return .json(200, fullConfigJSON())
        case ("GET", "/swiftlet/metrics"): return .json(200, metricsJSON())
        default:
            break
        }
        if r.method == "PUT", let id = Self.identifier(r.path, prefix: "/drives/") {
            try requireNotStarted()
            let drive = try decode(FirecrackerConfig.Drive.self, r)
            guard drive.driveId == id else { throw APIError("The id from the path does not match the id from the body!") }
            if drive.isRootDevice, let other = drives.first(where: { $0.isRootDevice && $0.driveId != id }) {
                throw APIError("A root block device already exists (drive '\(other.driveId)')")
            }
            // As Firecracker: the disk must open now (read-write unless read-only), as the
            // device will open it, so a wrong path is refused at this PUT, not at InstanceStart.
            try Self.checkOpensAsFile(drive.pathOnHost, field: "path_on_host", writable: !drive.isReadOnly, blockDeviceAllowed: true)
            if let i = drives.firstIndex(where: { $0.driveId == id }) { drives[i] = drive } else { drives.append(drive) }
            return .noContent
        }
        if r.method == "PUT", let id = Self.identifier(r.path, prefix: "/network-interfaces/") {
            try requireNotStarted()
            let nic = try decode(FirecrackerConfig.NetworkInterface.self, r)
            guard nic.ifaceId == id else { throw APIError("The id from the path does not match the id from the body!") }
            if let other = networkInterfaces.first(where: { $0.hostDevName == nic.hostDevName && $0.ifaceId != id }) {
                throw APIError("The host device name \(nic.hostDevName) is already in use by interface '\(other.ifaceId)'")
            }
            if let i = networkInterfaces.firstIndex(where: { $0.ifaceId == id }) { networkInterfaces[i] = nic } else { networkInterfaces.append(nic) }
            return .noContent
        }
        return Self.refusal(r)
    }

    /// `/drives/ID` → ID when ID is a valid id: Firecracker's letters, digits and `_`, plus `-`
    /// (swiftletd's config allows it), 1–64 characters.
    static func identifier(_ path: String, prefix: String) -> String? {
        guard path.hasPrefix(prefix) else { return nil }
        let id = String(path.dropFirst(prefix.count))
        guard DeviceName.isValid(id) else { return nil }
        return id
    }

    func decode<T: Decodable>(_ type: T.Type, _ r: HTTPRequest) throws(APIError) -> T {
        guard !r.body.isEmpty else { throw APIError("Missing request body (JSON).") }
        do { return try FirecrackerConfig.decode(T.self, from: Data(r.body), refusingNull: true) } catch {
            throw Self.badBody(error.message)
        }
    }

    /// Firecracker's words for a body it cannot take.
    static func badBody(_ reason: String) -> APIError {
        APIError("An error occurred when deserializing the json body of a request: \(reason)")
    }

    func requireNotStarted() throws(APIError) {
        guard state == .notStarted else { throw APIError("The requested operation is not supported after starting the microVM.") }
    }

    func requireStarted() throws(APIError) -> MicroVM {
        guard state != .notStarted, let vm else { throw APIError("The requested operation is not supported before starting the microVM.") }
        return vm
    }

    func patchMachineConfig(_ r: HTTPRequest) throws(APIError) {
        // A partial machine-config: decode over the current values.
        do { try FirecrackerConfig.checkStrictly(Data(r.body)) } catch {
            throw Self.badBody(error.message)
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(r.body))) as? [String: Any] else {
            throw Self.badBody("expected an object")
        }
        var merged: [String: Any] = ["vcpu_count": machineConfig.vcpuCount, "mem_size_mib": machineConfig.memSizeMib]
        if let smt = machineConfig.smt { merged["smt"] = smt }
        if let track = machineConfig.trackDirtyPages { merged["track_dirty_pages"] = track }
        if let pages = machineConfig.hugePages { merged["huge_pages"] = pages }
        // A null stays in: the decoder refuses it (no field is nullable), as it does for PUT.
        for (k, v) in object { merged[k] = v }
        guard let data = try? JSONSerialization.data(withJSONObject: merged) else { throw APIError("invalid machine-config") }
        do { machineConfig = try FirecrackerConfig.decode(FirecrackerConfig.MachineConfig.self, from: data, refusingNull: true) } catch {
            throw Self.badBody(error.message)
        }
    }

    // MARK: Actions and state

    func act(_ action: APIRequests.Action) throws(APIError) -> HTTPResponse {
        switch action.actionType {
        case .instanceStart:
            try start()
        case .sendCtrlAltDel:
            let vm = try requireStarted()
            do { try vm.sendCtrlAltDel() } catch { throw APIError(error.message) }
        case .flushMetrics:
            guard metricsFile != nil else { throw APIError("Metrics system not initialized (PUT /metrics first).") }
            flushMetrics()
        }
        return .noContent
    }

    /// Builds the VM (every file and device opened), closes the sandbox, and runs it.
    public func start() throws(APIError) {
        try requireNotStarted()
        guard let config = configuration else { throw APIError("Cannot start microvm without kernel configuration (PUT /boot-source).") }
        let console: VMConsole
        if let path = options.consoleSocket {
            do { console = .socket(try SocketConsole(socketPath: path, logPath: options.consoleLog)) } catch {
                throw APIError(error.message)
            }
        } else {
            console = .stdio
        }
        let vm: MicroVM
        // The VMM's messages go to the API process's log, so PUT /logger applies to them too.
        // Extension processes run as the VM process will after its drop, under their own filter.
        let extensions = ExtensionSet(options.extensions, user: options.dropTo.map { ExtensionSet.User(uid: $0.uid, gid: $0.gid) },
                                      seccomp: options.seccomp)
        do { vm = try MicroVM(config, console: console, logSink: options.log, extensions: extensions) } catch {
            throw APIError("Start microvm error: \(error.message)")
        }
        if let jail = options.jail {
            let needs = Jail.Needs(memoryMiB: vm.memoryMiB, vcpus: vm.vcpuCount, taps: !config.networkInterfaces.isEmpty,
                                   runtimePaths: config.vsock.map { [$0.udsPath] } ?? [], companions: vm.extensionProcesses)
            do { try jail.enter(needs) } catch { throw APIError("cannot set up the jail: \(error)") }
        }
        try sandbox(options)
        self.vm = vm
        startedAt = Clock.monotonicNanoseconds()
        state = .running
        log.info("instance started", metadata: ["kernel": "\(config.bootSource.kernelImagePath)", "vcpus": "\(vm.vcpuCount)", "memory_mib": "\(vm.memoryMiB)"])
        do {
            try vm.start { [self] status in
                log.info("instance exited", metadata: ["status": "\(status)"])
                if metricsFile != nil { flushMetrics() }
                onExit(status)
            }
        } catch { throw APIError("cannot start the VM: \(error.message)") }
    }

    /// Stops the VM as signal `signal` would (SIGTERM to the process does this).
    public func stop(signal: Int32) { vm?.requestStop(signal: signal) }

    func changeState(_ patch: APIRequests.VMState) throws(APIError) -> HTTPResponse {
        let vm = try requireStarted()
        switch patch.state {
        case .paused:
            if state == .running {
                do { try vm.pause() } catch { throw APIError(error.message) }
                state = .paused
            }
        case .resumed:
            if state == .paused {
                vm.resume()
                state = .running
            }
        }
        return .noContent
    }

    // MARK: Answers

    func instanceInfo() -> String {
        var j = JSONText()
        j.add("id", options.id)
        j.add("state", state.rawValue)
        j.add("vmm_version", Self.version)
        j.add("app_name", "Swiftlet")
        return j.text
    }

    func machineConfigJSON() -> String {
        var j = JSONText()
        j.add("vcpu_count", machineConfig.vcpuCount)
        j.add("mem_size_mib", machineConfig.memSizeMib)
        j.add("smt", machineConfig.smt ?? false)
        j.add("track_dirty_pages", machineConfig.trackDirtyPages ?? false)
        j.add("huge_pages", machineConfig.hugePages ?? "None")
        return j.text
    }

    func fullConfigJSON() -> String {
        var j = JSONText()
        if let b = bootSource {
            var s = JSONText()
            s.add("kernel_image_path", b.kernelImagePath)
            if let i = b.initrdPath { s.add("initrd_path", i) }
            if let a = b.bootArgs { s.add("boot_args", a) }
            j.add("boot-source", raw: s.text)
        }
        j.add("machine-config", raw: machineConfigJSON())
        j.add("drives", raw: "[" + drives.map { d in
            var s = JSONText()
            s.add("drive_id", d.driveId); s.add("path_on_host", d.pathOnHost)
            s.add("is_root_device", d.isRootDevice); s.add("is_read_only", d.isReadOnly)
            if let p = d.partuuid { s.add("partuuid", p) }
            return s.text
        }.joined(separator: ", ") + "]")
        j.add("network-interfaces", raw: "[" + networkInterfaces.map { n in
            var s = JSONText()
            s.add("iface_id", n.ifaceId); s.add("host_dev_name", n.hostDevName)
            if let mac = n.guestMac { s.add("guest_mac", mac.description) }
            return s.text
        }.joined(separator: ", ") + "]")
        if let v = vsock {
            var s = JSONText()
            s.add("guest_cid", v.guestCid); s.add("uds_path", v.udsPath)
            j.add("vsock", raw: s.text)
        }
        return j.text
    }

    /// The counters `swiftletd` turns into Prometheus series (and `PUT /metrics` writes as lines).
    func metricsJSON() -> String {
        var j = JSONText()
        j.add("id", options.id)
        j.add("state", state.rawValue)
        let uptime = vm == nil ? 0 : Double(Clock.monotonicNanoseconds() - startedAt) / 1e9
        j.add("uptime_seconds", (uptime * 1000).rounded() / 1000)
        j.add("vcpus", vm?.vcpuCount ?? machineConfig.vcpuCount)
        j.add("memory_mib", vm?.memoryMiB ?? machineConfig.memSizeMib)
        var exits = JSONText()
        for (reason, count) in vm?.exitCounters.snapshot ?? [] { exits.add(reason, count) }
        j.add("exits", raw: exits.text)
        j.add("devices", raw: "[" + (vm?.deviceStatistics ?? []).map { d in
            var s = JSONText()
            s.add("id", d.id); s.add("kind", d.kind); s.add("requests", d.requests)
            s.add("bytes_in", d.bytesIn); s.add("bytes_out", d.bytesOut)
            return s.text
        }.joined(separator: ", ") + "]")
        return j.text
    }

    // MARK: Metrics file (Firecracker's PUT /metrics: one JSON line per flush)

    func openMetrics(_ request: APIRequests.Metrics) throws(APIError) {
        do {
            metricsFile = try FileDescriptor.open(request.metricsPath, flags: O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK, mode: 0o600)
        } catch {
            throw APIError("metrics_path \(error)")
        }
    }

    func flushMetrics() {
        guard let metricsFile else { return }
        var line = String(metricsJSON().dropLast()) + ", \"utc_timestamp_ms\": \(Clock.realtimeNanoseconds() / 1_000_000)}\n"
        // Like the log: a line a full FIFO cannot take now is dropped, never waited for.
        line.withUTF8 { utf8 in _ = try? metricsFile.writeOnce(UnsafeRawBufferPointer(utf8)) }
    }
}
