import Testing
@testable import Host

/// The jail's pure parts: limits from a VM's size, cgroup paths and files for v1 and v2, the
/// bind mounts a spec needs, the device nodes, and the default user.
@Suite struct JailTests {
    @Test func limitsAreGuestMemoryPlusOverheadOneCPUPerVCPUAndThreads() {
        let l = Jail.limits(memoryMiB: 256, vcpus: 2)
        #expect(l.memoryBytes == (256 + Jail.vmmOverheadMiB) << 20)
        #expect(l.cpus == 2)
        #expect(l.pids == 2 + Jail.threadsBeyondVCPUs)
    }

    // This machine's shape: v1 controllers, the process in a nested memory cgroup, a v2
    // hierarchy mounted without controllers (hybrid), cpu beside cpuacct.
    static let hybrid = """
        9:name=systemd:/
        8:pids:/
        4:memory:/process_api/7c85
        2:cpuacct:/
        1:cpu:/
        0::/
        """

    @Test func v1PlansOneCgroupPerControllerUnderTheProcesssOwn() throws {
        let host = try #require(CgroupHost.parse(procSelfCgroup: Self.hybrid, v2Controllers: "", v1Mounted: { _ in true }))
        #expect(host.version == .v1)
        let plan = host.plan(id: "vm1", limits: Jail.Limits(memoryBytes: 1 << 30, cpus: 2, pids: 70))
        #expect(plan.enable.isEmpty)
        #expect(plan.parents == ["/sys/fs/cgroup/memory/process_api/7c85/swiftlet", "/sys/fs/cgroup/cpu/swiftlet", "/sys/fs/cgroup/pids/swiftlet"])
        #expect(plan.directories == [
            CgroupPlan.Directory(path: "/sys/fs/cgroup/memory/process_api/7c85/swiftlet/vm1",
                                 settings: [CgroupPlan.Write(file: "memory.limit_in_bytes", value: "1073741824")]),
            CgroupPlan.Directory(path: "/sys/fs/cgroup/cpu/swiftlet/vm1",
                                 settings: [CgroupPlan.Write(file: "cpu.cfs_period_us", value: "100000"),
                                            CgroupPlan.Write(file: "cpu.cfs_quota_us", value: "200000")]),
            CgroupPlan.Directory(path: "/sys/fs/cgroup/pids/swiftlet/vm1", settings: [CgroupPlan.Write(file: "pids.max", value: "70")]),
        ])
    }

    @Test func v2WithTheControllersWinsAndPlansOneCgroupBesideTheSupervisor() throws {
        let host = try #require(CgroupHost.parse(procSelfCgroup: "0::/system.slice/swiftletd.service\n",
                                                 v2Controllers: "cpuset cpu io memory hugetlb pids rdma\n", v1Mounted: { _ in false }))
        #expect(host.version == .v2)
        let plan = host.plan(id: "web", limits: Jail.Limits(memoryBytes: 384 << 20, cpus: 1, pids: 65))
        #expect(plan.enable == [CgroupPlan.Write(file: "/sys/fs/cgroup/cgroup.subtree_control", value: "+memory +cpu +pids"),
                                CgroupPlan.Write(file: "/sys/fs/cgroup/swiftlet/cgroup.subtree_control", value: "+memory +cpu +pids")])
        #expect(plan.directories == [CgroupPlan.Directory(path: "/sys/fs/cgroup/swiftlet/web", settings: [
            CgroupPlan.Write(file: "memory.max", value: "\(384 << 20)"),
            CgroupPlan.Write(file: "cpu.max", value: "100000 100000"),
            CgroupPlan.Write(file: "pids.max", value: "65"),
        ])])
    }

    /// An OCI container's cgroup (swiftlet oci): `linux.cgroupsPath` from each hierarchy's root,
    /// parents made, the spec's limits only; a systemd path is the scope systemd would make.
    @Test func containerPlansFollowTheSpecsPath() throws {
        let v1 = try #require(CgroupHost.parse(procSelfCgroup: Self.hybrid, v2Controllers: "", v1Mounted: { _ in true }))
        let a = v1.containerPlan(path: "/k8s.io/c1", memoryBytes: 96 << 20, cpuQuota: nil, cpuPeriod: nil)
        #expect(a.enable.isEmpty)
        #expect(a.parents == ["/sys/fs/cgroup/memory/k8s.io", "/sys/fs/cgroup/cpu/k8s.io", "/sys/fs/cgroup/pids/k8s.io"])
        #expect(a.directories == [
            CgroupPlan.Directory(path: "/sys/fs/cgroup/memory/k8s.io/c1", settings: [CgroupPlan.Write(file: "memory.limit_in_bytes", value: "\(96 << 20)")]),
            CgroupPlan.Directory(path: "/sys/fs/cgroup/cpu/k8s.io/c1", settings: []),
            CgroupPlan.Directory(path: "/sys/fs/cgroup/pids/k8s.io/c1", settings: []),
        ])
        let v2 = try #require(CgroupHost.parse(procSelfCgroup: "0::/\n", v2Controllers: "cpu memory pids", v1Mounted: { _ in false }))
        let b = v2.containerPlan(path: "system.slice:cri-containerd:c2", memoryBytes: nil, cpuQuota: 50_000, cpuPeriod: 100_000)
        #expect(b.parents == ["/sys/fs/cgroup/system.slice"])
        #expect(b.enable.map(\.file) == ["/sys/fs/cgroup/cgroup.subtree_control", "/sys/fs/cgroup/system.slice/cgroup.subtree_control"])
        #expect(b.directories == [CgroupPlan.Directory(path: "/sys/fs/cgroup/system.slice/cri-containerd-c2.scope",
                                                       settings: [CgroupPlan.Write(file: "cpu.max", value: "50000 100000")])])
    }

    @Test func noUsableHierarchyIsNil() {
        // A v2 root without the pids controller and no v1 hierarchies.
        #expect(CgroupHost.parse(procSelfCgroup: "0::/\n", v2Controllers: "cpu memory", v1Mounted: { _ in false }) == nil)
        // v1 without a pids hierarchy.
        #expect(CgroupHost.parse(procSelfCgroup: Self.hybrid, v2Controllers: nil, v1Mounted: { $0 != "pids" }) == nil)
    }

    @Test func bindMountsAreTheDirectoriesOfRuntimePathsOnce() throws {
        #expect(try Jail.bindMounts(runtimePaths: []) == [])
        #expect(try Jail.bindMounts(runtimePaths: ["/run/vms/a/v.sock", "/run/vms/a/other.sock", "/run/vms/a/sub/x", "/srv/b/./v.sock"]) == [
            Jail.BindMount(source: "/run/vms/a", readOnly: false), Jail.BindMount(source: "/srv/b", readOnly: false),
        ])
    }

    @Test func bindMountsRefuseTheRootRelativeAndDotDotPaths() {
        #expect(throws: HostError(message: "/v.sock: the jail cannot share its directory /; put it in a directory of its own")) {
            try Jail.bindMounts(runtimePaths: ["/v.sock"])
        }
        #expect(throws: HostError(message: "v.sock: the jail needs an absolute path")) { try Jail.bindMounts(runtimePaths: ["v.sock"]) }
        #expect(throws: HostError(message: "/a/../v.sock: the jail cannot share a path with '..'")) {
            try Jail.bindMounts(runtimePaths: ["/a/../v.sock"])
        }
    }

    @Test func devicesAreMinimalAndTunOnlyWithTaps() {
        #expect(Jail.deviceNodes(taps: false) == ["/dev/null", "/dev/urandom", "/dev/kvm"])
        #expect(Jail.deviceNodes(taps: true) == ["/dev/null", "/dev/urandom", "/dev/kvm", "/dev/net/tun"])
    }

    @Test func defaultUserIsSwiftletElseNobodyWithANote() {
        let found = Jail.defaultUser { $0 == "swiftlet" ? (uid: 998, gid: 997) : nil }
        #expect(found.uid == 998 && found.gid == 997 && found.note == nil)
        let missing = Jail.defaultUser { _ in nil }
        #expect(missing.uid == 65534 && missing.gid == 65534)
        #expect(missing.note == "no user 'swiftlet' (scripts/install creates it): VM processes run as nobody/nogroup (65534)")
    }

    @Test func namespacesNeedASingleThreadedProcess() {
        // The test runner has many threads: detaching must refuse rather than detach one thread.
        #expect(throws: HostError.self) { try Jail.detachNamespaces() }
    }
}
