import FoundationEssentials
import Host
import Logs
import VMSpec
#if canImport(Glibc)
import Glibc
#endif

/// `swiftlet oci`: an OCI runtime with runc's command line, so containerd's runc shim
/// (`io.containerd.runc.v2` with `BinaryName`) and `ctr run --runc-binary` run VMs as containers.
/// A container is one VM process: `create` starts it in the bundle's namespaces, holding the
/// container's stdio, waiting on a FIFO; `start` lets it exec the VMM (`swiftlet hvt` or `swiftlet
/// run`) with the same pid, so the shim (its subreaper) reaps the VM and reports its exit status.
/// See docs/containerd.md.
public struct OCIRuntime: Sendable {
    /// The runtime spec version we implement (state's `ociVersion`; `features`).
    public static let ociVersion = "1.0.2"

    public let store: ContainerStore
    /// The `swiftlet` executable the VM process execs.
    public let swiftlet: String

    public init(root: String, swiftlet: String) {
        store = ContainerStore(root: root)
        self.swiftlet = swiftlet
    }

    // MARK: containers that are no VM: runc's

    /// The annotation containerd's CRI puts on a pod's sandbox ("pause") container, which a
    /// RuntimeClass runs with the same runtime as the pod's containers.
    public static let criContainerType = "io.kubernetes.cri.container-type"

    /// Where runc keeps the containers handed to it (below ours, so IDs cannot collide).
    public var runcRoot: String { store.root + "/runc" }

    /// Whether `create` of `bundle` goes to runc: a CRI sandbox container (the pod's pause
    /// process), which is no VM. Any other bundle without a kernel annotation is refused, so a
    /// mistake never silently becomes a plain container.
    public static func isRuncBundle(_ bundle: String) -> Bool {
        guard let spec = try? BundleSpec.load(bundle: bundle) else { return false }
        return spec.annotations?[criContainerType] == "sandbox"
    }

    /// Whether container `id` is one runc runs (handed over at create).
    public func isRuncContainer(_ id: String) -> Bool {
        ContainerStore.isValidID(id) && FileSystem.kind(of: store.directory(id)) == .missing
            && FileSystem.kind(of: runcRoot + "/" + id) == .directory
    }

    // MARK: create, start

    /// `create --bundle DIR [--pid-file F] [--console-socket S] ID`.
    public func create(id: String, bundle: String, pidFile: String?, consoleSocket: String?) throws(OCIError) {
        let bundle = bundle.hasPrefix("/") ? bundle : (FileManager.default.currentDirectoryPath + "/" + bundle)
        var spec = try BundleSpec.load(bundle: bundle)
        let rootfs = try spec.rootfs(bundle: bundle)
        spec.annotations = try ImageAnnotations.merged(spec.annotations ?? [:], rootfs: rootfs)
        let guest = try GuestSpec(spec, rootfs: rootfs)
        if spec.process?.terminal == true && consoleSocket == nil {
            throw OCIError("the spec asks for a terminal (process.terminal) but no --console-socket was given")
        }
        try store.claim(id)
        do {
            try createClaimed(id: id, bundle: bundle, spec: spec, rootfs: rootfs, guest: guest, pidFile: pidFile,
                              consoleSocket: spec.process?.terminal == true ? consoleSocket : nil)
        } catch {
            store.remove(id)
            throw error
        }
    }

    private func createClaimed(id: String, bundle: String, spec: BundleSpec, rootfs: String, guest: GuestSpec,
                               pidFile: String?, consoleSocket: String?) throws(OCIError) {
        // CNI's namespace (a path): the guest takes its interface through a mirrored tap.
        let netns = spec.namespace("network")?.path
        var network: VMMCommand.Network?
        var mirrored: String?
        if let netns {
            let run = ContainerNetwork.runner(namespace: netns)
            if let interface = try ContainerNetwork.inspect(run) {
                network = try ContainerNetwork.attach(interface, run)
                mirrored = interface.name
            }
        }
        do {
            try createVMProcess(id: id, bundle: bundle, spec: spec, rootfs: rootfs, guest: guest, network: network, netns: netns,
                                mirrored: mirrored, pidFile: pidFile, consoleSocket: consoleSocket)
        } catch {
            if let netns, let mirrored { ContainerNetwork.detach(mirrored, ContainerNetwork.runner(namespace: netns)) }
            throw error
        }
    }

    private func createVMProcess(id: String, bundle: String, spec: BundleSpec, rootfs: String, guest: GuestSpec,
                                 network: VMMCommand.Network?, netns: String?, mirrored: String?,
                                 pidFile: String?, consoleSocket: String?) throws(OCIError) {
        // Inside the container's namespaces the VMM jails itself too (docs/jail.md): a root of
        // its own holding only /dev, and no root privileges, once the guest's files are open.
        let command = try VMMCommand(guest, network: network, jail: store.directory(id) + "/jail")
        let gate = store.fifo(id)
        do { try FileSystem.makeFIFO(gate, mode: 0o600) } catch { throw OCIError("\(error)") }
        var namespaces: ContainerProcess.Namespaces = []
        for (type, flag) in [("mount", ContainerProcess.Namespaces.mount), ("uts", .uts), ("ipc", .ipc), ("pid", .pid)] {
            if let ns = spec.namespace(type) {
                guard ns.path == nil else {
                    throw OCIError("joining an existing \(type) namespace (\(ns.path ?? "")) is not supported: a VM takes only the network namespace of another")
                }
                namespaces.insert(flag)
            }
        }
        // The network namespace: CNI's (a path: joined), or one of its own with only lo (no path:
        // the VM gets no interface, as with ctr run without --cni).
        if let network = spec.namespace("network"), network.path == nil { namespaces.insert(.network) }
        var console: FileDescriptor?
        if let consoleSocket {
            do { console = try PseudoTerminal.sendMaster(to: consoleSocket) } catch { throw OCIError("--console-socket \(consoleSocket): \(error)") }
        }
        let pid: Int32
        do {
            pid = try ContainerProcess.spawn(path: swiftlet, arguments: command.arguments, gate: gate, namespaces: namespaces,
                                             networkNamespace: netns, console: console)
        } catch { throw OCIError("cannot start the VM process: \(error)") }
        guard let identity = ProcessIdentity(currentOf: pid) else { throw OCIError("the VM process (pid \(pid)) exited at once") }
        // The container's cgroup holds the VM process: containerd reads it from /proc/PID/cgroup
        // for the task's metrics and OOM events, and the limits are the container's.
        var cgroups: [String] = []
        if let path = spec.linux?.cgroupsPath, !path.isEmpty {
            guard let host = CgroupHost.current() else {
                _ = HostProcess.send(SIGKILL, to: pid)
                throw OCIError("linux.cgroupsPath \(path): no cgroup hierarchy with the memory, cpu and pids controllers under /sys/fs/cgroup")
            }
            let resources = spec.linux?.resources
            let plan = host.containerPlan(path: path, memoryBytes: resources?.memory?.limit, cpuQuota: resources?.cpu?.quota,
                                          cpuPeriod: resources?.cpu?.period)
            do { try plan.apply(companions: [pid], includingSelf: false) } catch {
                _ = HostProcess.send(SIGKILL, to: pid)
                plan.remove()
                throw OCIError("linux.cgroupsPath \(path): \(error)")
            }
            cgroups = plan.directories.map(\.path)
        }
        let now = Clock.realtime()
        var record = ContainerRecord(id: id, bundle: bundle, rootfs: rootfs, pid: pid, startTicks: identity.startTicks,
                                     created: LogLayout.timestamp(seconds: now.seconds, nanoseconds: now.nanoseconds),
                                     annotations: spec.annotations ?? [:])
        record.cgroups = cgroups
        record.mirroredInterface = mirrored
        record.networkNamespace = netns
        do {
            try store.save(record)
            if let pidFile {
                // No newline: the shim reads the file whole with Atoi.
                try Data("\(pid)".utf8).write(to: URL(fileURLWithPath: pidFile), options: .atomic)
            }
        } catch {
            _ = HostProcess.send(SIGKILL, to: pid)
            throw error as? OCIError ?? OCIError("--pid-file \(pidFile ?? ""): cannot write (\(error))")
        }
    }

    /// `start ID`: the VM process execs the VMM.
    public func start(id: String) throws(OCIError) {
        var record = try store.load(id)
        switch record.status() {
        case "created": break
        case "stopped": throw OCIError("cannot start a container that has stopped")
        default: throw OCIError("cannot start an already running container")
        }
        let released: Bool
        do { released = try ContainerProcess.release(gate: store.fifo(id), milliseconds: 5000) } catch {
            throw OCIError("cannot start the container: \(error)")
        }
        guard released else { throw OCIError("cannot start the container: its VM process did not come through the exec FIFO") }
        FileSystem.removeIfPresent([store.fifo(id)])
        record.started = true
        try store.save(record)
    }

    // MARK: state, ps

    public func state(id: String) throws(OCIError) -> String {
        let record = try store.load(id)
        return record.stateJSON(status: record.status())
    }

    /// `ps [--format table|json] ID`: the VM process, the one process a VM container has.
    public func ps(id: String, json: Bool) throws(OCIError) -> String {
        let record = try store.load(id)
        let pids = record.status() == "stopped" ? [] : [record.pid]
        if json { return "[" + pids.map(String.init).joined(separator: ",") + "]" }
        return (["PID"] + pids.map(String.init)).joined(separator: "\n")
    }

    // MARK: kill, pause, resume, delete

    /// `kill [--all] ID SIGNAL`: to the VM process (SIGTERM stops the VM as it stops solo5-hvt).
    public func kill(id: String, signal text: String) throws(OCIError) {
        let record = try store.load(id)
        guard let signal = Self.signal(text) else { throw OCIError("unknown signal \"\(text.printable)\"") }
        guard record.status() != "stopped" else { throw OCIError("container not running") }
        let process = ProcessDescriptor(pid: record.pid)
        guard HostProcess.send(signal, to: record.pid, descriptor: process) else { throw OCIError("container not running") }
        if signal == SIGKILL && record.paused { _ = HostProcess.send(SIGCONT, to: record.pid, descriptor: process) }
    }

    /// `pause ID`: the whole VM process stops (SIGSTOP), every vCPU with it, as a freezer would.
    public func pause(id: String) throws(OCIError) {
        var record = try store.load(id)
        guard record.status() == "running" else { throw OCIError("container not running") }
        guard HostProcess.send(SIGSTOP, to: record.pid) else { throw OCIError("container not running") }
        record.paused = true
        try store.save(record)
    }

    public func resume(id: String) throws(OCIError) {
        var record = try store.load(id)
        guard record.status() == "paused" else { throw OCIError("container not paused") }
        guard HostProcess.send(SIGCONT, to: record.pid) else { throw OCIError("container not running") }
        record.paused = false
        try store.save(record)
    }

    /// `delete [--force] ID`: a stopped (or never started) container goes; a running one only
    /// with --force, after its VM process is killed.
    public func delete(id: String, force: Bool) throws(OCIError) {
        let record = try store.load(id)
        let status = record.status()
        if status != "stopped" {
            guard force || status == "created" else {
                throw OCIError("cannot delete container \(id) that is not stopped: \(status)")
            }
            let identity = ProcessIdentity(pid: record.pid, startTicks: record.startTicks)
            let process = ProcessDescriptor(pid: record.pid)
            _ = HostProcess.send(SIGKILL, to: record.pid, descriptor: process)
            _ = HostProcess.send(SIGCONT, to: record.pid, descriptor: process)
            // Gone once its parent (the shim) reaps it or it is a zombie: either reads as stopped.
            // (A `for … where` would go on reading /proc 500 times after it has gone.)
            var waited = 0
            while identity.isRunning && waited < 500 {
                Clock.sleep(milliseconds: 10)
                waited += 1
            }
        }
        for directory in record.cgroups { _ = try? FileSystem.removeDirectory(directory) }
        if let netns = record.networkNamespace, let mirrored = record.mirroredInterface, FileSystem.kind(of: netns) != .missing {
            ContainerNetwork.detach(mirrored, ContainerNetwork.runner(namespace: netns))
        }
        store.remove(id)
    }

    // MARK: features, update, exec

    /// `features`: what this runtime supports, in runc's `features` document.
    public static func features() -> String {
        """
        {
          "ociVersionMin": "1.0.0",
          "ociVersionMax": "\(ociVersion)",
          "hooks": [],
          "mountOptions": [],
          "linux": {
            "namespaces": ["mount", "network", "pid", "ipc", "uts"],
            "capabilities": [],
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": false},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
          },
          "annotations": {
            "org.swiftlet.kinds": "hvt,linux",
            "org.swiftlet.urunc.annotations": "true"
          }
        }
        """
    }

    /// `update`: a VM's memory and vCPUs are fixed when it boots; only a request that changes
    /// neither is accepted (containerd sends one at every start on some set-ups).
    public func update(id: String, resources: Data) throws(OCIError) {
        let record = try store.load(id)
        guard record.status() != "stopped" else { throw OCIError("container not running") }
        struct Resources: Decodable {
            struct Memory: Decodable { var limit: Int64? }
            struct CPU: Decodable { var quota: Int64?; var period: UInt64?; var shares: UInt64?; var cpus: String? }
            var memory: Memory?
            var cpu: CPU?
        }
        let request: Resources
        do { request = try JSONDecoder().decode(Resources.self, from: resources) } catch {
            throw OCIError("update: the resources are not valid JSON of linux.resources")
        }
        if request.memory?.limit != nil {
            throw OCIError("update: a VM's memory is fixed when it boots; the memory limit cannot change (stop and create it again)")
        }
        if request.cpu?.quota != nil || request.cpu?.cpus != nil {
            throw OCIError("update: a VM's vCPUs are fixed when it boots; the CPU quota and set cannot change here")
        }
    }

    /// `exec`: always refused; a VM has no processes to start beside its own.
    public static let execRefusal = "exec is not supported: the container is a virtual machine (a unikernel has no processes to start; urunc refuses exec too)"

    // MARK: signals

    /// A signal by number (`15`) or name (`SIGTERM`, `TERM`, case-insensitive).
    public static func signal(_ text: String) -> Int32? {
        if let n = Int32(text) { return (1...64).contains(n) ? n : nil }
        var name = text.uppercased()
        if name.hasPrefix("SIG") { name.removeFirst(3) }
        let names: [String: Int32] = ["HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "ILL": SIGILL, "TRAP": SIGTRAP, "ABRT": SIGABRT,
                                      "IOT": SIGABRT, "BUS": SIGBUS, "FPE": SIGFPE, "KILL": SIGKILL, "USR1": SIGUSR1, "SEGV": SIGSEGV,
                                      "USR2": SIGUSR2, "PIPE": SIGPIPE, "ALRM": SIGALRM, "TERM": SIGTERM, "STKFLT": 16, "CHLD": SIGCHLD,
                                      "CONT": SIGCONT, "STOP": SIGSTOP, "TSTP": SIGTSTP, "TTIN": SIGTTIN, "TTOU": SIGTTOU, "URG": SIGURG,
                                      "XCPU": SIGXCPU, "XFSZ": SIGXFSZ, "VTALRM": SIGVTALRM, "PROF": SIGPROF, "WINCH": SIGWINCH,
                                      "IO": SIGIO, "POLL": SIGIO, "PWR": SIGPWR, "SYS": SIGSYS]
        return names[name]
    }
}
