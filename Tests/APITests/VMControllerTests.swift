import Foundation
@testable import API
import HTTPUnix
import Testing
import VMM

/// The API's routing, validation and state rules, without a VM (no InstanceStart succeeds here:
/// the kernels named do not exist, which is itself a case worth checking).
@Suite struct VMControllerTests {
    func controller() -> VMController {
        var options = VMController.Options()
        options.id = "unit"
        return VMController(options: options, sandbox: { _ throws(APIError) in }, onExit: { _ in })
    }

    /// An empty regular file to name as a drive (a drive's file must open at its PUT).
    static func diskFile(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swiftlet-vmcontroller-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent(name).path
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        return path
    }

    func send(_ c: VMController, _ method: String, _ path: String, _ body: String? = nil) -> HTTPResponse {
        c.handle(HTTPRequest(method: method, path: path, body: body.map { Array($0.utf8) } ?? []))
    }

    @Test func instanceInfoBeforeBoot() {
        let r = send(controller(), "GET", "/")
        #expect(r.status == 200)
        #expect(r.bodyText == #"{"id": "unit", "state": "Not started", "vmm_version": "\#(VMController.version)", "app_name": "Swiftlet"}"#)
    }

    @Test func configurationIsStored() {
        let c = controller()
        #expect(send(c, "PUT", "/boot-source", #"{"kernel_image_path": "/bin/sh", "boot_args": "console=ttyS0"}"#).status == 204)
        #expect(send(c, "PUT", "/machine-config", #"{"vcpu_count": 2, "mem_size_mib": 256}"#).status == 204)
        #expect(send(c, "PATCH", "/machine-config", #"{"mem_size_mib": 512}"#).status == 204)
        #expect(send(c, "PUT", "/drives/rootfs", #"{"drive_id": "rootfs", "path_on_host": "\#(Self.diskFile("r.img"))", "is_root_device": true, "is_read_only": false}"#).status == 204)
        #expect(send(c, "PUT", "/network-interfaces/eth0", #"{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "02:00:00:00:00:01"}"#).status == 204)
        #expect(send(c, "PUT", "/vsock", #"{"guest_cid": 3, "uds_path": "/tmp/v.sock"}"#).status == 204)
        let m = send(c, "GET", "/machine-config")
        #expect(m.bodyText == #"{"vcpu_count": 2, "mem_size_mib": 512, "smt": false, "track_dirty_pages": false, "huge_pages": "None"}"#)
        let config = c.configuration
        #expect(config?.drives.map(\.driveId) == ["rootfs"])
        #expect(config?.machineConfig?.vcpuCount == 2)
        #expect(config?.networkInterfaces.first?.guestMac?.bytes == [2, 0, 0, 0, 0, 1])
        let full = send(c, "GET", "/vm/config").bodyText
        #expect(full.contains(#""path_on_host": "\#(Self.diskFile("r.img"))""#) && full.contains(#""guest_mac": "02:00:00:00:00:01""#))
        // A second PUT of the same id replaces it.
        #expect(send(c, "PUT", "/drives/rootfs", #"{"drive_id": "rootfs", "path_on_host": "\#(Self.diskFile("s.img"))", "is_root_device": true}"#).status == 204)
        #expect(c.configuration?.drives.map(\.pathOnHost) == [Self.diskFile("s.img")])
    }

    @Test(arguments: [
        ("PUT", "/boot-source", "", "Missing request body"),
        ("PUT", "/boot-source", "{", "invalid JSON"),
        ("PUT", "/boot-source", #"{"kernel_image_path": 5}"#, "kernel_image_path: expected a string"),
        ("PUT", "/boot-source", #"{"kernel_image_path": ""}"#, "must not be empty"),
        ("PUT", "/boot-source", #"{"kernel_image_path": "/k", "extra": 1}"#, "unknown key 'extra'"),
        ("PUT", "/machine-config", #"{"vcpu_count": 0, "mem_size_mib": 128}"#, "vcpu_count: must be in 1...255"),
        ("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": -1}"#, "out of range"),
        ("PUT", "/machine-config", #"{"vcpu_count": 1}"#, "mem_size_mib: missing"),
        ("PATCH", "/machine-config", #"{"vcpu_count": "x"}"#, "vcpu_count"),
        ("PUT", "/drives/a", #"{"drive_id": "b", "path_on_host": "/x", "is_root_device": false}"#, "does not match"),
        ("PUT", "/drives/bad%20id", #"{"drive_id": "bad id", "path_on_host": "/x", "is_root_device": false}"#, "Invalid request method and/or path"),
        ("PUT", "/network-interfaces/e", #"{"iface_id": "e", "host_dev_name": "t", "guest_mac": "ff:ff:ff:ff:ff:ff"}"#, "not a unicast MAC"),
        ("PUT", "/vsock", #"{"guest_cid": 2, "uds_path": "/v"}"#, "guest_cid: must be in 3...4294967294"),
        ("PUT", "/actions", #"{"action_type": "Explode"}"#, "is not one of InstanceStart"),
        ("PUT", "/actions", #"{"action_type": "InstanceStart"}"#, "without kernel configuration"),
        ("PUT", "/actions", #"{"action_type": "SendCtrlAltDel"}"#, "before starting the microVM"),
        ("PUT", "/actions", #"{"action_type": "FlushMetrics"}"#, "Metrics system not initialized"),
        ("PATCH", "/vm", #"{"state": "Paused"}"#, "before starting the microVM"),
        ("PATCH", "/vm", #"{"state": "Sleeping"}"#, "is not Paused or Resumed"),
        ("PUT", "/logger", #"{"level": "Loud"}"#, "is not one of Off"),
        ("PUT", "/logger", #"{"log_path": "/nonexistent-dir/x.log"}"#, "No such file or directory"),
        ("PUT", "/metrics", #"{}"#, "metrics_path: missing"),
        ("GET", "/nope", nil, "Invalid request method and/or path: GET /nope."),
        ("DELETE", "/nope/", nil, "Invalid request method and/or path: DELETE /nope/."),
        ("GET", "/drives/bad%20id", nil, "Invalid request method and/or path"),
    ] as [(String, String, String?, String)])
    func badRequestsGet400(method: String, path: String, body: String?, fault: String) {
        let r = send(controller(), method, path, body)
        #expect(r.status == 400)
        #expect(r.contentType == "application/json")
        #expect(r.bodyText.hasPrefix(#"{"fault_message": ""#))
        #expect(r.bodyText.contains(fault), "\(r.bodyText)")
    }

    /// No field of the OpenAPI document is nullable: null is a 400 naming the field (it was a 204
    /// that took null for a field left out), for PUT and PATCH alike and whatever the body's type.
    @Test(arguments: [
        ("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 128, "smt": null}"#, "smt"),
        ("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 128, "cpu_template": null}"#, "cpu_template"),
        ("PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 128, "huge_pages": null}"#, "huge_pages"),
        ("PUT", "/machine-config", #"{"vcpu_count": null, "mem_size_mib": 128}"#, "vcpu_count"),
        ("PATCH", "/machine-config", #"{"smt": null}"#, "smt"),
        ("PATCH", "/machine-config", #"{"mem_size_mib": null}"#, "mem_size_mib"),
        // schemathesis's ST201 case (a field PATCH does not merge from the current values).
        ("PATCH", "/machine-config", #"{"cpu_template": null, "huge_pages": "2M", "mem_size_mib": 32}"#, "cpu_template"),
        ("PUT", "/boot-source", #"{"kernel_image_path": "/bin/sh", "initrd_path": null}"#, "initrd_path"),
        ("PUT", "/boot-source", #"{"kernel_image_path": "/bin/sh", "boot_args": null}"#, "boot_args"),
        ("PUT", "/drives/d", #"{"drive_id": "d", "path_on_host": "/x", "is_root_device": false, "is_read_only": null}"#, "is_read_only"),
        ("PUT", "/network-interfaces/e", #"{"iface_id": "e", "host_dev_name": "tap0", "guest_mac": null}"#, "guest_mac"),
        ("PUT", "/vsock", #"{"guest_cid": 3, "uds_path": "/v", "vsock_id": null}"#, "vsock_id"),
        ("PUT", "/logger", #"{"level": null}"#, "level"),
        ("PUT", "/metrics", #"{"metrics_path": null}"#, "metrics_path"),
        ("PUT", "/actions", #"{"action_type": null}"#, "action_type"),
    ] as [(String, String, String, String)])
    func nullIsRefusedNamingTheField(method: String, path: String, body: String, field: String) {
        let c = controller()
        let r = send(c, method, path, body)
        #expect(r.status == 400, "\(r.bodyText)")
        #expect(r.bodyText.hasSuffix(": \(field): must not be null\"}"), "\(r.bodyText)")
        #expect(c.configuration == nil && send(c, "GET", "/machine-config").bodyText.contains(#""smt": false"#))
    }

    /// GET /machine-config reports what was set, as Firecracker does (and as the document says).
    @Test func hugePagesAreReportedAsSet() {
        let c = controller()
        #expect(send(c, "PUT", "/machine-config", #"{"vcpu_count": 1, "mem_size_mib": 128, "huge_pages": "2M"}"#).status == 204)
        #expect(send(c, "GET", "/machine-config").bodyText.contains(#""huge_pages": "2M""#))
        #expect(send(c, "PATCH", "/machine-config", #"{"huge_pages": "None"}"#).status == 204)
        #expect(send(c, "GET", "/machine-config").bodyText.contains(#""huge_pages": "None""#))
    }

    @Test func secondRootDeviceIsRefused() {
        let c = controller()
        #expect(send(c, "PUT", "/drives/a", #"{"drive_id": "a", "path_on_host": "\#(Self.diskFile("a"))", "is_root_device": true}"#).status == 204)
        let r = send(c, "PUT", "/drives/b", #"{"drive_id": "b", "path_on_host": "\#(Self.diskFile("b"))", "is_root_device": true}"#)
        #expect(r.status == 400 && r.bodyText.contains("root block device already exists"))
    }

    /// As Firecracker, a drive whose file cannot be opened as a disk is refused at its PUT with
    /// the reason, and nothing is stored.
    @Test func aDriveMustOpenAtItsPut() {
        let c = controller()
        let dir = FileManager.default.temporaryDirectory.path
        for (path, reason) in [("/nonexistent/disk.img", "no such file"), (dir, "directory"), ("/dev/zero", "character device")] {
            let r = send(c, "PUT", "/drives/d", #"{"drive_id": "d", "path_on_host": "\#(path)", "is_root_device": false}"#)
            #expect(r.status == 400 && r.bodyText.contains("path_on_host") && r.bodyText.lowercased().contains(reason), "\(path): \(r.bodyText)")
        }
        #expect(c.configuration?.drives.isEmpty ?? true)
        #expect(send(c, "PUT", "/drives/d", #"{"drive_id": "d", "path_on_host": "\#(Self.diskFile("d"))", "is_root_device": false, "is_read_only": true}"#).status == 204)
    }

    @Test func failedStartLeavesTheVMConfigurable() {
        let c = controller()
        // A file that opens but is no kernel: refused at InstanceStart, and the VM stays configurable.
        let notAKernel = NSTemporaryDirectory() + "swiftlet-not-a-kernel-\(getpid())"
        _ = FileManager.default.createFile(atPath: notAKernel, contents: Data("not a kernel\n".utf8))
        defer { try? FileManager.default.removeItem(atPath: notAKernel) }
        #expect(send(c, "PUT", "/boot-source", #"{"kernel_image_path": "\#(notAKernel)"}"#).status == 204)
        let r = send(c, "PUT", "/actions", #"{"action_type": "InstanceStart"}"#)
        #expect(r.status == 400)
        #expect(r.bodyText.contains("Start microvm error") && r.bodyText.contains(notAKernel))
        #expect(c.state == .notStarted)
        #expect(send(c, "PUT", "/boot-source", #"{"kernel_image_path": "/bin/sh"}"#).status == 204)
    }

    @Test func aKernelThatCannotBeOpenedIsRefusedAtThePUT() {
        let c = controller()
        let missing = send(c, "PUT", "/boot-source", #"{"kernel_image_path": "/nonexistent/kernel"}"#)
        #expect(missing.status == 400 && missing.bodyText.contains("kernel_image_path /nonexistent/kernel: No such file or directory"), "\(missing.bodyText)")
        let directory = send(c, "PUT", "/boot-source", #"{"kernel_image_path": "/tmp"}"#)
        #expect(directory.status == 400 && directory.bodyText.contains("kernel_image_path /tmp is a directory, not a regular file"), "\(directory.bodyText)")
        let initrd = send(c, "PUT", "/boot-source", #"{"kernel_image_path": "/bin/sh", "initrd_path": "/nonexistent/initrd"}"#)
        #expect(initrd.status == 400 && initrd.bodyText.contains("initrd_path /nonexistent/initrd"), "\(initrd.bodyText)")
    }

    /// A known path asked with a method it does not serve answers 405 with an Allow header (it was
    /// Firecracker's 400, which schemathesis's ST204 and RFC 9110 call wrong); unknown paths keep 400.
    @Test(arguments: [
        ("DELETE", "/", "GET"),
        ("POST", "/boot-source", "PUT"),
        ("TRACE", "/vm", "PATCH"),
        ("OPTIONS", "/machine-config", "GET, PUT, PATCH"),
        ("GET", "/drives/rootfs", "PUT"),
        ("PATCH", "/network-interfaces/eth0", "PUT"),
    ])
    func wrongMethodOnAKnownPathIs405WithAllow(method: String, path: String, allow: String) {
        let r = send(controller(), method, path, #"{"kernel_image_path": "/k"}"#)
        #expect(r.status == 405)
        #expect(r.headers.map(\.name) == ["Allow"] && r.headers.map(\.value) == [allow])
        #expect(r.contentType == "application/json")
        #expect(r.bodyText == #"{"fault_message": "\#(method) is not allowed on \#(path) (use \#(allow))."}"#)
    }

    /// The Allow table says what `route` serves: every listed method reaches its handler (never
    /// 405), every other method gets 405.
    @Test func allowTableMatchesRouting() {
        let methods = ["GET", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "HEAD", "QUERY"]
        let paths = Array(VMController.methodsByPath.keys) + ["/drives/d", "/network-interfaces/n"]
        for path in paths {
            let allowed = VMController.allowedMethods(path) ?? []
            #expect(!allowed.isEmpty)
            for method in methods {
                let r = send(controller(), method, path, "{}")
                #expect((r.status == 405) == !allowed.contains(method), "\(method) \(path): \(r.status) \(r.bodyText)")
            }
        }
    }

    /// The Allow table lists the paths and methods of api/swiftlet-vm-api.yaml, no more, no fewer.
    @Test func allowTableMatchesTheOpenAPIDocument() throws {
        let document = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("api/swiftlet-vm-api.yaml")
        let text = try String(contentsOf: document, encoding: .utf8)
        var documented: [String: [String]] = [:]
        var path: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "components:" { break }
            if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                path = String(line.dropFirst(2).dropLast())
            } else if let path, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":"),
                      ["get", "put", "patch", "post", "delete"].contains(line.trimmingCharacters(in: .whitespaces).dropLast()) {
                documented[path, default: []].append(line.trimmingCharacters(in: .whitespaces).dropLast().uppercased())
            }
        }
        var table = VMController.methodsByPath
        table["/drives/{drive_id}"] = VMController.allowedMethods("/drives/x")
        table["/network-interfaces/{iface_id}"] = VMController.allowedMethods("/network-interfaces/x")
        #expect(documented.mapValues { Set($0) } == table.mapValues { Set($0) })
    }

    @Test func identifiers() {
        #expect(VMController.identifier("/drives/rootfs", prefix: "/drives/") == "rootfs")
        #expect(VMController.identifier("/drives/a_b-1", prefix: "/drives/") == "a_b-1")
        #expect(VMController.identifier("/drives/", prefix: "/drives/") == nil)
        #expect(VMController.identifier("/drives/a/b", prefix: "/drives/") == nil)
        #expect(VMController.identifier("/drives/" + String(repeating: "x", count: 65), prefix: "/drives/") == nil)
    }

    @Test func jsonQuoting() {
        #expect(JSONText.quote("a\"b\\c\nd\u{01}é") == #""a\"b\\c\nd\u0001é""#)
        #expect(JSONText.fault("x") == #"{"fault_message": "x"}"#)
    }
}
