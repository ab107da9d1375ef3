import Foundation
import HTTPUnix

/// The daemon's side of one VM process's Firecracker-compatible API: configure and boot a VM from
/// a ``VMDefinition``, pause/resume it, read its metrics.
struct VMProcessAPI {
    let socketPath: String

    /// A request the VM answered with an error (or could not be reached).
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private struct BootSource: Encodable {
        var kernel_image_path: String
        var initrd_path: String?
        var boot_args: String?
    }
    private struct MachineConfig: Encodable {
        var vcpu_count: Int
        var mem_size_mib: Int
    }
    private struct Drive: Encodable {
        var drive_id: String
        var path_on_host: String
        var is_root_device: Bool
        var is_read_only: Bool
    }
    private struct NetworkInterface: Encodable {
        var iface_id: String
        var host_dev_name: String
        var guest_mac: String?
    }
    private struct Vsock: Encodable {
        var guest_cid: UInt32
        var uds_path: String
    }
    private struct Action: Encodable { var action_type: String }
    private struct VMStatePatch: Encodable { var state: String }
    private struct Info: Decodable { var state: String? }

    /// Every PUT that describes the VM, in Firecracker's usual order, then InstanceStart.
    func configureAndStart(_ d: VMDefinition) throws(Failure) {
        try put("/boot-source", BootSource(kernel_image_path: d.kernel, initrd_path: d.initrd, boot_args: d.cmdline))
        try put("/machine-config", MachineConfig(vcpu_count: d.cpus, mem_size_mib: d.memoryMiB))
        for (disk, id) in zip(d.disks, d.diskIDs) {
            try put("/drives/\(id)", Drive(drive_id: id, path_on_host: disk.path, is_root_device: disk.root, is_read_only: disk.readOnly))
        }
        for (net, id) in zip(d.networks, d.networkIDs) {
            try put("/network-interfaces/\(id)", NetworkInterface(iface_id: id, host_dev_name: net.tap, guest_mac: net.mac?.description))
        }
        if let v = d.vsock { try put("/vsock", Vsock(guest_cid: v.cid, uds_path: v.uds)) }
        try put("/actions", Action(action_type: "InstanceStart"))
    }

    /// PATCH /vm {"state": "Paused" | "Resumed"}.
    func setPaused(_ paused: Bool) throws(Failure) {
        try send("PATCH", "/vm", VMStatePatch(state: paused ? "Paused" : "Resumed"))
    }

    /// `GET /`'s state: "Not started", "Running", "Paused" (nil when the VM does not answer).
    func state() -> String? {
        guard let r = try? UnixHTTPClient.request(socketPath: socketPath, method: "GET", path: "/", timeoutSeconds: 2),
              r.status == 200 else { return nil }
        return (try? JSONDecoder().decode(Info.self, from: Data(r.body)))?.state
    }

    /// `GET /swiftlet/metrics`, nil when the VM does not answer in time.
    func metrics() -> VMProcessMetrics? {
        guard let r = try? UnixHTTPClient.request(socketPath: socketPath, method: "GET", path: "/swiftlet/metrics", timeoutSeconds: 2),
              r.status == 200 else { return nil }
        return try? JSONDecoder().decode(VMProcessMetrics.self, from: Data(r.body))
    }

    private func put<T: Encodable>(_ path: String, _ body: T) throws(Failure) { try send("PUT", path, body) }

    private func send<T: Encodable>(_ method: String, _ path: String, _ body: T) throws(Failure) {
        let data: Data
        do { data = try JSON.data(body) } catch { throw Failure(description: "\(method) \(path): \(error)") }
        let response: HTTPResponse
        do {
            response = try UnixHTTPClient.request(socketPath: socketPath, method: method, path: path, body: Array(data), timeoutSeconds: 30)
        } catch {
            throw Failure(description: "\(method) \(path): \(error.message)")
        }
        guard (200..<300).contains(response.status) else {
            throw Failure(description: "\(method) \(path): \(JSON.faultMessage(response.body))")
        }
    }
}
