import CHost
#if canImport(Glibc)
import Glibc
#endif

/// The jail of one VM process (Firecracker's jailer, OpenBSD vmd's privsep): its own mount and
/// IPC namespaces, a root of its own (an empty tmpfs on `root` holding a minimal /dev and the
/// bind mounts the VM needs at run time), cgroup limits from the VM's size, then the drop to an
/// unprivileged user (`Sandbox.dropPrivileges`) and seccomp.
///
/// Two steps, because namespaces belong to threads: `detachNamespaces()` while the process has a
/// single thread (every thread created later shares the new namespaces), and `enter(_:)` once
/// every file and device of the VM is open (kernel, initrd, disks, taps, sockets: all opened by
/// host path before the pivot, so none has to be inside). See docs/jail.md.
public struct Jail: Sendable, Equatable {
    /// The jail's directory on the host (created empty, root-owned, mode 0755 when absent).
    public var root: String
    /// Names the VM's cgroup (`swiftlet/ID`).
    public var id: String
    /// Apply cgroup limits (off only where the host has no usable hierarchy and the user asked so).
    public var cgroups = true

    public init(root: String, id: String) { self.root = root; self.id = id }

    /// What a VM needs inside its jail, from its spec.
    public struct Needs: Sendable, Equatable {
        public var memoryMiB: UInt64
        public var vcpus: Int
        /// The VM uses taps: /dev/net/tun is present (the taps themselves are open already).
        public var taps: Bool
        /// Host paths the VM process opens or connects to after the pivot (vsock's `uds_path`,
        /// whose `_PORT` sockets are connected to at run time): each one's directory is
        /// bind-mounted at the same path inside.
        public var runtimePaths: [String]
        /// Processes the VM process started that belong to the VM (its extensions): they join its
        /// cgroup with it. Its namespaces and root they share already (children, and pivot_root
        /// moves every process of the mount namespace whose root was the old one).
        public var companions: [Int32]

        public init(memoryMiB: UInt64, vcpus: Int, taps: Bool = false, runtimePaths: [String] = [], companions: [Int32] = []) {
            self.memoryMiB = memoryMiB; self.vcpus = vcpus; self.taps = taps; self.runtimePaths = runtimePaths
            self.companions = companions
        }
    }

    // MARK: - What goes in (pure)

    /// Memory the VMM itself may use beyond guest memory: the Swift runtime and libraries, thread
    /// stacks, device queues and buffers, page cache of disk I/O. An idle `swiftlet api` with a
    /// small guest resides in about 20 MiB; the rest is headroom.
    public static let vmmOverheadMiB: UInt64 = 128
    /// Threads beyond one per vCPU: API server, console, device and timer threads, with room.
    public static let threadsBeyondVCPUs = 64

    /// A VM's cgroup limits.
    public struct Limits: Sendable, Equatable {
        public var memoryBytes: UInt64
        /// CPU time, in whole CPUs (a CFS quota of `cpus` periods per period).
        public var cpus: Int
        /// Tasks (threads).
        public var pids: Int
        public init(memoryBytes: UInt64, cpus: Int, pids: Int) { self.memoryBytes = memoryBytes; self.cpus = cpus; self.pids = pids }
    }

    /// Guest memory plus `vmmOverheadMiB`; one CPU per vCPU; vCPUs plus `threadsBeyondVCPUs` tasks.
    public static func limits(memoryMiB: UInt64, vcpus: Int) -> Limits {
        Limits(memoryBytes: (memoryMiB + vmmOverheadMiB) << 20, cpus: max(1, vcpus), pids: max(1, vcpus) + threadsBeyondVCPUs)
    }

    /// A bind mount into the jail: `source` on the host appears at the same path inside.
    public struct BindMount: Sendable, Equatable {
        public var source: String
        public var readOnly: Bool
        public init(source: String, readOnly: Bool) { self.source = source; self.readOnly = readOnly }
    }

    /// The directories of `runtimePaths`, each once (a directory inside another listed one is
    /// covered by it), read-write (a socket is created or connected to there). Refuses a
    /// relative path and one whose directory is `/`, which would put the host's root back.
    public static func bindMounts(runtimePaths: [String]) throws(HostError) -> [BindMount] {
        var directories: [String] = []
        for path in runtimePaths {
            guard path.hasPrefix("/") else { throw HostError(message: "\(path): the jail needs an absolute path") }
            let parts = path.split(separator: "/").filter { $0 != "." }
            guard !parts.contains("..") else { throw HostError(message: "\(path): the jail cannot share a path with '..'") }
            guard parts.count >= 2 else {
                throw HostError(message: "\(path): the jail cannot share its directory /; put it in a directory of its own")
            }
            directories.append("/" + parts.dropLast().joined(separator: "/"))
        }
        let unique = Array(Set(directories)).sorted()
        let kept = unique.filter { d in !unique.contains { other in other != d && d.hasPrefix(other + "/") } }
        return kept.map { BindMount(source: $0, readOnly: false) }
    }

    /// The device nodes of the jail's /dev: what a VM process may open after the pivot.
    public static func deviceNodes(taps: Bool) -> [String] {
        ["/dev/null", "/dev/urandom", "/dev/kvm"] + (taps ? ["/dev/net/tun"] : [])
    }

    // MARK: - The default user

    /// The user VM processes run as when the daemon's config names none.
    public static let defaultUserName = "swiftlet"
    /// nobody/nogroup: the fallback when there is no `swiftlet` user.
    public static let nobody: UInt32 = 65534

    /// The `swiftlet` user's uid and gid; else nobody/nogroup (65534) and a note saying so.
    public static func defaultUser(lookup: (String) -> (uid: UInt32, gid: UInt32)? = lookupUser) -> (uid: UInt32, gid: UInt32, note: String?) {
        if let user = lookup(defaultUserName) { return (user.uid, user.gid, nil) }
        return (nobody, nobody, "no user '\(defaultUserName)' (scripts/install creates it): VM processes run as nobody/nogroup (65534)")
    }

    /// A user's uid and primary gid from the password database; nil when there is none.
    public static func lookupUser(_ name: String) -> (uid: UInt32, gid: UInt32)? {
        guard let entry = getpwnam(name) else { return nil }
        return (entry.pointee.pw_uid, entry.pointee.pw_gid)
    }

    // MARK: - Entering it

    /// Gives the process mount and IPC namespaces of its own, with every mount private (nothing
    /// done in the jail reaches the host, nothing mounted on the host reaches the jail). Call it
    /// while the process has one thread: namespaces belong to threads, and only threads created
    /// afterwards share the new ones.
    public static func detachNamespaces() throws(HostError) {
        let threads = taskCount()
        guard threads == 1 else {
            throw HostError(message: "the jail must be set up before threads start (this process runs \(threads))")
        }
        var result = chost_unshare(chost_clone_newns() | chost_clone_newipc())
        guard result == 0 else { throw HostError("unshare(CLONE_NEWNS|CLONE_NEWIPC)", errno: -result) }
        result = chost_mount(nil, "/", nil, chost_ms_rec() | chost_ms_private(), nil)
        guard result == 0 else { throw HostError("making the mounts of / private", errno: -result) }
    }

    /// Builds the jail for `needs` and moves the process into it: the jail root (an empty tmpfs
    /// on `root`), /dev, the bind mounts, the cgroup, pivot_root and the old root unmounted, and
    /// the new root read-only. After `detachNamespaces()`; before `Sandbox.dropPrivileges`.
    public func enter(_ needs: Needs) throws(HostError) {
        let binds = try Self.bindMounts(runtimePaths: needs.runtimePaths)
        try prepareRoot()
        try mount("swiftlet-jail", root, type: "tmpfs", flags: chost_ms_nosuid(), data: "mode=0755,size=1m,nr_inodes=1024")
        try makeDirectory(root + "/dev")
        for node in Self.deviceNodes(taps: needs.taps) { try copyDeviceNode(node) }
        for bind in binds {
            let target = root + bind.source
            try makeDirectories(target)
            try mount(bind.source, target, type: nil, flags: chost_ms_bind() | chost_ms_rec(), data: nil)
            if bind.readOnly {
                try mount(nil, target, type: nil, flags: chost_ms_remount() | chost_ms_bind() | chost_ms_rdonly() | chost_ms_nosuid(), data: nil)
            }
        }
        if cgroups {
            guard let host = CgroupHost.current() else {
                throw HostError(message: "no cgroup hierarchy with the memory, cpu and pids controllers under /sys/fs/cgroup")
            }
            try host.plan(id: id, limits: Self.limits(memoryMiB: needs.memoryMiB, vcpus: needs.vcpus)).apply(companions: needs.companions)
        }
        // pivot_root(".", "."): the old root is stacked under the new one and unmounted at once,
        // with no directory for it inside the jail.
        guard chdir(root) == 0 else { throw HostError("chdir \(root)", errno: errno) }
        var result = chost_pivot_root(".", ".")
        guard result == 0 else { throw HostError("pivot_root into \(root)", errno: -result) }
        result = chost_umount_detach(".")
        guard result == 0 else { throw HostError("unmounting the old root", errno: -result) }
        guard chdir("/") == 0 else { throw HostError("chdir /", errno: errno) }
        try mount(nil, "/", type: nil, flags: chost_ms_remount() | chost_ms_bind() | chost_ms_rdonly() | chost_ms_nosuid(), data: nil)
    }

    /// Creates `root` (root-owned, 0755) or checks the existing one: a directory owned by root,
    /// not writable by others, and empty (so nothing of an earlier run or of anyone else shows).
    private func prepareRoot() throws(HostError) {
        var info = stat()
        if lstat(root, &info) != 0 {
            guard errno == ENOENT else { throw HostError("jail \(root)", errno: errno) }
            guard Glibc.mkdir(root, 0o755) == 0 else { throw HostError("creating the jail \(root)", errno: errno) }
            guard Glibc.chmod(root, 0o755) == 0 else { throw HostError("chmod the jail \(root)", errno: errno) }
            return
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw HostError(message: "jail \(root): not a directory") }
        guard info.st_uid == 0, info.st_mode & 0o022 == 0 else {
            throw HostError(message: "jail \(root): must be owned by root and writable by no one else")
        }
        guard Self.entries(root).isEmpty else { throw HostError(message: "jail \(root): not empty") }
    }

    /// A device node like the host's (same type, numbers, mode and owner) at the same path inside.
    private func copyDeviceNode(_ path: String) throws(HostError) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT && path != "/dev/kvm" { return }  // a host without it; the VM does not need it then
            throw HostError("jail: \(path)", errno: errno)
        }
        let target = root + path
        try makeDirectories(String(target[..<(target.lastIndex(of: "/") ?? target.endIndex)]))
        let result = chost_mknod(target, UInt32(info.st_mode), UInt64(info.st_rdev))
        guard result == 0 else { throw HostError("jail: mknod \(target)", errno: -result) }
        guard chown(target, info.st_uid, info.st_gid) == 0, Glibc.chmod(target, info.st_mode & 0o7777) == 0 else {
            throw HostError("jail: chown/chmod \(target)", errno: errno)
        }
    }

    private func mount(_ source: String?, _ target: String, type: String?, flags: UInt, data: String?) throws(HostError) {
        let result = chost_mount(source, target, type, flags, data)
        guard result == 0 else { throw HostError("jail: mount \(source ?? "") on \(target)", errno: -result) }
    }

    private func makeDirectory(_ path: String) throws(HostError) {
        guard Glibc.mkdir(path, 0o755) == 0 || errno == EEXIST else { throw HostError("jail: mkdir \(path)", errno: errno) }
    }

    /// mkdir -p of `path` below `root` (which exists).
    private func makeDirectories(_ path: String) throws(HostError) {
        var current = root
        for part in path.dropFirst(root.count).split(separator: "/") {
            current += "/" + part
            try makeDirectory(current)
        }
    }

    /// The names in a directory, without . and ..; empty when it cannot be read.
    static func entries(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The threads of this process (/proc/self/task).
    static func taskCount() -> Int { entries("/proc/self/task").count }

    /// Removes the jail directory a VM process left (empty: the tmpfs lived in its namespace).
    public static func removeRoot(_ root: String) { _ = rmdir(root) }
}

// MARK: - cgroups

/// The host's cgroup hierarchy as a VM's limits need it: cgroup v2 when /sys/fs/cgroup is a
/// unified hierarchy offering the memory, cpu and pids controllers, else v1 with a hierarchy
/// mounted for each of them.
public struct CgroupHost: Sendable, Equatable {
    public enum Version: Sendable, Equatable { case v1, v2 }
    public static let controllers = ["memory", "cpu", "pids"]

    public var version: Version
    /// v1: controller → its hierarchy's mount point and this process's cgroup in it.
    /// v2: "" → the unified mount point and (unused) this process's cgroup.
    public var mounts: [String: String]
    public var current: [String: String]

    public init(version: Version, mounts: [String: String], current: [String: String]) {
        self.version = version; self.mounts = mounts; self.current = current
    }

    /// From the texts the kernel gives: /proc/self/cgroup, the unified root's cgroup.controllers
    /// (nil without one) and which v1 controller directories exist under `base`.
    public static func parse(procSelfCgroup: String, v2Controllers: String?, v1Mounted: (String) -> Bool,
                             base: String = "/sys/fs/cgroup") -> CgroupHost? {
        if let v2Controllers, Set(v2Controllers.split(whereSeparator: \.isWhitespace).map(String.init)).isSuperset(of: controllers) {
            return CgroupHost(version: .v2, mounts: ["": base], current: ["": "/"])
        }
        var mounts: [String: String] = [:]
        var current: [String: String] = [:]
        for line in procSelfCgroup.split(separator: "\n") {
            // hierarchy-ID:controller,controller:path
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            for controller in fields[1].split(separator: ",").map(String.init) where controllers.contains(controller) {
                current[controller] = String(fields[2])
            }
        }
        for controller in controllers {
            guard current[controller] != nil, v1Mounted(controller) else { return nil }
            mounts[controller] = base + "/" + controller
        }
        return CgroupHost(version: .v1, mounts: mounts, current: current)
    }

    /// This host's, as this process sees it; nil when neither kind is usable.
    public static func current() -> CgroupHost? {
        let base = "/sys/fs/cgroup"
        guard let selfText = try? readWholeFile("/proc/self/cgroup") else { return nil }
        let v2 = (try? readWholeFile(base + "/cgroup.controllers")).map { String(decoding: $0, as: UTF8.self) }
        return parse(procSelfCgroup: String(decoding: selfText, as: UTF8.self), v2Controllers: v2, v1Mounted: { controller in
            var info = stat()
            return stat(base + "/" + controller + "/cgroup.procs", &info) == 0
        }, base: base)
    }

    /// The CFS period limits are given in (100 ms, the kernel's default).
    public static let periodMicroseconds = 100_000

    /// An OCI container's cgroup (`linux.cgroupsPath`, relative to each hierarchy's root, as runc
    /// reads an absolute path): its parents made as needed, the memory limit and CPU quota of the
    /// spec written when it gives them. A systemd-style path (`slice:prefix:name`) becomes the
    /// directory systemd would make, `slice/prefix-name.scope`.
    public func containerPlan(path: String, memoryBytes: Int64?, cpuQuota: Int64?, cpuPeriod: UInt64?) -> CgroupPlan {
        var path = path
        let systemd = path.split(separator: ":", omittingEmptySubsequences: false)
        if systemd.count == 3 { path = "/\(systemd[0])/\(systemd[1])-\(systemd[2]).scope" }
        let parts = path.split(separator: "/").map(String.init)
        var memory: [CgroupPlan.Write] = [], cpu: [CgroupPlan.Write] = []
        switch version {
        case .v2:
            let root = mounts[""] ?? "/sys/fs/cgroup"
            if let memoryBytes, memoryBytes > 0 { memory.append(CgroupPlan.Write(file: "memory.max", value: "\(memoryBytes)")) }
            if let cpuQuota, cpuQuota > 0 { cpu.append(CgroupPlan.Write(file: "cpu.max", value: "\(cpuQuota) \(cpuPeriod ?? UInt64(Self.periodMicroseconds))")) }
            let enable = Self.controllers.map { "+" + $0 }.joined(separator: " ")
            let parents = (0..<max(0, parts.count - 1)).map { root + "/" + parts[0...$0].joined(separator: "/") }
            return CgroupPlan(enable: ([root] + parents).map { CgroupPlan.Write(file: $0 + "/cgroup.subtree_control", value: enable) },
                              parents: parents,
                              directories: [CgroupPlan.Directory(path: root + "/" + parts.joined(separator: "/"), settings: memory + cpu)])
        case .v1:
            if let memoryBytes, memoryBytes > 0 { memory.append(CgroupPlan.Write(file: "memory.limit_in_bytes", value: "\(memoryBytes)")) }
            if let cpuQuota, cpuQuota > 0 {
                cpu = [CgroupPlan.Write(file: "cpu.cfs_period_us", value: "\(cpuPeriod ?? UInt64(Self.periodMicroseconds))"),
                       CgroupPlan.Write(file: "cpu.cfs_quota_us", value: "\(cpuQuota)")]
            }
            let settings = ["memory": memory, "cpu": cpu]
            var parents: [String] = []
            for controller in Self.controllers {
                let base = mounts[controller] ?? ""
                parents += (0..<max(0, parts.count - 1)).map { base + "/" + parts[0...$0].joined(separator: "/") }
            }
            return CgroupPlan(enable: [], parents: parents, directories: Self.controllers.map {
                CgroupPlan.Directory(path: (mounts[$0] ?? "") + "/" + parts.joined(separator: "/"), settings: settings[$0] ?? [])
            })
        }
    }

    /// Where VM `id`'s cgroup goes and what is written there. v1: under this process's own cgroup
    /// of each controller (`…/swiftlet/ID`, so a VM stays inside whatever limits its supervisor
    /// has). v2: `/sys/fs/cgroup/swiftlet/ID`, beside the supervisor rather than under it: v2
    /// lets no cgroup that holds processes (the supervisor's) have controller-enabled children.
    public func plan(id: String, limits: Jail.Limits) -> CgroupPlan {
        let quota = "\(limits.cpus * Self.periodMicroseconds)"
        switch version {
        case .v2:
            let root = mounts[""] ?? "/sys/fs/cgroup"
            let enable = Self.controllers.map { "+" + $0 }.joined(separator: " ")
            return CgroupPlan(
                enable: [CgroupPlan.Write(file: root + "/cgroup.subtree_control", value: enable),
                         CgroupPlan.Write(file: root + "/swiftlet/cgroup.subtree_control", value: enable)],
                parents: [root + "/swiftlet"],
                directories: [CgroupPlan.Directory(path: root + "/swiftlet/" + id, settings: [
                    CgroupPlan.Write(file: "memory.max", value: "\(limits.memoryBytes)"),
                    CgroupPlan.Write(file: "cpu.max", value: "\(quota) \(Self.periodMicroseconds)"),
                    CgroupPlan.Write(file: "pids.max", value: "\(limits.pids)"),
                ])])
        case .v1:
            func base(_ controller: String) -> String {
                let own = (current[controller] ?? "/").split(separator: "/").joined(separator: "/")
                return (mounts[controller] ?? "") + (own.isEmpty ? "" : "/" + own) + "/swiftlet"
            }
            let settings: [String: [CgroupPlan.Write]] = [
                "memory": [CgroupPlan.Write(file: "memory.limit_in_bytes", value: "\(limits.memoryBytes)")],
                "cpu": [CgroupPlan.Write(file: "cpu.cfs_period_us", value: "\(Self.periodMicroseconds)"),
                        CgroupPlan.Write(file: "cpu.cfs_quota_us", value: quota)],
                "pids": [CgroupPlan.Write(file: "pids.max", value: "\(limits.pids)")],
            ]
            return CgroupPlan(enable: [], parents: Self.controllers.map(base),
                              directories: Self.controllers.map { CgroupPlan.Directory(path: base($0) + "/" + id, settings: settings[$0] ?? []) })
        }
    }
}

/// A VM's cgroup, worked out by `CgroupHost.plan`: what to create, write and join, and what to
/// remove once the VM process has ended.
public struct CgroupPlan: Sendable, Equatable {
    /// `value` written to `file`.
    public struct Write: Sendable, Equatable {
        public var file: String
        public var value: String
        public init(file: String, value: String) { self.file = file; self.value = value }
    }
    /// One cgroup directory and its limit files.
    public struct Directory: Sendable, Equatable {
        public var path: String
        public var settings: [Write]
        public init(path: String, settings: [Write]) { self.path = path; self.settings = settings }
    }

    /// Controller enabling (v2's cgroup.subtree_control), done once the parents exist.
    public var enable: [Write]
    /// Created when absent, kept (shared by every VM).
    public var parents: [String]
    /// The VM's own cgroups: created, limited, joined; removed after the VM.
    public var directories: [Directory]

    /// Creates the cgroups, writes the limits and moves this process (every thread; unless not
    /// `includingSelf`) and its `companions` into them. An existing cgroup of the same id is reused only when no process
    /// is in it.
    public func apply(companions: [Int32] = [], includingSelf: Bool = true) throws(HostError) {
        for parent in parents {
            guard mkdir(parent, 0o755) == 0 || errno == EEXIST else { throw HostError("cgroup: mkdir \(parent)", errno: errno) }
        }
        for write in enable { try Self.write(write.value, to: write.file) }
        for directory in directories {
            if mkdir(directory.path, 0o755) != 0 {
                guard errno == EEXIST else { throw HostError("cgroup: mkdir \(directory.path)", errno: errno) }
                let procs = (try? readWholeFile(directory.path + "/cgroup.procs")) ?? []
                guard procs.allSatisfy({ $0 == 0x0A || $0 == 0x20 }) else {
                    throw HostError(message: "cgroup \(directory.path) is in use by another process (a VM with the same id?)")
                }
            }
            for write in directory.settings { try Self.write(write.value, to: directory.path + "/" + write.file) }
        }
        // "0" is the writer itself; cgroup.procs moves every thread of the process.
        for directory in directories {
            for pid in (includingSelf ? ["0"] : []) + companions.map(String.init) { try Self.write(pid, to: directory.path + "/cgroup.procs") }
        }
    }

    /// Removes the VM's cgroups (they must be empty: call it after the VM process has ended).
    public func remove() {
        for directory in directories { _ = rmdir(directory.path) }
    }

    static func write(_ value: String, to path: String) throws(HostError) {
        let fd = try FileDescriptor.open(path, flags: O_WRONLY | O_CLOEXEC)
        let bytes = Array(value.utf8)
        let failure = bytes.withUnsafeBytes { raw -> HostError? in
            do throws(HostError) { try fd.writeAll(raw); return nil } catch { return error }
        }
        if let failure { throw HostError("cgroup: writing \(value) to \(path)", errno: failure.errno) }
    }
}

// MARK: - A new PID namespace

extension HostProcess {
    /// `spawn`, but the new process is the first (pid 1) of a new PID namespace, so a jailed VM
    /// sees no other process. Returns its pid as this process sees it: signals, waitpid, pidfds
    /// and /proc work on it as on any child. Needs root (CAP_SYS_ADMIN).
    public static func spawnInNewPIDNamespace(path: String, arguments: [String], outputPath: String) throws(HostError) -> Int32 {
        let output = try FileDescriptor.open(outputPath, flags: O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o640)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        let pid = signalsReset.withUnsafeBufferPointer { signals in
            chost_spawn_new_pid_namespace(path, argv, environ, output.rawValue, signals.baseAddress, Int32(signals.count))
        }
        guard pid > 0 else { throw HostError("cannot start \(path) in a new PID namespace", errno: -pid) }
        return pid
    }
}
