import Daemon
import DaemonProtocol
import VMSpec
import Foundation
import Logging
import Testing

/// Prometheus text, the state file and the log line format.
@Suite struct FormatTests {
    @Test func prometheusText() {
        let metrics = VMProcessMetrics(exits: ["port_io": 12, "halt": 1],
                                       devices: [.init(id: "rootfs", kind: "block", requests: 5, bytesIn: 4096, bytesOut: 512)])
        let text = Prometheus.render([
            VMMetricsSample(name: "web", state: .running, uptimeSeconds: 1.5, vcpus: 2, memoryMiB: 256, crashes: 1, process: metrics),
            VMMetricsSample(name: "db", state: .crashed, uptimeSeconds: 0, vcpus: 1, memoryMiB: 2, crashes: 3, process: nil),
        ])
        let expected = """
            # HELP swiftlet_vm_up 1 while the VM's process runs (running, paused, starting or stopping), else 0.
            # TYPE swiftlet_vm_up gauge
            swiftlet_vm_up{vm="db"} 0
            swiftlet_vm_up{vm="web"} 1
            # HELP swiftlet_vm_state 1 for the VM's current state.
            # TYPE swiftlet_vm_state gauge
            swiftlet_vm_state{vm="db",state="crashed"} 1
            swiftlet_vm_state{vm="web",state="running"} 1
            # HELP swiftlet_vm_uptime_seconds Seconds since the VM was started; 0 when it is not running.
            # TYPE swiftlet_vm_uptime_seconds gauge
            swiftlet_vm_uptime_seconds{vm="db"} 0
            swiftlet_vm_uptime_seconds{vm="web"} 1.500
            # HELP swiftlet_vm_vcpus vCPUs of the VM.
            # TYPE swiftlet_vm_vcpus gauge
            swiftlet_vm_vcpus{vm="db"} 1
            swiftlet_vm_vcpus{vm="web"} 2
            # HELP swiftlet_vm_memory_bytes Guest memory of the VM in bytes.
            # TYPE swiftlet_vm_memory_bytes gauge
            swiftlet_vm_memory_bytes{vm="db"} 2097152
            swiftlet_vm_memory_bytes{vm="web"} 268435456
            # HELP swiftlet_vm_crashes_total Times the VM's process crashed or was killed without being asked to stop.
            # TYPE swiftlet_vm_crashes_total counter
            swiftlet_vm_crashes_total{vm="db"} 3
            swiftlet_vm_crashes_total{vm="web"} 1
            # HELP swiftlet_vm_exits_total VM exits handled by the VMM, by reason.
            # TYPE swiftlet_vm_exits_total counter
            swiftlet_vm_exits_total{vm="web",reason="halt"} 1
            swiftlet_vm_exits_total{vm="web",reason="port_io"} 12
            # HELP swiftlet_virtio_requests_total Requests served by a virtio device.
            # TYPE swiftlet_virtio_requests_total counter
            swiftlet_virtio_requests_total{vm="web",device="rootfs",kind="block"} 5
            # HELP swiftlet_virtio_bytes_total Bytes moved by a virtio device (in: from the host into the guest; out: from the guest).
            # TYPE swiftlet_virtio_bytes_total counter
            swiftlet_virtio_bytes_total{vm="web",device="rootfs",direction="in"} 4096
            swiftlet_virtio_bytes_total{vm="web",device="rootfs",direction="out"} 512

            """
        #expect(text == expected)
    }

    @Test func prometheusEscapesLabelValues() {
        let metrics = VMProcessMetrics(exits: ["we\"ird\\reason\nx": 1])
        let text = Prometheus.render([VMMetricsSample(name: "a", state: .running, uptimeSeconds: 0, vcpus: 1, memoryMiB: 1, crashes: 0, process: metrics)])
        #expect(text.contains(#"swiftlet_vm_exits_total{vm="a",reason="we\"ird\\reason\nx"} 1"#))
        // Every sample line is `name{labels} value`, every family has HELP and TYPE.
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(line.split(separator: " ").count == 2, "\(line)")
        }
        #expect(text.components(separatedBy: "# TYPE").count - 1 == text.components(separatedBy: "# HELP").count - 1)
    }

    @Test func processMetricsDecodeLeniently() throws {
        let json = #"{"id":"vm1","state":"Running","uptime_seconds":1.5,"vcpus":1,"memory_mib":128,"exits":{"port_io":3,"mmio":4,"halt":0,"other":1,"new_reason":9},"devices":[{"id":"rootfs","kind":"block","requests":2,"bytes_in":10,"bytes_out":20,"extra":1}],"future":true}"#
        let m = try JSONDecoder().decode(VMProcessMetrics.self, from: Data(json.utf8))
        #expect(m.exits["new_reason"] == 9 && m.exits.count == 5)
        #expect(m.devices == [.init(id: "rootfs", kind: "block", requests: 2, bytesIn: 10, bytesOut: 20)])
    }

    @Test func stateFileRoundTrip() throws {
        let path = NSTemporaryDirectory() + "swiftletd-record-\(getpid()).json"
        defer { unlink(path) }
        let definition = VMDefinition(kernel: "/k", initrd: "/i", cmdline: "console=ttyS0", memoryMiB: 64, cpus: 2,
                                      disks: [.init(path: "/d", readOnly: true, id: "root")], networks: [.init(tap: "tap0", mac: MACAddress("02:00:00:00:00:01"))],
                                      vsock: .init(cid: 3, uds: "/v"), autostart: true)
        let record = VMRecord(name: "web", definition: definition, adHoc: true, state: .running, pid: 1234, startTicks: 987654,
                              startedAt: 1_700_000_000.25, exitStatus: nil, signal: nil, crashes: 2, lastError: "x")
        try record.save(to: path)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains("\"start_ticks\" : 987654"))
        #expect(text.contains("\"state\" : \"running\""))
        // The files named need not exist: a running VM's record must load even if they vanished.
        #expect(try VMRecord.load(from: path) == record)
    }

    @Test func statusStateText() {
        var s = VMStatus(name: "a", state: .crashed, vcpus: 1, memoryMiB: 2, signal: 9, kernel: "/k")
        #expect(s.stateText == "crashed (signal 9)")
        s.state = .stopped; s.signal = nil; s.exitStatus = 143
        #expect(s.stateText == "stopped (exit 143)")
        s.state = .running
        #expect(s.stateText == "running")
    }

    @Test func logLine() {
        let date = Date(timeIntervalSince1970: 1_700_000_000.5)
        let line = LineLogHandler.format(date: date, level: .info, label: "swiftletd", message: "vm started",
                                         metadata: ["vm": "web", "pid": "42", "error": "two words"])
        #expect(line == "2023-11-14T22:13:20.500Z info swiftletd: vm started error=\"two words\" pid=42 vm=web\n")
        #expect(LineLogHandler.level("warn") == .warning)
        #expect(LineLogHandler.level("loud") == nil)
    }
}
