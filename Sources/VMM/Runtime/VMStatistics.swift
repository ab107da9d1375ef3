import Synchronization
import VMSpec

/// Exit counters of a VM's vCPUs, bumped on the exit path (one relaxed atomic add per exit, no
/// allocation) and read by the metrics endpoint without stopping anything.
public final class ExitCounters: Sendable {
    let portIO = Atomic<UInt64>(0)
    let mmio = Atomic<UInt64>(0)
    let halt = Atomic<UInt64>(0)
    let kick = Atomic<UInt64>(0)
    let other = Atomic<UInt64>(0)

    public init() {}


    /// (reason, count) pairs in a fixed order; reasons are Prometheus label values.
    public var snapshot: [(reason: String, count: UInt64)] {
        [("port_io", portIO.load(ordering: .relaxed)), ("mmio", mmio.load(ordering: .relaxed)),
         ("halt", halt.load(ordering: .relaxed)), ("kick", kick.load(ordering: .relaxed)),
         ("other", other.load(ordering: .relaxed))]
    }
}

/// One device's counters, as the metrics endpoint reports them (VMSpec's type: swiftletd reads
/// the same record back).
public typealias DeviceStatistics = VMSpec.DeviceStatistics

/// Request and byte counters of one device without counters of its own (hvt devices).
final class DeviceCounters: Sendable {
    let requests = Atomic<UInt64>(0)
    let bytesIn = Atomic<UInt64>(0)
    let bytesOut = Atomic<UInt64>(0)

    /// One request that moved `intoGuest` bytes into the guest and `fromGuest` out of it.
    func record(intoGuest: UInt64 = 0, fromGuest: UInt64 = 0) {
        requests.add(1, ordering: .relaxed)
        if intoGuest > 0 { bytesIn.add(intoGuest, ordering: .relaxed) }
        if fromGuest > 0 { bytesOut.add(fromGuest, ordering: .relaxed) }
    }

    func statistics(id: String, kind: String) -> DeviceStatistics {
        DeviceStatistics(id: id, kind: kind, requests: requests.load(ordering: .relaxed),
                         bytesIn: bytesIn.load(ordering: .relaxed), bytesOut: bytesOut.load(ordering: .relaxed))
    }
}
