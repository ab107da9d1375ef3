import DaemonProtocol
import Foundation
import Logs

/// What `/metrics` knows about one VM: the daemon's own view plus, for a live VM, its process's
/// counters (nil when the VM is not running or did not answer).
public struct VMMetricsSample: Sendable, Equatable {
    public var name: String
    public var state: VMState
    public var uptimeSeconds: Double
    public var vcpus: Int
    public var memoryMiB: Int
    public var crashes: Int
    public var process: VMProcessMetrics?

    public init(name: String, state: VMState, uptimeSeconds: Double, vcpus: Int, memoryMiB: Int, crashes: Int, process: VMProcessMetrics?) {
        self.name = name; self.state = state; self.uptimeSeconds = uptimeSeconds; self.vcpus = vcpus
        self.memoryMiB = memoryMiB; self.crashes = crashes; self.process = process
    }
}

/// Renders the Prometheus text exposition format, version 0.0.4: each metric family once, with
/// its `# HELP` and `# TYPE` lines, then one line per label set.
public enum Prometheus {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// One metric family: its HELP/TYPE header and samples.
    struct Family {
        var name: String
        var type: String
        var help: String
        var samples: [(labels: [(String, String)], value: String)] = []
    }

    public static func render(_ vms: [VMMetricsSample]) -> String {
        var up = Family(name: "swiftlet_vm_up", type: "gauge", help: "1 while the VM's process runs (running, paused, starting or stopping), else 0.")
        var state = Family(name: "swiftlet_vm_state", type: "gauge", help: "1 for the VM's current state.")
        var uptime = Family(name: "swiftlet_vm_uptime_seconds", type: "gauge", help: "Seconds since the VM was started; 0 when it is not running.")
        var vcpus = Family(name: "swiftlet_vm_vcpus", type: "gauge", help: "vCPUs of the VM.")
        var memory = Family(name: "swiftlet_vm_memory_bytes", type: "gauge", help: "Guest memory of the VM in bytes.")
        var crashes = Family(name: "swiftlet_vm_crashes_total", type: "counter", help: "Times the VM's process crashed or was killed without being asked to stop.")
        var exits = Family(name: "swiftlet_vm_exits_total", type: "counter", help: "VM exits handled by the VMM, by reason.")
        var requests = Family(name: "swiftlet_virtio_requests_total", type: "counter", help: "Requests served by a virtio device.")
        var bytes = Family(name: "swiftlet_virtio_bytes_total", type: "counter", help: "Bytes moved by a virtio device (in: from the host into the guest; out: from the guest).")

        for vm in vms.sorted(by: { $0.name < $1.name }) {
            let l = [("vm", vm.name)]
            up.samples.append((l, vm.state.isLive ? "1" : "0"))
            state.samples.append((l + [("state", vm.state.rawValue)], "1"))
            uptime.samples.append((l, format(vm.uptimeSeconds)))
            vcpus.samples.append((l, String(vm.vcpus)))
            memory.samples.append((l, String(UInt64(vm.memoryMiB) << 20)))
            crashes.samples.append((l, String(vm.crashes)))
            guard let p = vm.process else { continue }
            for (reason, count) in p.exits.sorted(by: { $0.key < $1.key }) {
                exits.samples.append((l + [("reason", reason)], String(count)))
            }
            for d in p.devices {
                requests.samples.append((l + [("device", d.id), ("kind", d.kind)], String(d.requests)))
                bytes.samples.append((l + [("device", d.id), ("direction", "in")], String(d.bytesIn)))
                bytes.samples.append((l + [("device", d.id), ("direction", "out")], String(d.bytesOut)))
            }
        }

        var out = ""
        for family in [up, state, uptime, vcpus, memory, crashes, exits, requests, bytes] {
            out += "# HELP \(family.name) \(escapeHelp(family.help))\n"
            out += "# TYPE \(family.name) \(family.type)\n"
            for sample in family.samples {
                let labels = sample.labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",")
                out += "\(family.name){\(labels)} \(sample.value)\n"
            }
        }
        return out
    }

    /// Label values escape backslash, double quote and line feed (format 0.0.4): as a quoted log
    /// value does.
    static func escapeLabel(_ s: String) -> String { LogLayout.escape(s) }

    /// HELP text escapes backslash and line feed.
    static func escapeHelp(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// A float without exponent noise: `1.5`, `0`, `12.345`.
    static func format(_ value: Double) -> String {
        guard value.isFinite else { return value.isNaN ? "NaN" : (value > 0 ? "+Inf" : "-Inf") }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(format: "%.3f", value)
    }
}
