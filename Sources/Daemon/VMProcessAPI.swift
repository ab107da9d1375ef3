import DaemonProtocol
import Foundation
import HTTPUnix
import VMSpec

/// The daemon's side of one VM process's Firecracker-compatible API: configure and boot a VM from
/// a ``VMDefinition``, pause/resume it, read its metrics.
struct VMProcessAPI {
    let socketPath: String

    /// A request the VM answered with an error (or could not be reached).
    private struct Action: Encodable { var action_type: String }
    private struct VMStatePatch: Encodable { var state: String }
    private struct Info: Decodable { var state: String? }

    /// Every PUT that describes the VM, in Firecracker's usual order, then InstanceStart.
    func configureAndStart(_ d: VMDefinition) throws(DaemonError) {
        // Firecracker's schema, the same types the VM process decodes (VMSpec).
        try put("/boot-source", FirecrackerConfig.BootSource(kernelImagePath: d.kernel, initrdPath: d.initrd, bootArgs: d.cmdline))
        try put("/machine-config", FirecrackerConfig.MachineConfig(vcpuCount: d.cpus, memSizeMib: UInt64(d.memoryMiB)))
        for (disk, id) in zip(d.disks, d.diskIDs) {
            try put("/drives/\(id)", FirecrackerConfig.Drive(driveId: id, pathOnHost: disk.path, isRootDevice: disk.root, isReadOnly: disk.readOnly))
        }
        for (net, id) in zip(d.networks, d.networkIDs) {
            try put("/network-interfaces/\(id)", FirecrackerConfig.NetworkInterface(ifaceId: id, hostDevName: net.tap, guestMac: net.mac))
        }
        if let v = d.vsock { try put("/vsock", FirecrackerConfig.Vsock(guestCid: v.cid, udsPath: v.uds)) }
        try put("/actions", Action(action_type: "InstanceStart"))
    }

    /// PATCH /vm {"state": "Paused" | "Resumed"}.
    func setPaused(_ paused: Bool) throws(DaemonError) {
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

    private func put<T: Encodable>(_ path: String, _ body: T) throws(DaemonError) { try send("PUT", path, body) }

    private func send<T: Encodable>(_ method: String, _ path: String, _ body: T) throws(DaemonError) {
        let data: Data
        do { data = try JSON.data(body) } catch { throw DaemonError(500, "\(method) \(path): \(error)") }
        let response: HTTPResponse
        do {
            response = try UnixHTTPClient.request(socketPath: socketPath, method: method, path: path, body: Array(data), timeoutSeconds: 30)
        } catch {
            throw DaemonError(500, "\(method) \(path): \(error.message)")
        }
        guard (200..<300).contains(response.status) else {
            throw DaemonError(500, "\(method) \(path): \(JSON.faultMessage(response.body))")
        }
    }
}
