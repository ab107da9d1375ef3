import VMSpec

/// runc's command line as containerd's shim (go-runc) and people type it: global options, a
/// command, its options and its arguments. Options take the forms urfave/cli accepts (runc's
/// parser): `--name value`, `--name=value`, `-name value`, and a one-letter alias; booleans may
/// be `--force` or `--force=true`. An option a command does not define is an error, in
/// urfave/cli's words.
public struct RuncCommandLine: Sendable, Equatable {
    public var root: String?
    public var log: String?
    public var logFormat = "text"
    public var systemdCgroup = false
    public var command: String
    /// The command's options by canonical name (booleans map to "true" or "false").
    public var options: [String: String] = [:]
    public var arguments: [String] = []
    /// The command's own tokens as given (options and arguments), for handing the command to runc.
    public var commandTokens: [String] = []

    /// A command's options: those taking a value, the booleans, and one-letter aliases.
    struct Grammar {
        var valued: Set<String> = []
        var booleans: Set<String> = []
        var aliases: [String: String] = [:]
    }

    static let global = Grammar(valued: ["root", "log", "log-format", "criu", "rootless"], booleans: ["debug", "systemd-cgroup", "help", "version"],
                                aliases: ["h": "help", "v": "version"])
    static let commands: [String: Grammar] = [
        "create": Grammar(valued: ["bundle", "pid-file", "console-socket", "preserve-fds"], booleans: ["no-pivot", "no-new-keyring"],
                          aliases: ["b": "bundle"]),
        "start": Grammar(),
        "state": Grammar(),
        "kill": Grammar(booleans: ["all"], aliases: ["a": "all"]),
        "delete": Grammar(booleans: ["force"], aliases: ["f": "force"]),
        "ps": Grammar(valued: ["format"], aliases: ["f": "format"]),
        "pause": Grammar(),
        "resume": Grammar(),
        "update": Grammar(valued: ["resources", "memory", "memory-reservation", "memory-swap", "kernel-memory", "kernel-memory-tcp",
                                   "cpu-shares", "cpu-quota", "cpu-period", "cpu-rt-period", "cpu-rt-runtime", "cpuset-cpus",
                                   "cpuset-mems", "blkio-weight", "pids-limit", "l3-cache-schema", "mem-bw-schema"],
                          aliases: ["r": "resources"]),
        "exec": Grammar(valued: ["console-socket", "cwd", "env", "user", "additional-gids", "process", "process-label", "apparmor", "cap",
                                 "preserve-fds", "pid-file", "cgroup"],
                        booleans: ["tty", "detach", "no-new-privs", "ignore-paused"],
                        aliases: ["t": "tty", "d": "detach", "e": "env", "u": "user", "g": "additional-gids", "p": "process", "c": "cap"]),
        "features": Grammar(),
        "list": Grammar(valued: ["format"], booleans: ["quiet"], aliases: ["f": "format", "q": "quiet"]),
    ]

    /// Parses argv after the program name; the error is one line.
    public init(_ argv: [String]) throws(OCIError) {
        var rest = argv[...]
        var globals: [String: String] = [:]
        guard let command = try Self.parseOptions(&rest, Self.global, into: &globals, stopAtFirstArgument: true) else {
            if globals["version"] == "true" { self.command = "--version" } else if globals["help"] == "true" { self.command = "--help" } else {
                throw OCIError("no command given (create, start, state, kill, delete, ps, pause, resume, update, exec, features, list)")
            }
            return
        }
        let name = command == "ls" ? "list" : command
        guard let grammar = Self.commands[name] else { throw OCIError("No help topic for '\(command.printable)'") }
        self.command = name
        root = globals["root"]
        log = globals["log"]
        logFormat = globals["log-format"] ?? "text"
        guard logFormat == "text" || logFormat == "json" else { throw OCIError("invalid log-format: \(logFormat.printable)") }
        systemdCgroup = globals["systemd-cgroup"] == "true"
        var options: [String: String] = [:]
        commandTokens = Array(rest)
        while !rest.isEmpty {
            if let argument = try Self.parseOptions(&rest, grammar, into: &options, stopAtFirstArgument: true) { arguments.append(argument) }
        }
        self.options = options
    }

    /// Reads options from the front of `rest` until an argument (returned, and taken off) or the
    /// end. `--` ends the options: what follows is arguments.
    private static func parseOptions(_ rest: inout ArraySlice<String>, _ grammar: Grammar, into options: inout [String: String],
                                     stopAtFirstArgument: Bool) throws(OCIError) -> String? {
        while let item = rest.popFirst() {
            if item == "--" {
                guard let next = rest.popFirst() else { return nil }
                return next
            }
            guard item.hasPrefix("-"), item.count > 1 else { return item }
            var body = item.drop { $0 == "-" }
            var value: String?
            if let eq = body.firstIndex(of: "=") {
                value = String(body[body.index(after: eq)...])
                body = body[..<eq]
            }
            let name = grammar.aliases[String(body)] ?? String(body)
            if grammar.valued.contains(name) {
                if value == nil {
                    guard let next = rest.popFirst() else { throw OCIError("flag needs an argument: \(item.printable)") }
                    value = next
                }
                options[name] = value
            } else if grammar.booleans.contains(name) {
                switch value {
                case nil, "true", "1": options[name] = "true"
                case "false", "0": options[name] = "false"
                default: throw OCIError("invalid boolean value \"\((value ?? "").printable)\" for -\(name.printable)")
                }
            } else {
                throw OCIError("flag provided but not defined: -\(String(body).printable)")
            }
        }
        return nil
    }

    /// The same command for runc, under `root`: the global options that apply to it, then the
    /// command's own tokens unchanged.
    public func runcArguments(root: String) -> [String] {
        ["--root", root] + (log.map { ["--log", $0] } ?? []) + ["--log-format", logFormat] + (systemdCgroup ? ["--systemd-cgroup"] : [])
            + [command] + commandTokens
    }

    /// The boolean option `name`.
    public func flag(_ name: String) -> Bool { options[name] == "true" }

    /// The one container ID the command takes; runc's messages when it is missing or doubled.
    public func containerID() throws(OCIError) -> String {
        guard let id = arguments.first, !id.isEmpty else { throw OCIError("\(command): container id cannot be empty") }
        return id
    }
}
