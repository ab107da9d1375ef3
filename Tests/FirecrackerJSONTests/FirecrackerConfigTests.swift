import VMSpec
import Foundation
import Testing
@testable import FirecrackerJSON
@testable import VMM

@Suite struct FirecrackerConfigTests {
    func parse(_ json: String) throws(VMMError) -> LinuxConfig {
        try FirecrackerConfig.parse(Data(json.utf8)).linuxConfig()
    }

    func failure(_ json: String) -> String {
        do { _ = try parse(json); return "" } catch { return error.message }
    }

    static let full = """
        {
          "boot-source": {
            "kernel_image_path": "vmlinux.bin",
            "initrd_path": "initrd.img",
            "boot_args": "console=ttyS0 reboot=k panic=1 pci=off"
          },
          "drives": [
            { "drive_id": "scratch", "path_on_host": "scratch.ext4", "is_root_device": false,
              "is_read_only": false, "cache_type": "Writeback", "io_engine": "Sync" },
            { "drive_id": "rootfs", "path_on_host": "bionic.rootfs.ext4", "is_root_device": true,
              "partuuid": null, "is_read_only": true }
          ],
          "machine-config": { "vcpu_count": 2, "mem_size_mib": 1024, "smt": false, "track_dirty_pages": false },
          "network-interfaces": [
            { "iface_id": "eth0", "guest_mac": "AA:FC:00:00:00:01", "host_dev_name": "tap0" }
          ],
          "vsock": { "guest_cid": 3, "uds_path": "./v.sock", "vsock_id": "vsock0" },
          "logger": { "log_path": "fc.log", "level": "Debug" },
          "metrics": { "metrics_path": "m.fifo" },
          "balloon": { "amount_mib": 0, "deflate_on_oom": false },
          "mmds-config": { "network_interfaces": ["eth0"] }
        }
        """

    @Test func fullExampleMaps() throws {
        let c = try parse(Self.full)
        #expect(c.kernelPath == "vmlinux.bin")
        #expect(c.initrdPath == "initrd.img")
        #expect(c.commandLine == "console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda ro")
        #expect(c.cpus == 2)
        #expect(c.memoryBytes == 1024 << 20)
        #expect(c.disks == [.init(path: "bionic.rootfs.ext4", readOnly: true, id: "rootfs"), .init(path: "scratch.ext4", readOnly: false, id: "scratch")])
        #expect(c.nets == [.init(tap: "tap0", mac: [0xAA, 0xFC, 0, 0, 0, 1], id: "eth0")])
        #expect(c.vsock == .init(cid: 3, uds: "./v.sock"))
    }

    /// The bug of issue 11: an hvt drive's is_read_only was dropped and the file opened read-write.
    @Test func hvtDrivesKeepReadOnly() throws {
        let config = try FirecrackerConfig.parse(Data("""
            {"boot-source": {"kernel_image_path": "blk.hvt"},
             "drives": [{"drive_id": "storage", "path_on_host": "/d1", "is_root_device": false, "is_read_only": true},
                        {"drive_id": "other", "path_on_host": "/d2", "is_root_device": false}]}
            """.utf8)).hvtConfig()
        #expect(config.blocks == [.init(name: "storage", path: "/d1", readOnly: true), .init(name: "other", path: "/d2")])
    }

    @Test func defaults() throws {
        let c = try parse(#"{"boot-source": {"kernel_image_path": "k"}}"#)
        #expect(c.commandLine == LinuxConfig.defaultCommandLine)
        #expect(c.disks.isEmpty && c.nets.isEmpty && c.vsock == nil)
        #expect(c.cpus == 1)
        #expect(c.memoryBytes == 128 << 20)
    }

    @Test func rootArgumentKeptAndWritableRoot() throws {
        let base = #"{"boot-source": {"kernel_image_path": "k", "boot_args": "%ARGS%"}, "drives": [{"drive_id": "r", "path_on_host": "r.img", "is_root_device": true, "is_read_only": false}]}"#
        #expect(try parse(base.replacingOccurrences(of: "%ARGS%", with: "console=ttyS0 root=/dev/vdb")).commandLine == "console=ttyS0 root=/dev/vdb")
        #expect(try parse(base.replacingOccurrences(of: "%ARGS%", with: "console=ttyS0")).commandLine == "console=ttyS0 root=/dev/vda")
    }

    /// After a standalone `--` the command line is init's: root= goes before it, and a root= in
    /// init's part is not the kernel's.
    @Test func rootArgumentGoesBeforeInitsArguments() throws {
        let base = #"{"boot-source": {"kernel_image_path": "k", "boot_args": "%ARGS%"}, "drives": [{"drive_id": "r", "path_on_host": "r.img", "is_root_device": true, "is_read_only": true}]}"#
        func line(_ args: String) throws -> String { try parse(base.replacingOccurrences(of: "%ARGS%", with: args)).commandLine }
        #expect(try line("console=ttyS0 quiet -- echo hi") == "console=ttyS0 quiet root=/dev/vda ro -- echo hi")
        #expect(try line("console=ttyS0  --  sh -c x") == "console=ttyS0 root=/dev/vda ro --  sh -c x")
        #expect(try line("-- echo root=/dev/vdz") == "root=/dev/vda ro -- echo root=/dev/vdz")
        #expect(try line("console=ttyS0 --foo=1") == "console=ttyS0 --foo=1 root=/dev/vda ro")
        #expect(try line("console=ttyS0 root=/dev/vdb -- x") == "console=ttyS0 root=/dev/vdb -- x")
    }

    @Test func unknownKeysRejected() {
        #expect(failure(#"{"boot-source": {"kernel_image_path": "k"}, "cpu-config": {}}"#) == "top level: unknown key 'cpu-config'")
        #expect(failure(#"{"boot-source": {"kernel_image_path": "k", "bootargs": "x"}}"#) == "boot-source: unknown key 'bootargs'")
        #expect(failure(#"{"boot-source": {"kernel_image_path": "k"}, "drives": [{"drive_id": "a", "path_on_host": "p", "is_root_device": false, "rate_limiter": {}}]}"#) == "drives[0]: unknown key 'rate_limiter'")
    }

    @Test func typeAndMissingErrors() {
        #expect(failure(#"{"boot-source": {"initrd_path": "i"}}"#) == "boot-source.kernel_image_path: missing")
        #expect(failure(#"{}"#) == "boot-source: missing")
        #expect(failure(#"{"boot-source": {"kernel_image_path": 5}}"#) == "boot-source.kernel_image_path: expected a string")
        #expect(failure(#"{"boot-source": {"kernel_image_path": "k"}, "machine-config": {"vcpu_count": "2", "mem_size_mib": 64}}"#) == "machine-config.vcpu_count: expected an unsigned integer")
        #expect(failure(#"{"boot-source": {"kernel_image_path": "k"}, "drives": [{"drive_id": "a", "path_on_host": "p", "is_root_device": "yes"}]}"#) == "drives[0].is_root_device: expected true or false")
    }

    @Test func valueErrors() {
        let boot = #""boot-source": {"kernel_image_path": "k"}"#
        #expect(failure("{\(boot), \"machine-config\": {\"vcpu_count\": 0, \"mem_size_mib\": 64}}") == "machine-config.vcpu_count: must be in 1...255")
        #expect(failure("{\(boot), \"machine-config\": {\"vcpu_count\": 256, \"mem_size_mib\": 64}}") == "machine-config.vcpu_count: must be in 1...255")
        #expect(failure("{\(boot), \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 0}}") == "machine-config.mem_size_mib: must be in 1...1048576 (MiB)")
        #expect(failure("{\(boot), \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 2000000}}") == "machine-config.mem_size_mib: must be in 1...1048576 (MiB)")
        #expect(failure("{\(boot), \"network-interfaces\": [{\"iface_id\": \"e\", \"host_dev_name\": \"t\", \"guest_mac\": \"01:00:00:00:00:01\"}]}") == "network-interfaces[0].guest_mac: '01:00:00:00:00:01' is not a unicast MAC (XX:XX:XX:XX:XX:XX)")
        #expect(failure("{\(boot), \"network-interfaces\": [{\"iface_id\": \"e\", \"host_dev_name\": \"t\", \"guest_mac\": \"zz:00:00:00:00:01\"}]}").hasSuffix("is not a unicast MAC (XX:XX:XX:XX:XX:XX)"))
    }

    @Test func duplicatesAndRoots() {
        let boot = #""boot-source": {"kernel_image_path": "k"}"#
        let drive = { (id: String, root: Bool) in "{\"drive_id\": \"\(id)\", \"path_on_host\": \"p\", \"is_root_device\": \(root), \"is_read_only\": false}" }
        #expect(failure("{\(boot), \"drives\": [\(drive("a", false)), \(drive("a", false))]}") == "drives[1].drive_id: duplicate 'a'")
        #expect(failure("{\(boot), \"drives\": [\(drive("a", true)), \(drive("b", true))]}") == "drives[1]: more than one root device (is_root_device)")
        let net = #"{"iface_id": "eth0", "host_dev_name": "tap0"}"#
        #expect(failure("{\(boot), \"network-interfaces\": [\(net), \(net)]}") == "network-interfaces[1].iface_id: duplicate 'eth0'")
    }

    /// The config file reaches the API's id rule (DeviceName): `""` and `a/../b` were taken here
    /// while `PUT /drives/ID` refused them.
    @Test(arguments: ["", "a/../b", "a b", String(repeating: "x", count: 65), "\u{1B}[31m"])
    func badDriveAndInterfaceIDsAreRefusedAsByTheAPI(_ id: String) throws {
        let boot = #""boot-source": {"kernel_image_path": "k"}"#
        let json = String(decoding: try JSONEncoder().encode(id), as: UTF8.self)
        let drive = failure("{\(boot), \"drives\": [{\"drive_id\": \(json), \"path_on_host\": \"p\", \"is_root_device\": false}]}")
        #expect(drive == "drives[0].drive_id: '\(id.printable)' is not an id (1 to 64 ASCII letters, digits, _ or -)")
        let nic = failure("{\(boot), \"network-interfaces\": [{\"iface_id\": \(json), \"host_dev_name\": \"tap0\"}]}")
        #expect(nic == "network-interfaces[0].iface_id: '\(id.printable)' is not an id (1 to 64 ASCII letters, digits, _ or -)")
        #expect(!drive.contains("\u{1B}") && !nic.contains("\u{1B}"))
        #expect(failure("{\(boot), \"drives\": [{\"drive_id\": \"root_fs-1\", \"path_on_host\": \"p\", \"is_root_device\": false}]}") == "")
    }

    /// A config file may say null for a field left out (Firecracker's own example configs write
    /// `"partuuid": null`); an API body may not (`refusingNull`), for any field of any type.
    @Test func nullIsRefusedInAPIBodiesOnly() throws {
        let machine = #"{"vcpu_count": 1, "mem_size_mib": 64, "smt": null, "cpu_template": null}"#
        #expect(try FirecrackerConfig.decode(FirecrackerConfig.MachineConfig.self, from: Data(machine.utf8)).smt == nil)
        func apiFailure<T: Decodable>(_ type: T.Type, _ json: String) -> String {
            do { _ = try FirecrackerConfig.decode(T.self, from: Data(json.utf8), refusingNull: true); return "" } catch { return error.message }
        }
        let M = FirecrackerConfig.MachineConfig.self
        #expect(apiFailure(M, #"{"vcpu_count": 1, "mem_size_mib": 64, "smt": null}"#) == "smt: must not be null")
        #expect(apiFailure(M, #"{"vcpu_count": 1, "mem_size_mib": 64, "cpu_template": null}"#) == "cpu_template: must not be null")
        #expect(apiFailure(M, #"{"vcpu_count": null, "mem_size_mib": 64}"#) == "vcpu_count: must not be null")
        #expect(apiFailure(FirecrackerConfig.BootSource.self, #"{"kernel_image_path": "/k", "initrd_path": null}"#) == "initrd_path: must not be null")
        #expect(apiFailure(FirecrackerConfig.Drive.self, #"{"drive_id": "d", "path_on_host": "/x", "is_root_device": false, "partuuid": null}"#) == "partuuid: must not be null")
        #expect(apiFailure(FirecrackerConfig.Vsock.self, #"{"guest_cid": 3, "uds_path": "/v", "vsock_id": null}"#) == "vsock_id: must not be null")
        #expect(apiFailure(M, #"{"vcpu_count": 1, "mem_size_mib": 64, "smt": true}"#) == "")
    }

    @Test func syntaxErrorsNameTheLine() {
        #expect(failure("{\n  \"boot-source\": {\n    \"kernel_image_path\": \"k\"\n    \"initrd_path\": \"i\"\n  }\n}").hasPrefix("line 4: invalid JSON"))
        #expect(failure("{\n\"boot-source\": x\n}").hasPrefix("line 2: invalid JSON"))
        #expect(failure("").hasPrefix("line 1: invalid JSON") || failure("") == "invalid JSON")
        #expect(failure("{\n\"machine-config\": {\"vcpu_count\": 1.0}}") == "line 2: 1.0 is not an integer (every number here is one)")
    }
}

/// The syntax check that makes the API as strict as Firecracker's serde_json.
@Suite struct StrictJSONTests {
    func failure(_ text: String) -> String? {
        do { try StrictJSON.check(Array(text.utf8)); return nil } catch { return error.message }
    }

    @Test func aDuplicateKeyIsShownEscaped() {
        #expect(failure("{\"a\u{7F}\u{9B}\": 1, \"a\u{7F}\u{9B}\": 2}") == #"duplicate key 'a\x7F\u{9B}'"#)
    }

    @Test(arguments: [
        #"{"a": 1}"#, #"[]"#, #"{}"#, #" {"a": [1, 25, -0, "x\"\u00e9", true, false, null]} "#,
        #"{"a": {"b": {"c": []}}}"#, "\"é\"",
    ])
    func validJSONPasses(_ text: String) { #expect(failure(text) == nil) }

    @Test(arguments: [
        (#"{"a": 1,}"#, "trailing comma in an object"),
        (#"[1, 2,]"#, "trailing comma in an array"),
        (#"{"a": 1, "a": 2}"#, "duplicate key 'a'"),
        (#"{"a" 1}"#, "expected ':'"),
        (#"{"a": 01}"#, "expected ',' or '}'"),
        (#"{"a": 1.}"#, "bad number"),
        (#"{"a": 1.0}"#, "1.0 is not an integer (every number here is one)"),
        (#"{"a": [2.5e-3]}"#, "2.5e-3 is not an integer (every number here is one)"),
        (#"{"a": 1E3}"#, "1E3 is not an integer (every number here is one)"),
        (#"{"a": "\q"}"#, "bad escape in a string"),
        (#"{"a": "\u12"}"#, #"bad \u escape in a string"#),
        ("{\"a\": \"\u{01}\"}", "control character in a string"),
        (#"{"a": tru}"#, "expected a value"),
        (#"{"a": 1} x"#, "unexpected text after the JSON value"),
        ("", "unexpected end of input, expected a value"),
        (#"{"a": "#, "unexpected end of input, expected a value"),
        (String(repeating: "[", count: 70) + String(repeating: "]", count: 70), "nested more than 64 levels deep"),
    ] as [(String, String)])
    func invalidJSONIsNamed(_ text: String, _ message: String) { #expect(failure(text) == message) }
}

/// A VMM error names the mistake in the user's terms: the flag on `swiftlet run`, the JSON field
/// in a Firecracker config (file, API, swiftletd).
@Suite struct ErrorNamesTests {
    @Test func flagsOnTheCommandLineFieldsInJSON() throws {
        let disk = LinuxConfig.Disk(path: "/d.img", id: "rootfs")
        #expect(LinuxConfig.Source.commandLine.disk(disk) == "--disk /d.img")
        #expect(LinuxConfig.Source.firecracker.disk(disk) == "drive 'rootfs' (path_on_host /d.img)")
        #expect(LinuxConfig.Source.firecracker.cpus(300) == "machine-config.vcpu_count 300")
        let fromJSON = try FirecrackerConfig.parse(Data(#"{"boot-source": {"kernel_image_path": "/k"}}"#.utf8)).linuxConfig()
        #expect(fromJSON.source == .firecracker)
        #expect(LinuxConfig(kernelPath: "/k").source == .commandLine)
    }
}
