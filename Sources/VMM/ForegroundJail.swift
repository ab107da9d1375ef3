import Host

/// `swiftlet run --jail DIR` and `swiftlet hvt --jail=DIR`: the jail of docs/jail.md for a VM run
/// in the foreground. Its mount and IPC namespaces, root, /dev and bind mounts, and the drop to the
/// `swiftlet` user (else nobody), as for swiftletd's VMs; no cgroup (nobody would remove it after
/// the run: the process cannot, once unprivileged) and no PID namespace (the run stays the
/// terminal's foreground process).
public enum ForegroundJail {
    /// Detaches the namespaces: call it before any thread starts. Throws one line.
    public static func prepare() throws(VMMError) {
        do { try Jail.detachNamespaces() } catch { throw VMMError(.configuration, "--jail: \(error)") }
    }

    /// Enters the jail at `directory` once the VM's files and devices are open, then drops to the
    /// default user. Throws one line.
    public static func enter(_ directory: String, memoryMiB: UInt64, vcpus: Int, taps: Bool, runtimePaths: [String]) throws(VMMError) {
        var jail = Jail(root: directory, id: "")
        jail.cgroups = false
        let user = Jail.defaultUser()
        do {
            try jail.enter(Jail.Needs(memoryMiB: memoryMiB, vcpus: vcpus, taps: taps, runtimePaths: runtimePaths))
            try Sandbox.dropPrivileges(uid: user.uid, gid: user.gid)
        } catch { throw VMMError(.configuration, "cannot set up the jail: \(error)") }
    }
}
