import VMSpec

/// What a container's VM is, read from its bundle: the kernel and its kind, an initrd, block
/// devices, the guest's arguments and memory. Named by annotations, Swiftlet's own
/// (`org.swiftlet.*`) or urunc's (`com.urunc.unikernel.*`, so urunc's images run unchanged);
/// every path is inside the container's root file system (`RootfsPath`).
///
/// | annotation | urunc's name | value |
/// | --- | --- | --- |
/// | `org.swiftlet.kernel` | `com.urunc.unikernel.binary` | the kernel, a path in the rootfs (required) |
/// | `org.swiftlet.kind` | from `unikernelType` and `hypervisor` | `hvt` (a Solo5 hvt unikernel, ABI 1 or 2) or `linux` (a bzImage or PVH ELF) |
/// | `org.swiftlet.initrd` | `com.urunc.unikernel.initrd` | Linux: an initrd in the rootfs |
/// | `org.swiftlet.block` | `com.urunc.unikernel.block` (+ `solo5BlkDev`) | `[NAME=]PATH,…`: disk images in the rootfs; NAME is the unikernel's device name (default `storage`) |
/// | `org.swiftlet.cmdline` | `com.urunc.unikernel.cmdline` | Linux: the kernel command line; hvt: the unikernel's arguments (words), instead of the process's |
/// | `org.swiftlet.memory` | — | guest memory (`64M`, `1G`); else the memory limit less `vmmOverheadMiB`; else the default |
public struct GuestSpec: Sendable, Equatable {
    /// The kinds of kernel a container may boot.
    public enum Kind: String, Sendable, Equatable {
        /// A Solo5 hvt unikernel: `swiftlet hvt`.
        case hvt
        /// A Linux bzImage or PVH ELF: `swiftlet run`.
        case linux
    }

    /// A block device: the unikernel's name for it (hvt) and its host path.
    public struct Block: Sendable, Equatable {
        public var name: String
        public var path: String
        public init(name: String, path: String) { self.name = name; self.path = path }
    }

    public var kind: Kind
    /// Host paths, resolved inside the rootfs.
    public var kernel: String
    public var initrd: String?
    public var blocks: [Block]
    /// hvt: the unikernel's arguments; Linux: one element, the kernel command line.
    public var arguments: [String]
    public var memoryMiB: UInt64
    /// The name of the unikernel's network device (urunc's `solo5NetDev`; default `service`).
    public var netDeviceName: String

    /// Memory the VMM process itself needs beside guest memory, taken off a container's memory
    /// limit to size the guest: an hvt tender resides in a few MiB, `swiftlet run` (Foundation,
    /// device threads and queues) in about 20; the rest is headroom for page cache and stacks.
    public static let vmmOverheadMiB: UInt64 = 32
    /// Guest memory when neither an annotation nor a limit says: hvt as solo5-hvt (32 MiB), Linux
    /// as Firecracker (128 MiB).
    public static func defaultMemoryMiB(_ kind: Kind) -> UInt64 { kind == .hvt ? 32 : 128 }

    public static let prefix = "org.swiftlet."
    public static let uruncPrefix = "com.urunc.unikernel."

    /// Reads the guest of `spec`, whose root file system is at `rootfs`. `resolve` finds a
    /// rootfs path on the host (tests give their own). Errors are one line naming the annotation.
    public init(_ spec: BundleSpec, rootfs: String,
                resolve: (String, String, String) throws(OCIError) -> String = RootfsPath.regularFile) throws(OCIError) {
        let annotations = spec.annotations ?? [:]
        func value(_ ours: String, _ urunc: String?) -> String? {
            if let v = annotations[Self.prefix + ours], !v.isEmpty { return v }
            if let urunc, let v = annotations[Self.uruncPrefix + urunc], !v.isEmpty { return v }
            return nil
        }
        guard let kernelPath = value("kernel", "binary") else {
            throw OCIError("the bundle names no kernel: annotate it with \(Self.prefix)kernel (or \(Self.uruncPrefix)binary), a path in its root file system")
        }
        kind = try Self.kind(annotations)
        kernel = try resolve(kernelPath, rootfs, "kernel")
        if let initrd = value("initrd", "initrd") {
            guard kind == .linux else { throw OCIError("\(Self.prefix)initrd: an hvt unikernel takes no initrd") }
            self.initrd = try resolve(initrd, rootfs, "initrd")
        }
        let defaultBlockName = value("solo5-block-device", "solo5BlkDev") ?? "storage"
        netDeviceName = value("solo5-net-device", "solo5NetDev") ?? "service"
        for name in [defaultBlockName, netDeviceName] where !Self.isDeviceName(name) {
            throw OCIError("device name '\(name.printable)' is not 1 to 67 letters and digits (Solo5's manifest names)")
        }
        blocks = []
        for item in (value("block", "block") ?? "").split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = parts.count == 2 ? String(parts[0]) : defaultBlockName
            let path = String(parts[parts.count - 1])
            guard Self.isDeviceName(name) else { throw OCIError("\(Self.prefix)block: '\(name.printable)' is not a device name") }
            guard !path.isEmpty else { throw OCIError("\(Self.prefix)block: '\(String(item).printable)' names no file") }
            guard !blocks.contains(where: { $0.name == name }) || kind == .linux else {
                throw OCIError("\(Self.prefix)block: device '\(name.printable)' is named twice")
            }
            blocks.append(Block(name: name, path: try resolve(path, rootfs, "block device")))
        }
        if let cmdline = value("cmdline", "cmdline") {
            arguments = kind == .linux ? [cmdline] : cmdline.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        } else {
            // The process's args are argv: the first names the program (the image's entry
            // point), the rest are the guest's.
            let rest = Array((spec.process?.args ?? []).dropFirst())
            arguments = kind == .linux ? (rest.isEmpty ? [] : [rest.joined(separator: " ")]) : rest
        }
        memoryMiB = try Self.memory(annotations[Self.prefix + "memory"], limit: spec.linux?.resources?.memory?.limit, kind: kind)
    }

    /// The kind: `org.swiftlet.kind`, else urunc's pair of `unikernelType` and `hypervisor`.
    static func kind(_ annotations: [String: String]) throws(OCIError) -> Kind {
        if let text = annotations[prefix + "kind"] {
            guard let kind = Kind(rawValue: text) else {
                throw OCIError("\(prefix)kind: unknown kernel kind '\(text.printable)' (hvt or linux)")
            }
            return kind
        }
        let type = annotations[uruncPrefix + "unikernelType"], monitor = annotations[uruncPrefix + "hypervisor"]
        switch (type, monitor) {
        case (nil, nil):
            throw OCIError("the bundle names no kernel kind: annotate it with \(prefix)kind (hvt or linux)")
        case ("mirage"?, "hvt"?), ("rumprun"?, "hvt"?):
            return .hvt
        case ("linux"?, _):
            return .linux
        case (_, "hvt"?):
            throw OCIError("\(uruncPrefix)unikernelType '\((type ?? "").printable)': Swiftlet runs Solo5 hvt unikernels (mirage, rumprun) and Linux")
        default:
            throw OCIError("\(uruncPrefix)hypervisor '\((monitor ?? "").printable)' with unikernelType '\((type ?? "").printable)': Swiftlet runs hvt unikernels and Linux guests (not spt, qemu's or firecracker's unikernels)")
        }
    }

    /// Guest memory: the annotation, else the limit less the overhead, else the default.
    static func memory(_ annotation: String?, limit: Int64?, kind: Kind) throws(OCIError) -> UInt64 {
        let minimum: UInt64 = kind == .hvt ? 2 : 32
        if let annotation {
            guard let bytes = MemorySize.bytes(annotation), bytes % (1 << 20) == 0, bytes >> 20 >= minimum else {
                throw OCIError("\(prefix)memory: '\(annotation.printable)' is not a memory size of at least \(minimum) MiB in whole MiB (e.g. 64M)")
            }
            return bytes >> 20
        }
        if let limit, limit > 0 {
            let mib = UInt64(limit) >> 20
            guard mib >= minimum + vmmOverheadMiB else {
                throw OCIError("the memory limit (\(mib) MiB) leaves no room for a guest: it must be at least \(minimum + vmmOverheadMiB) MiB (\(vmmOverheadMiB) MiB go to the VMM)")
            }
            return mib - vmmOverheadMiB
        }
        return defaultMemoryMiB(kind)
    }

    /// Solo5's manifest names: 1 to 67 ASCII letters and digits.
    static func isDeviceName(_ name: String) -> Bool {
        (1...67).contains(name.utf8.count) && name.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) }
    }
}
