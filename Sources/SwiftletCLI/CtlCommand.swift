import VMSpec
import VMM
import Host
import ArgumentParser
import DaemonProtocol
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `swiftlet ctl`: drives swiftletd over its API socket (as vmctl drives vmd).
struct CtlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Control VMs run by swiftletd.",
        subcommands: [Start.self, Stop.self, Status.self, Console.self, Pause.self, Resume.self, Logs.self, Metrics.self, Remove.self]
    )

    @Option(help: "swiftletd's API socket.") var socket: String = DaemonClient.defaultSocket

    var client: DaemonClient { DaemonClient(socketPath: socket) }

    /// Prints `swiftlet ctl: MESSAGE` and exits 1 (the one-line error convention).
    static func fail(_ message: String) -> Never {
        printError("swiftlet ctl: \(message)")
        Glibc.exit(1)
    }

    /// Runs a client call, turning its failure into the one-line exit.
    static func call<T>(_ body: () throws(DaemonError) -> T) -> T {
        do { return try body() } catch { fail(error.message) }
    }

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a configured VM, or an ad-hoc one with --kernel.",
            discussion: "Returns once the VM runs (its API answered InstanceStart).")
        @ParentCommand var ctl: CtlCommand
        @Argument(help: "The VM's name.") var name: String
        @Option(help: "Kernel: a Linux bzImage, a PVH ELF or a Solo5 hvt unikernel (makes an ad-hoc VM).") var kernel: String?
        @Option(help: "Initial ramdisk.") var initrd: String?
        @Option(help: "Kernel command line (for a unikernel: its arguments).") var cmdline: String?
        @Option(help: "Guest memory: 128M, 2G, … (a bare number is MiB).") var memory: String?
        @Option(help: "Number of vCPUs (1 to 255).") var cpus: Int?
        @Option(name: .customLong("disk"), help: "PATH[,readonly][,root][,id=NAME] (repeatable).", transform: Start.spec(DiskSpec.self, "--disk")) var disks: [DiskSpec] = []
        @Option(name: .customLong("net"), help: "tap=NAME[,mac=XX:XX:XX:XX:XX:XX][,id=NAME] (repeatable).", transform: Start.spec(NetSpec.self, "--net")) var nets: [NetSpec] = []
        @Option(help: "cid=N,uds=PATH.", transform: Start.spec(VsockSpec.self, "--vsock")) var vsock: VsockSpec?
        @Option(name: .customLong("extension"), help: "PROGRAM[,ARG...] or listen=PATH, [,irq=N][,timeout_ms=MS]: a device in another process (docs/abi.md, Extensions; repeatable).",
                transform: Start.spec(ExtensionSpec.self, "--extension")) var extensions: [ExtensionSpec] = []

        /// Parses a device option once, with VMSpec's grammar (the daemon reads the same text back).
        static func spec<T: OptionStringCodable>(_: T.Type, _ flag: String) -> @Sendable (String) throws -> T {
            { text in
                guard let value = T(text) else { throw ValidationError("\(flag) '\(text)' is not \(T.textForm)") }
                return value
            }
        }

        func validate() throws {
            guard isValidName(name) else { throw ValidationError("'\(name)' is not a VM name (1 to 64 of A-Z a-z 0-9 . _ -)") }
            if kernel == nil && (initrd != nil || cmdline != nil || memory != nil || cpus != nil || !disks.isEmpty || !nets.isEmpty || vsock != nil || !extensions.isEmpty) {
                throw ValidationError("--initrd, --cmdline, --memory, --cpus, --disk, --net, --vsock and --extension need --kernel (an ad-hoc VM)")
            }
        }

        func run() throws {
            var definition: VMDefinition?
            if let kernel {
                // Relative paths mean the caller's directory, not the daemon's.
                func absolute(_ p: String) -> String {
                    p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p
                }
                var object: [String: Any] = ["kernel": absolute(kernel)]
                if let initrd { object["initrd"] = absolute(initrd) }
                if let cmdline { object["cmdline"] = cmdline }
                if let memory { object["memory"] = memory }
                if let cpus { object["cpus"] = cpus }
                if !disks.isEmpty {
                    object["disks"] = disks.map { d -> String in
                        var disk = d
                        disk.path = absolute(d.path)
                        return disk.text
                    }
                }
                if !nets.isEmpty { object["networks"] = nets.map(\.text) }
                if let vsock { object["vsock"] = vsock.text }
                if !extensions.isEmpty {
                    object["extensions"] = extensions.map { e -> String in
                        var spec = e
                        if case .program(let program, let arguments) = e.origin { spec.origin = .program(absolute(program), arguments: arguments) }
                        return spec.text
                    }
                }
                // Validated here with the daemon's own decoder, so a typo gets the same one-line
                // message without a round trip.
                do {
                    let data = try JSONSerialization.data(withJSONObject: object)
                    definition = try JSONDecoder().decode(VMDefinition.self, from: data)
                } catch let error as DecodingError {
                    CtlCommand.fail(CtlCommand.describe(error))
                }
            }
            let status = CtlCommand.call { () throws(DaemonError) in try ctl.client.start(name, definition: definition) }
            // A guest that already ended has no pid to show.
            print("\(status.name): \(status.stateText)" + (status.pid.map { " (pid \($0))" } ?? ""))
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop a VM: SIGTERM to its process (a clean stop), or SIGKILL with --force.")
        @ParentCommand var ctl: CtlCommand
        @Argument(help: "The VM's name.") var name: String
        @Flag(help: "Kill the VM process (SIGKILL) instead of stopping it cleanly.") var force = false
        @Flag(help: "Return only after the VM process has exited.") var wait = false

        func run() throws {
            let status = CtlCommand.call { () throws(DaemonError) in try ctl.client.stop(name, force: force, wait: wait) }
            print("\(status.name): \(status.stateText)")
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A table of VMs: NAME STATE VCPUS MEMORY UPTIME PID.")
        @ParentCommand var ctl: CtlCommand
        @Argument(help: "Only this VM.") var name: String?
        @Flag(help: "Print the daemon's JSON instead of a table.") var json = false

        func run() throws {
            let client = ctl.client
            let vms: [VMStatus]
            if let name {
                vms = [CtlCommand.call { () throws(DaemonError) in try client.status(name) }]
            } else {
                vms = CtlCommand.call { () throws(DaemonError) in try client.list() }
            }
            if json {
                print(String(decoding: (try? JSON.data(VMList(vms: vms), pretty: true)) ?? Data(), as: UTF8.self))
                return
            }
            print(CtlCommand.table(vms), terminator: "")
        }
    }

    struct Console: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Attach to a VM's serial console (detach with Ctrl-A x).",
            discussion: """
                On a terminal, the terminal is put in raw mode and Ctrl-A x detaches (Ctrl-A Ctrl-A sends Ctrl-A). When stdin is not a \
                terminal, stdin is copied to the guest until its end and the guest's output is printed \
                until the VM ends (or --timeout seconds pass).
                """)
        @ParentCommand var ctl: CtlCommand
        @Argument(help: "The VM's name.") var name: String
        @Option(help: "Stop after this many seconds (0: no limit).") var timeout: Double = 0

        func run() throws {
            let client = ctl.client
            let path = CtlCommand.call { () throws(DaemonError) in try client.consoleSocket(name) }
            do { try ConsoleSession.run(socketPath: path, timeout: timeout > 0 ? timeout : nil) } catch {
                CtlCommand.fail("console of \(name): \(error)")
            }
        }
    }

    struct Pause: StateChange {
        static let configuration = CommandConfiguration(abstract: "Pause a running VM.")
        @ParentCommand var ctl: CtlCommand
        @Argument(help: "The VM's name.") var name: String
        static func change(_ client: DaemonClient, _ name: String) throws(DaemonError) -> VMStatus { try client.pause(name) }
    }

    struct Resume: StateChange {
        static let configuration = CommandConfiguration(abstract: "Resume a paused VM.")
        @ParentCommand var ctl: CtlCommand
        @Argument(help: "The VM's name.") var name: String
        static func change(_ client: DaemonClient, _ name: String) throws(DaemonError) -> VMStatus { try client.resume(name) }
    }

    struct Logs: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a VM's console log.")
        @ParentCommand var ctl: CtlCommand
        @Argument(help: "The VM's name.") var name: String
        @Option(help: "Only the last N bytes.") var tail: Int?
        func validate() throws {
            if let tail, tail < 0 { throw ValidationError("--tail must be 0 or more") }
        }
        func run() throws {
            let bytes = CtlCommand.call { () throws(DaemonError) in try ctl.client.logs(name, tail: tail) }
            bytes.withUnsafeBytes { _ = try? FileDescriptor.standardOutput.writeAll($0) }
        }
    }

    struct Metrics: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the daemon's metrics (Prometheus text format).")
        @ParentCommand var ctl: CtlCommand
        func run() throws {
            print(CtlCommand.call { () throws(DaemonError) in try ctl.client.metrics() }, terminator: "")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Forget a stopped ad-hoc VM and its logs.")
        @ParentCommand var ctl: CtlCommand
        @Argument(help: "The VM's name.") var name: String
        func run() throws {
            CtlCommand.call { () throws(DaemonError) in try ctl.client.remove(name) }
        }
    }

    /// The `status` table; columns sized to their widest cell.
    static func table(_ vms: [VMStatus]) -> String {
        var rows = [["NAME", "STATE", "VCPUS", "MEMORY", "UPTIME", "PID"]]
        for vm in vms {
            rows.append([vm.name, vm.stateText, String(vm.vcpus), memoryText(vm.memoryMiB),
                         vm.uptimeSeconds.map(uptimeText) ?? "-", vm.pid.map(String.init) ?? "-"])
        }
        var widths = [Int](repeating: 0, count: rows[0].count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        return rows.map { row in
            row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    static func memoryText(_ mib: Int) -> String {
        mib >= 1024 && mib % 1024 == 0 ? "\(mib / 1024)G" : "\(mib)M"
    }

    static func uptimeText(_ seconds: Double) -> String {
        let s = Int(seconds)
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        if s < 86400 { return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m" }
        return "\(s / 86400)d\(String(format: "%02d", (s % 86400) / 3600))h"
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .dataCorrupted(let c):
            let key = c.codingPath.map(\.stringValue).first ?? ""
            return key.isEmpty ? c.debugDescription : "--\(key == "networks" ? "net" : key == "disks" ? "disk" : key) \(c.debugDescription)"
        default:
            return "\(error)"
        }
    }
}

/// `ctl pause` and `ctl resume`: one request about one VM, then its new state.
protocol StateChange: ParsableCommand {
    var ctl: CtlCommand { get }
    var name: String { get }
    static func change(_ client: DaemonClient, _ name: String) throws(DaemonError) -> VMStatus
}

extension StateChange {
    func run() throws {
        let client = ctl.client, name = name
        let status = CtlCommand.call { () throws(DaemonError) in try Self.change(client, name) }
        print("\(status.name): \(status.stateText)")
    }
}

/// The console attach loop: socket ⇄ stdin/stdout.
enum ConsoleSession {
    struct Failure: Error, CustomStringConvertible { var description: String }

    static func run(socketPath: String, timeout: Double?) throws {
        let socket: FileDescriptor
        do { socket = FileDescriptor(owning: try DaemonClient.connectStream(path: socketPath)) } catch {
            throw Failure(description: error.message)
        }
        let input = FileDescriptor.standardInput, output = FileDescriptor.standardOutput
        // On a terminal: raw input, so Ctrl-C and the detach byte reach us as bytes.
        let terminal = Terminal()
        if let terminal {
            terminal.enterRawMode(keepOutputProcessing: false)
            printError("[attached to the console; \(ConsoleEscape.text) detaches]\r")
        }
        defer {
            if let terminal {
                terminal.restore()
                printError("\n[detached]")
            }
        }
        let deadline = timeout.map { Clock.monotonicNanoseconds() + UInt64($0 * 1e9) }
        var stdinOpen = true
        var escape = ConsoleEscape()
        var toGuest: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var wait: Int32 = -1
            if let deadline {
                let now = Clock.monotonicNanoseconds()
                if now >= deadline { return }
                wait = Int32(min((deadline - now) / 1_000_000, 1000)) + 1
            }
            let ready = socket.waitReadable(or: stdinOpen ? input : nil, timeoutMilliseconds: wait)
            if ready & 1 != 0 {
                let got = read(socket, into: &buffer)
                if got <= 0 { return }  // the VM (its process) ended: the console closed
                try write(output, buffer[..<got])
            }
            if stdinOpen, ready & 2 != 0 {
                let got = read(input, into: &buffer)
                if got <= 0 {
                    // End of input: keep showing output until the VM ends or the timeout.
                    stdinOpen = false
                    continue
                }
                guard terminal != nil else { try write(socket, buffer[..<got]); continue }
                toGuest.removeAll(keepingCapacity: true)
                let leave = escape.filter(buffer[..<got], into: &toGuest)
                if !toGuest.isEmpty { try write(socket, toGuest[...]) }
                if leave { return }
            }
        }
    }

    /// One read: the byte count; 0 at the end, on an error or with nothing to read now (all of
    /// which end that direction).
    static func read(_ fd: FileDescriptor, into buffer: inout [UInt8]) -> Int {
        buffer.withUnsafeMutableBytes { raw in (try? fd.read(into: raw)) ?? 0 }
    }

    static func write(_ fd: FileDescriptor, _ bytes: ArraySlice<UInt8>) throws(Failure) {
        var failure: HostError?
        bytes.withUnsafeBytes { raw in
            do throws(HostError) { try fd.writeAll(raw) } catch { failure = error }
        }
        if let failure { throw Failure(description: "\(failure)") }
    }
}
