import ArgumentParser
import Logs
import VMM
import Host
import FirecrackerJSON
import VMSpec
#if canImport(Glibc)
import Glibc
#endif

/// `swiftlet run`: boot a Linux kernel in the foreground, console on stdio.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Boot a Linux kernel (bzImage) in a microVM; console on stdio.",
        discussion: """
            Exit status: the guest command's status when the guest's /init reports it \
            (debug-exit port 0xF4), 0 when the guest powers off or reboots, 128+N on signal N \
            (Ctrl-A x on a terminal counts as SIGINT), 1 on an error (bad input, triple fault, \
            KVM failure).
            """
    )

    @Option(help: "Kernel image (bzImage, e.g. /boot/vmlinuz-*); required unless --config-file is given.") var kernel: String?
    @Option(name: .customLong("config-file"), help: "A Firecracker JSON config file (boot-source, machine-config, drives, network-interfaces, vsock); it replaces --kernel, --initrd, --cmdline, --memory, --cpus, --disk, --net and --vsock.") var configFile: String?
    @Option(help: "Initial ramdisk.") var initrd: String?
    @Option(help: "Kernel command line.") var cmdline: String = LinuxConfig.defaultCommandLine
    @Option(help: "Guest memory: 128M, 2G, … (a bare number is MiB).", transform: RunCommand.memoryBytes) var memory: UInt64 = 256 << 20
    // Unconditional: `--cpus -1` is a wrong count, not a missing value followed by a flag.
    @Option(parsing: .unconditional, help: "Number of vCPUs.") var cpus: Int = 1
    @Option(name: .customLong("disk"), help: "A virtio-blk disk: PATH[,readonly][,id=NAME] (repeat for vdb, vdc, …).", transform: RunCommand.disk) var disks: [DiskSpec] = []
    @Option(name: .customLong("net"), help: "A virtio-net device on a tap: tap=NAME[,mac=02:xx:xx:xx:xx:xx][,id=NAME] (repeat for eth1, …; a missing tap is created when root).", transform: RunCommand.net) var nets: [NetSpec] = []
    @Flag(inversion: .prefixedNo, help: "A virtio-rng device fed from the host's getrandom.") var rng = true
    @Option(name: .customLong("vsock"), help: "A virtio-vsock device: cid=N,uds=PATH (host programs connect to PATH and write CONNECT <port>; guest connections to CID 2 port P go to PATH_P).", transform: RunCommand.vsockSpec) var vsock: VsockSpec?
    @Option(name: .customLong("extension"), help: "A device in another process, any language (docs/abi.md, Extensions): PROGRAM[,ARG...] (started with the protocol socket as its descriptor 3) or listen=PATH (a process that connects there), then [,irq=N][,timeout_ms=MS] (repeatable).", transform: RunCommand.extensionSpec) var extensions: [ExtensionSpec] = []
    @Option(help: "Run in a jail rooted at DIR (docs/jail.md): own mount and IPC namespaces and root, then the user 'swiftlet' (else nobody). Needs root.") var jail: String?
    @Flag(name: .customLong("no-seccomp"), help: "Do not install the seccomp filters (debugging, sanitizer runs).") var noSeccomp = false
    @OptionGroup var logLevel: LogLevelOption

    func validate() throws {
        if configFile != nil {
            guard kernel == nil, initrd == nil, disks.isEmpty, nets.isEmpty, vsock == nil else {
                throw ValidationError("--config-file cannot be combined with --kernel, --initrd, --disk, --net or --vsock")
            }
        } else if kernel == nil {
            throw ValidationError("--kernel is required (or --config-file)")
        }
        guard cpus >= 1 else { throw ValidationError("--cpus must be at least 1") }
        if let jail, !jail.hasPrefix("/") { throw ValidationError("--jail must be an absolute path") }
    }

    // Each value is parsed once, by VMSpec's grammar, as ArgumentParser reads the flag.
    static func memoryBytes(_ text: String) throws -> UInt64 {
        switch MemorySize.parse(text) {
        case .success(let bytes): return bytes
        case .failure(let why): throw ValidationError("--memory '\(text)' \(why)")
        }
    }

    static func disk(_ text: String) throws -> DiskSpec {
        guard let spec = DiskSpec(text) else { throw ValidationError("--disk '\(text)' is not PATH[,readonly][,id=NAME]") }
        // `root` names the root device for swiftletd and config files; here the command line says it.
        guard !spec.root else { throw ValidationError("--disk '\(text)': root is for swiftletd's config; give --cmdline root=/dev/vdX") }
        return spec
    }

    static func net(_ text: String) throws -> NetSpec {
        guard let spec = NetSpec(text) else { throw ValidationError("--net '\(text)' is not \(NetSpec.textForm)") }
        return spec
    }

    static func extensionSpec(_ text: String) throws -> ExtensionSpec {
        guard let spec = ExtensionSpec(text) else { throw ValidationError("--extension '\(text)' is not \(ExtensionSpec.textForm)") }
        return spec
    }

    static func vsockSpec(_ text: String) throws -> VsockSpec {
        guard let spec = VsockSpec(text) else { throw ValidationError("--vsock '\(text)' is not cid=N,uds=PATH (N in 3...4294967294)") }
        return spec
    }

    func run() throws {
        StopSignals.blockEarly()
        if jail != nil {
            do { try ForegroundJail.prepare() } catch { printError("swiftlet: \(error.message)"); Glibc.exit(1) }
        }
        var config = LinuxConfig(kernelPath: kernel ?? "")
        if let configFile {
            do {
                config = try FirecrackerConfig.load(path: configFile).linuxConfig()
            } catch {
                printError("swiftlet: \(error.message)")
                Glibc.exit(1)
            }
        } else {
            config.initrdPath = initrd
            config.commandLine = cmdline
            config.memoryBytes = memory
            config.cpus = cpus
            config.disks = disks.map(LinuxConfig.Disk.init)
            config.nets = nets.map(LinuxConfig.Net.init)
            config.vsock = vsock.map(LinuxConfig.Vsock.init)
        }
        config.entropy = rng
        // Extensions run as the VM will: the jail's user under --jail, else the invoking user.
        let jailUser = jail.map { _ in Jail.defaultUser() }
        config.extensions = ExtensionSet(extensions, user: jailUser.map { ExtensionSet.User(uid: $0.uid, gid: $0.gid) },
                                         seccomp: !noSeccomp)
        do throws(VMMError) {
            let vm = try LinuxVM(config: config, logSink: LogDestination(layout: .tender, threshold: logLevel.threshold))
            if let jail {
                try ForegroundJail.enter(jail, memoryMiB: config.memoryBytes >> 20, vcpus: config.cpus, taps: !config.nets.isEmpty,
                                         runtimePaths: config.vsock.map { [$0.uds] } ?? [])
            }
            // Every file and device is open: the VM runs under the process filter, and each of
            // its threads under its role's (docs/hardening.md), as under `swiftlet api`.
            if !noSeccomp {
                do { try Sandbox.installSeccompFilter() } catch { throw VMMError(.host, "cannot install the seccomp filter: \(error)") }
            }
            Glibc.exit(vm.run().exitStatus)
        } catch {
            printError("swiftlet: \(error.message)")
            Glibc.exit(1)
        }
    }
}
