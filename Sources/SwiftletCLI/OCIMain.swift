import FoundationEssentials
import Host
import Logs
import OCIRuntime
import VMSpec
#if canImport(Glibc)
import Glibc
#endif

/// `swiftlet oci …` and `swiftlet-oci …` (a link to swiftlet): the OCI runtime with runc's
/// command line (docs/containerd.md). Dispatched before ArgumentParser, which cannot take runc's
/// global options in front of the command nor urfave/cli's `-name value` forms. An error is one
/// line on stderr and, with `--log F --log-format json`, one logrus-style JSON line in F, which
/// the containerd shim reads back for its own message; the exit status is then 1.
enum OCIMain {
    static func runIfOCI(commandLine: [String]) {
        let name = (commandLine.first ?? "").split(separator: "/").last.map(String.init) ?? ""
        if name == "swiftlet-oci" {
            exit(run(Array(commandLine.dropFirst())))
        }
        if commandLine.count > 1 && commandLine[1] == "oci" {
            exit(run(Array(commandLine.dropFirst(2))))
        }
    }

    static func run(_ argv: [String]) -> Int32 {
        var log: (path: String?, json: Bool) = (nil, false)
        do throws(OCIError) {
            let line = try RuncCommandLine(argv)
            log = (line.log, line.logFormat == "json")
            return try execute(line)
        } catch {
            fail(error.message, log: log)
            return 1
        }
    }

    private static func execute(_ line: RuncCommandLine) throws(OCIError) -> Int32 {
        guard let swiftlet = HostProcess.companionExecutable("swiftlet") else {
            throw OCIError("the swiftlet executable is missing beside swiftlet-cli: reinstall Swiftlet")
        }
        let runtime = OCIRuntime(root: line.root ?? ContainerStore.defaultRoot, swiftlet: swiftlet)
        // A pod's sandbox (pause) container is no VM: runc runs it, as urunc hands such bundles on.
        let handToRunc: Bool
        switch line.command {
        case "create": handToRunc = line.options["bundle"].map { OCIRuntime.isRuncBundle(absolute($0)) } ?? false
        case "--version", "--help", "features", "list": handToRunc = false
        default: handToRunc = line.arguments.first.map(runtime.isRuncContainer) ?? false
        }
        if handToRunc {
            guard let runc = ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc"].first(where: FileSystem.isExecutable) else {
                throw OCIError("runc is not installed: a pod's sandbox container is no VM and needs runc (apt-get install runc)")
            }
            let failure = HostProcess.replace(with: runc, argumentZero: "runc", arguments: line.runcArguments(root: runtime.runcRoot))
            throw OCIError("\(failure)")
        }
        switch line.command {
        case "--version":
            print("swiftlet-oci version \(SwiftletVersion.release)\nspec: \(OCIRuntime.ociVersion)")
        case "--help":
            print(usage)
        case "create":
            guard let bundle = line.options["bundle"] else { throw OCIError("create: --bundle is required") }
            try runtime.create(id: try line.containerID(), bundle: bundle, pidFile: line.options["pid-file"].map(absolute),
                               consoleSocket: line.options["console-socket"].map(absolute))
        case "start": try runtime.start(id: try line.containerID())
        case "state": print(try runtime.state(id: try line.containerID()))
        case "kill":
            try runtime.kill(id: try line.containerID(), signal: line.arguments.count > 1 ? line.arguments[1] : "SIGTERM")
        case "delete": try runtime.delete(id: try line.containerID(), force: line.flag("force"))
        case "ps":
            let format = line.options["format"] ?? "table"
            guard format == "table" || format == "json" else { throw OCIError("invalid format option") }
            print(try runtime.ps(id: try line.containerID(), json: format == "json"))
        case "pause": try runtime.pause(id: try line.containerID())
        case "resume": try runtime.resume(id: try line.containerID())
        case "update":
            let id = try line.containerID()
            let single = line.options.keys.filter { $0 != "resources" }
            if let first = single.sorted().first {
                throw OCIError("update --\(first): a VM's resources are fixed when it boots")
            }
            guard let source = line.options["resources"] else {
                throw OCIError("update: give the resources as JSON with --resources FILE (or - for stdin)")
            }
            let data: Data
            if source == "-" {
                data = Data(readStandardInput())
            } else {
                guard let contents = FileManager.default.contents(atPath: source) else { throw OCIError("update: cannot read \(source)") }
                data = contents
            }
            try runtime.update(id: id, resources: data)
        case "exec": throw OCIError(OCIRuntime.execRefusal)
        case "features": print(OCIRuntime.features())
        case "list":
            let json = line.options["format"] == "json"
            let ids = runtime.store.ids()
            if line.flag("quiet") {
                for id in ids { print(id) }
            } else if json {
                print("[" + ids.compactMap { try? runtime.state(id: $0) }.joined(separator: ",") + "]")
            } else {
                print("ID\tPID\tSTATUS\tBUNDLE\tCREATED")
                for id in ids {
                    guard let record = try? runtime.store.load(id) else { continue }
                    print("\(id)\t\(record.pid)\t\(record.status())\t\(record.bundle)\t\(record.created)")
                }
            }
        default: throw OCIError("No help topic for '\(line.command)'")
        }
        return 0
    }

    /// The error: on stderr and, in runc's JSON, in --log.
    private static func fail(_ message: String, log: (path: String?, json: Bool)) {
        printError("swiftlet-oci: " + message)
        guard let path = log.path else { return }
        let now = Clock.realtime()
        let time = LogLayout.timestamp(seconds: now.seconds, nanoseconds: now.nanoseconds)
        let text = log.json
            ? "{\"level\":\"error\",\"msg\":\"\(LogLayout.escape(message))\",\"time\":\"\(time)\"}\n"
            : "time=\"\(time)\" level=error msg=\"\(LogLayout.escape(message))\"\n"
        // Appended (the shim reads the whole file and keeps the last error).
        if let file = try? FileDescriptor.open(path, flags: O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode: 0o644) {
            let bytes = Array(text.utf8)
            bytes.withUnsafeBytes { try? file.writeAll($0) }
        }
    }

    /// All of stdin (the resources JSON of `update --resources -`), at most 1 MiB.
    private static func readStandardInput() -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            guard let n = chunk.withUnsafeMutableBytes({ try? FileDescriptor.standardInput.read(into: $0) }) ?? nil, n > 0 else { break }
            bytes += chunk[0..<n]
        }
        return bytes
    }

    private static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    static let usage = """
        swiftlet oci (also swiftlet-oci): an OCI runtime with runc's command line; each container is a VM.

        swiftlet-oci [--root DIR] [--log FILE] [--log-format text|json] [--systemd-cgroup] COMMAND
          create --bundle DIR [--pid-file F] [--console-socket S] ID
          start ID | state ID | delete [--force] ID | kill [--all] ID [SIGNAL]
          pause ID | resume ID | ps [--format table|json] ID | list [--format json]
          update --resources FILE|- ID | features | exec (refused: a VM has no processes)

        The bundle's annotations name the guest: org.swiftlet.kernel (a path in the rootfs) and
        org.swiftlet.kind (hvt or linux), or urunc's com.urunc.unikernel.* (docs/containerd.md).
        """
}
