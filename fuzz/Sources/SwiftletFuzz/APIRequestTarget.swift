import API
import HTTPUnix
import VMSpec

extension FuzzTargets {
    /// The Firecracker-compatible API of one VM process before boot: routing, every request type's
    /// strict decoding and validation, one controller taking a sequence of requests (so later ones
    /// meet the state earlier ones left). InstanceStart is never sent: booting is not this target's.
    /// Every answer must be 2xx or 400/404/405 with a one-line fault message; never a trap.
    static let apiRequest = FuzzTarget(
        name: "api-request",
        summary: "Firecracker API requests (method, path, JSON body) against one VMController before boot"
    ) { bytes in
        var input = FuzzInput(bytes)
        let controller = VMController(options: VMController.Options(), sandbox: { _ in }, onExit: { _ in })
        // Up to 4 requests: [method, path, body length (2 bytes), body].
        for _ in 0..<4 where !input.isAtEnd {
            let method = input.pick(["GET", "PUT", "PATCH", "POST", "DELETE"])
            let path = input.pick(apiPaths)
            let body = input.take(Int(input.integer(UInt16.self) % 4096))
            // Booting would start a VM; the actions the target may send are the harmless ones.
            if path == "/actions", body.contains(UInt8(ascii: "I")) { continue }
            let response = controller.handle(HTTPRequest(method: method, path: path, body: body))
            switch response.status {
            case 200, 204, 400, 404, 405: break
            default: fatalError("\(method) \(path): status \(response.status)")
            }
        }
    }

    /// Every path the API routes, plus a few it must refuse. Not /logger and /metrics: they open
    /// for writing a file the body names, and a fuzzer must not write to random host paths.
    static let apiPaths = [
        "/", "/version", "/machine-config", "/boot-source", "/drives/rootfs", "/drives/", "/drives/a/../b",
        "/network-interfaces/eth0", "/network-interfaces/", "/vsock", "/actions",
        "/vm", "/vm/config", "/mmds", "/balloon", "/snapshot/create", "/entropy", "/cpu-config", "/nope",
    ]
}
