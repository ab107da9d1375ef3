// swift-tools-version: 6.0
// Swiftlet: a hypervisor stack in Swift over Linux KVM. See shared DESIGN.md for the layering:
// a target may import only targets listed above it here (the list goes from the bottom layer up).
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

// The release build of `swiftlet` is what every unikernel runs in: the Swift runtime linked in
// (no shared Swift libraries to load and relocate at each start) and unused code dropped, so
// `swift build -c release` gives the lean binary without extra flags.
let leanExecutable: [LinkerSetting] = [
    .unsafeFlags(["-static-executable", "-Xlinker", "--gc-sections"], .when(platforms: [.linux], configuration: .release)),
]

// `swiftlet --version` names the commit of an installed build (scripts/install sets this variable;
// only characters of a git revision pass, so no quoting can go wrong).
let buildCommit: [CSetting] = {
    guard let commit = Context.environment["SWIFTLET_COMMIT"], !commit.isEmpty,
          commit.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }) else { return [] }
    return [.define("SWIFTLET_COMMIT", to: "\"\(commit)\"")]
}()

let package = Package(
    name: "Swiftlet",
    platforms: [.macOS(.v14)],
    products: [
        // The command users run, lean (the hvt tender's process: no Foundation, NIO, YAML or
        // argument parser); it execs swiftlet-cli for every other command.
        .executable(name: "swiftlet", targets: ["swiftlet"]),
        .executable(name: "swiftlet-cli", targets: ["SwiftletCLI"]),
        .executable(name: "swiftletd", targets: ["swiftletd"]),
        .library(name: "Hypervisor", targets: ["Hypervisor"]),
        // libswiftlet.so.1, the C ABI (include/swiftlet/swiftlet.h, docs/abi.md). SwiftPM names the
        // file after the product (libSwiftletC.so; the executable has the name `swiftlet`);
        // scripts/libswiftlet stages and installs it as libswiftlet.so.1, its SONAME.
        .library(name: "SwiftletC", type: .dynamic, targets: ["LibSwiftlet"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.65.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
    ],
    targets: [
        // The value grammars every door shares (MAC addresses, memory sizes, `k=v,...` device
        // options and the disk/net/vsock specs written in them): parsed in one place; Firecracker's
        // schema; the one hex format of messages.
        // The git commit a build was made from: scripts/install passes SWIFTLET_COMMIT, defined
        // here for this one C file. (A new commit still rebuilds every target above VMSpec, which
        // imports it: about 2.5 min for a release build.)
        .target(name: "CBuildInfo", cSettings: buildCommit),
        .target(name: "VMSpec", dependencies: ["CBuildInfo"], swiftSettings: strict),
        // The OS layer: every system call our code makes outside KVM goes through here (owned fds,
        // files, paths, taps, sockets, epoll, threads, signals, clocks, memory mappings, processes).
        // CHost holds the C shims Swift cannot express (variadic ioctl/fcntl, packed structs, macros).
        .target(name: "CHost"),
        .target(name: "Host", dependencies: ["CHost", "VMSpec"], swiftSettings: strict),
        // seccomp's classic BPF as the kernel checks and runs it, for HostTests and the fuzzer (no
        // product links it). Its own target rather than part of Host: no production code needs it
        // (the kernel runs the filter), and it spells the kernel's numbers out by hand where Host
        // takes CHost's, so Host's programs are checked against a second copy, not themselves.
        .target(name: "ClassicBPF", dependencies: ["Host"], swiftSettings: strict),
        // <linux/kvm.h> and static inline accessors for ioctl numbers and kvm_run fields.
        .target(name: "CKVM"),
        // Safe wrappers over /dev/kvm descriptors; errno -> typed errors.
        .target(name: "KVM", dependencies: ["CKVM", "VMSpec"], swiftSettings: strict),
        // Guest-physical addresses and bounds/overflow-checked access to guest RAM.
        .target(name: "GuestMemory", dependencies: ["Host", "VMSpec"], swiftSettings: strict),
        // The extension protocol's messages (docs/abi.md, "Extensions"): one codec for the VMM
        // side and libswiftlet's helpers for extension authors. Pure values, no I/O.
        .target(name: "ExtensionProtocol", swiftSettings: strict),
        // NVMM-style library: Machine, VCPU, typed VMExit, memory slots, opt-in assists.
        .target(name: "Hypervisor", dependencies: ["KVM", "GuestMemory", "Host", "VMSpec"], swiftSettings: strict),
        // The C ABI's public header (swiftlet/swiftlet.h, installed as is) and the thread-local
        // last-error buffer, which C does without allocating.
        .target(name: "CSwiftlet"),
        // The C ABI, version 1 (docs/abi.md): handles, statuses, struct conversions and the
        // exported swiftlet_* functions over Hypervisor. Unit-tested in-process, without the .so.
        .target(name: "SwiftletABI", dependencies: ["CSwiftlet", "ExtensionProtocol", "Hypervisor", "KVM", "Host", "VMSpec"], swiftSettings: strict),
        // Guest-facing device models (legacy PC devices, PCI, virtio) and the back-end protocols
        // they need; no host resources (no files, sockets, epoll or threads), never KVM.
        .target(name: "Devices", dependencies: ["GuestMemory", "VMSpec"], swiftSettings: strict),
        // The host side of devices: disk images, taps, vsock's Unix-socket muxer, the host clock
        // and random source, implementing Devices' back-end protocols through Host.
        .target(name: "Backends", dependencies: ["Devices", "GuestMemory", "Host", "VMSpec"], swiftSettings: strict),
        // GDB's remote serial protocol (framing, requests, the amd64 register file, one session)
        // over any transport and target: no KVM, no sockets, so it is unit-tested byte by byte.
        .target(name: "GDBRemote", swiftSettings: strict),
        // ELF core files (notes, loadable segments) as gdb reads them, written without holes lost.
        .target(name: "CoreDump", dependencies: ["Host"], swiftSettings: strict),
        // Image loaders and x86 boot structures (ELF, Solo5 hvt notes and guest layout).
        .target(name: "Boot", dependencies: ["GuestMemory", "VMSpec"], swiftSettings: strict),
        // The one log: a swift-log handler, one level vocabulary and one line format for every
        // message of a process, written where the process's destination says (PUT /logger).
        .target(name: "Logs", dependencies: ["Host", .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        // Assembles and runs machines: the hvt tender and the Linux VM over one builder, lifecycle
        // and run sequence; the gdb stub and core dumps.
        .target(name: "VMM", dependencies: ["ExtensionProtocol", "Hypervisor", "Boot", "Devices", "Backends", "GuestMemory", "Host", "GDBRemote", "CoreDump", "VMSpec", "Logs",
                                            .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        // Firecracker's JSON (config file, API bodies) read with Foundation's JSONDecoder behind a
        // strict syntax check; apart from VMM so the hvt tender's process links no Foundation.
        .target(name: "FirecrackerJSON", dependencies: ["VMM", "VMSpec"], swiftSettings: strict),
        // The C ABI's VM level (version 2, SWIFTLET_1.1): a whole microVM (VMM's MicroVM) from a
        // Firecracker JSON config, in the caller's process, as libkrun offers.
        .target(name: "SwiftletVMABI", dependencies: ["CSwiftlet", "SwiftletABI", "VMM", "FirecrackerJSON", "Host", "VMSpec"], swiftSettings: strict),
        // libswiftlet.so.1 itself: both levels of the C ABI linked with the Swift runtime inside
        // (clients need no Swift installed), its SONAME, and the version script that exports only
        // the swiftlet_* functions, each under its ABI version (abi/libswiftlet.map).
        .target(name: "LibSwiftlet", dependencies: ["SwiftletABI", "SwiftletVMABI"], swiftSettings: strict, linkerSettings: [
            .unsafeFlags(["-static-stdlib", "-Xlinker", "-soname=libswiftlet.so.1",
                          "-Xlinker", "--version-script=\(Context.packageDirectory)/abi/libswiftlet.map"]),
            // FoundationEssentials' own static dependencies, which a shared library's link does
            // not pull in by itself (an executable's does).
            .linkedLibrary("_FoundationCollections"), .linkedLibrary("_FoundationCShims"),
        ]),
        // HTTP/1.1 over Unix sockets (SwiftNIO's parser and encoder): the server and client every
        // control-plane piece uses.
        .target(name: "HTTPUnix", dependencies: [
            "Host",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ], swiftSettings: strict),
        // `swiftlet oci`: an OCI runtime with runc's command line (containerd's runc shim, ctr):
        // bundles, urunc's and our annotations, the container store, the VM process's start.
        .target(name: "OCIRuntime", dependencies: ["Host", "VMSpec", "Logs"], swiftSettings: strict),
        // The Firecracker-compatible REST API of one VM process (`swiftlet api`).
        .target(name: "API", dependencies: ["VMM", "FirecrackerJSON", "VMSpec", "HTTPUnix", "Host", "Logs", .product(name: "Logging", package: "swift-log")],
                swiftSettings: strict),
        // swiftletd's API as both ends see it: VM definitions, statuses, the error, and the client
        // `swiftlet ctl` uses. No YAML and no supervisor, so the CLI (the process of every Linux
        // VM, `swiftlet api`) links neither.
        .target(name: "DaemonProtocol", dependencies: ["HTTPUnix", "Host", "VMSpec"], swiftSettings: strict),
        // swiftletd: supervises named VMs, one `swiftlet api` process each; its config file (YAML),
        // API and metrics. It never opens /dev/kvm itself.
        .target(name: "Daemon", dependencies: ["DaemonProtocol", "HTTPUnix", "Host", "VMSpec", "Logs", .product(name: "Logging", package: "swift-log"),
                                               .product(name: "Yams", package: "Yams")],
                swiftSettings: strict),
        // `swiftlet`: the lean front (the hvt tender itself, `--version`); execs swiftlet-cli for the rest.
        .executableTarget(
            name: "swiftlet",
            dependencies: ["VMM", "Host", "VMSpec"],
            swiftSettings: strict,
            linkerSettings: leanExecutable
        ),
        // `swiftlet-cli`: every other swiftlet command (run, api, ctl, help, man page, completions).
        .executableTarget(
            name: "SwiftletCLI",
            dependencies: ["VMM", "FirecrackerJSON", "API", "DaemonProtocol", "HTTPUnix", "OCIRuntime", "Host", "VMSpec", "Logs", .product(name: "Logging", package: "swift-log"),
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "swiftletd",
            dependencies: ["Daemon", "DaemonProtocol", "HTTPUnix", "Host", "VMSpec", .product(name: "Logging", package: "swift-log"),
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),

        .testTarget(name: "KVMTests", dependencies: ["KVM", "CKVM"]),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory"]),
        .testTarget(name: "HypervisorTests", dependencies: ["Hypervisor", "GuestMemory"]),
        .testTarget(name: "SwiftletABITests", dependencies: ["SwiftletABI", "CSwiftlet", "Hypervisor"]),
        .testTarget(name: "ExtensionProtocolTests", dependencies: ["ExtensionProtocol"]),
        .testTarget(name: "SwiftletVMABITests", dependencies: ["SwiftletVMABI", "SwiftletABI", "CSwiftlet"]),
        .testTarget(name: "HostTests", dependencies: ["Host", "ClassicBPF"]),
        .testTarget(name: "VMSpecTests", dependencies: ["VMSpec"]),
        .testTarget(name: "OCIRuntimeTests", dependencies: ["OCIRuntime", "Host", "VMSpec"]),
        .testTarget(name: "GDBRemoteTests", dependencies: ["GDBRemote"]),
        .testTarget(name: "CoreDumpTests", dependencies: ["CoreDump"]),
        .testTarget(name: "BootTests", dependencies: ["Boot", "GuestMemory"]),
        .testTarget(name: "LogsTests", dependencies: ["Logs", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "VMMTests", dependencies: ["VMM", "Boot", "GuestMemory", "VMSpec"]),
        .testTarget(name: "FirecrackerJSONTests", dependencies: ["FirecrackerJSON", "VMM", "VMSpec"]),
        .testTarget(name: "DevicesTests", dependencies: ["Devices", "Backends", "Host"]),
        .testTarget(name: "BackendsTests", dependencies: ["Backends", "Devices", "Host"]),
        .testTarget(name: "HTTPUnixTests", dependencies: ["HTTPUnix", "Host"]),
        .testTarget(name: "APITests", dependencies: ["API", "VMM", "HTTPUnix", "VMSpec"]),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "DaemonProtocol", "HTTPUnix", "Host", "VMSpec"]),
        // The architecture's own rules, checked on the source text (no system call outside the OS layer).
        .testTarget(name: "ArchitectureTests"),
        // Boots our test unikernels under the built `swiftlet` binary (needs /dev/kvm; skips without).
        .testTarget(name: "IntegrationTests", dependencies: [.product(name: "Yams", package: "Yams")]),
    ]
)

// The libFuzzer targets (fuzz/README.md): one binary holding every target, which drives the real
// parsers and device models. Present only when scripts/fuzz builds it (SWIFTLET_FUZZ=1, with
// `-sanitize=fuzzer,address -parse-as-library`): its entry point runs libFuzzer's driver, which a
// plain build has no libFuzzer to link with.
if Context.environment["SWIFTLET_FUZZ"] == "1" {
    package.products.append(.executable(name: "swiftlet-fuzz", targets: ["SwiftletFuzz"]))
    package.targets.append(.target(name: "CFuzz", path: "fuzz/Sources/CFuzz"))
    package.targets.append(.executableTarget(
        name: "SwiftletFuzz",
        dependencies: ["CFuzz", "VMM", "Boot", "Devices", "Backends", "Hypervisor", "GuestMemory", "Host", "VMSpec", "FirecrackerJSON", "API",
                       "HTTPUnix", "Daemon", "DaemonProtocol", "GDBRemote", "ClassicBPF", "ExtensionProtocol", "SwiftletABI",
                       "SwiftletVMABI", "CSwiftlet", "OCIRuntime"],
        path: "fuzz/Sources/SwiftletFuzz",
        swiftSettings: strict
    ))
}
