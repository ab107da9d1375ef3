import VMSpec

/// Mapping Firecracker's config (read by FirecrackerJSON) onto the VMM's machines.
extension FirecrackerConfig {
    /// Drive and interface ids unique, at most one root device: what Firecracker refuses too.
    public func checkUnique() throws(VMMError) {
        var ids: Set<String> = []
        for (i, d) in drives.enumerated() where !ids.insert(d.driveId).inserted {
            throw VMMError(.configuration, "drives[\(i)].drive_id: duplicate '\(d.driveId.printable)'")
        }
        let roots = drives.indices.filter { drives[$0].isRootDevice }
        if roots.count > 1 {
            throw VMMError(.configuration, "drives[\(roots[1])]: more than one root device (is_root_device)")
        }
        ids = []
        for (i, n) in networkInterfaces.enumerated() where !ids.insert(n.ifaceId).inserted {
            throw VMMError(.configuration, "network-interfaces[\(i)].iface_id: duplicate '\(n.ifaceId.printable)'")
        }
    }

    /// Guest memory: machine-config's mem_size_mib, or Firecracker's default.
    public var memoryBytes: UInt64 { (machineConfig?.memSizeMib ?? MachineConfig.defaultMemSizeMib) << 20 }

    /// The microVM this file describes: the root device (if any) is /dev/vda, the other drives follow
    /// in file order; without `root=` in boot_args, `root=/dev/vda` (or `root=PARTUUID=…`) is appended,
    /// with `ro` for a read-only root.
    public func linuxConfig() throws(VMMError) -> LinuxConfig {
        try checkUnique()
        var config = LinuxConfig(kernelPath: bootSource.kernelImagePath)
        config.source = .firecracker
        config.initrdPath = bootSource.initrdPath
        config.cpus = machineConfig?.vcpuCount ?? 1
        config.memoryBytes = memoryBytes
        let ordered = drives.filter(\.isRootDevice) + drives.filter { !$0.isRootDevice }
        config.disks = ordered.map { LinuxConfig.Disk(path: $0.pathOnHost, readOnly: $0.isReadOnly, id: $0.driveId) }
        var args = bootSource.bootArgs ?? LinuxConfig.defaultCommandLine
        if let root = drives.first(where: \.isRootDevice),
           !Self.kernelParameters(of: args).split(whereSeparator: \.isWhitespace).contains(where: { $0.hasPrefix("root=") }) {
            let device = root.partuuid.map { "PARTUUID=\($0)" } ?? "/dev/vda"
            args = Self.addingKernelParameters("root=\(device)" + (root.isReadOnly ? " ro" : ""), to: args)
        }
        config.commandLine = args
        config.nets = networkInterfaces.map { LinuxConfig.Net(tap: $0.hostDevName, mac: $0.guestMac?.bytes, id: $0.ifaceId) }
        config.vsock = vsock.map { LinuxConfig.Vsock(cid: UInt64($0.guestCid), uds: $0.udsPath) }
        return config
    }

    /// Where a Linux command line's own parameters end: at a standalone `--`, after which
    /// everything is init's (its arguments), or at the end.
    static func kernelPartEnd(of line: String) -> String.Index {
        var index = line.startIndex
        while index < line.endIndex {
            let next = line.index(after: index)
            if line[index] == "-", next < line.endIndex, line[next] == "-" {
                let end = line.index(after: next)
                let before = index == line.startIndex || line[line.index(before: index)].isWhitespace
                let after = end == line.endIndex || line[end].isWhitespace
                if before && after { return index }
            }
            index = next
        }
        return line.endIndex
    }

    /// The kernel's parameters of a command line (what precedes a standalone `--`).
    static func kernelParameters(of line: String) -> Substring { line[..<kernelPartEnd(of: line)] }

    /// `line` with `parameters` added to the kernel's part: before a ` -- `, so that they do not
    /// become init's arguments (`console=ttyS0 -- /bin/sh` → `console=ttyS0 root=/dev/vda -- /bin/sh`).
    static func addingKernelParameters(_ parameters: String, to line: String) -> String {
        let end = kernelPartEnd(of: line)
        guard end != line.endIndex else { return line + (line.isEmpty ? "" : " ") + parameters }
        var kernel = line[..<end]
        while kernel.last?.isWhitespace == true { kernel.removeLast() }
        return (kernel.isEmpty ? "" : kernel + " ") + parameters + " " + line[end...]
    }

    /// The same file read for a Solo5 hvt unikernel: drives are manifest block devices named by
    /// drive_id, network interfaces manifest net devices named by iface_id, boot_args the
    /// unikernel's arguments. One vCPU, no initrd, no vsock.
    public func hvtConfig() throws(VMMError) -> HvtConfig {
        try checkUnique()
        guard (machineConfig?.vcpuCount ?? 1) == 1 else { throw VMMError(.configuration, "machine-config.vcpu_count: a Solo5 unikernel has exactly 1 vCPU") }
        guard bootSource.initrdPath == nil else { throw VMMError(.configuration, "boot-source.initrd_path: a Solo5 unikernel takes no initrd") }
        guard vsock == nil else { throw VMMError(.configuration, "vsock: a Solo5 unikernel has no vsock device") }
        var config = HvtConfig(kernelPath: bootSource.kernelImagePath)
        config.memoryMiB = memoryBytes >> 20
        config.blocks = drives.map { HvtConfig.Block(name: $0.driveId, path: $0.pathOnHost, readOnly: $0.isReadOnly) }
        config.nets = networkInterfaces.map { HvtConfig.Net(name: $0.ifaceId, interface: $0.hostDevName, mac: $0.guestMac?.bytes) }
        config.arguments = (bootSource.bootArgs ?? "").split(whereSeparator: \.isWhitespace).map(String.init)
        return config
    }
}
