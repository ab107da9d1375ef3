import Devices
import GuestMemory
import Host
import Hypervisor
#if canImport(Glibc)
import Glibc
#endif

/// Delivers MSI-X messages through KVM_SIGNAL_MSI.
struct KVMMSIDelivery: MSIDelivery {
    let machine: Machine
    func deliver(address: UInt64, data: UInt32) { _ = try? machine.signalMSI(address: address, data: data) }
}

/// The virtio devices of a VM on the PCI bus and the event loop that serves their queues off the
/// vCPU threads. Each queue has an eventfd: KVM signals it directly when the guest writes the
/// queue's doorbell (an ioeventfd on the notify address), and a doorbell that still reaches
/// userspace signals it too. One thread waits on all of them and runs the device's queue work.
final class VirtioHub: @unchecked Sendable {
    struct Queue {
        let device: any VirtioDevice
        let index: Int
        let eventFD: EventFD
        let transport: VirtioPCIDevice
        var notifierAddress: UInt64?
    }

    let machine: Machine
    private(set) var queues: [Queue] = []
    /// Extra input sources (device, index into its eventSources), polled with tokens after the queues'.
    private var sources: [(device: any VirtioDevice, index: Int, transport: VirtioPCIDevice)] = []
    private static let sourceTokenBase: UInt64 = 1 << 32
    private let poller: Poller
    private let log: VMMLog
    private var thread: VCPUThread?

    init(machine: Machine, log: VMMLog) throws(VMMError) {
        self.machine = machine
        self.log = log
        do { poller = try Poller() } catch { throw VMMError(.host, "\(error)") }
    }

    /// Wraps `device` in a virtio-pci function, attaches it to `bus`, and wires its doorbells.
    func attach(_ device: any VirtioDevice, to bus: PCIBus, memory: GuestMemory) throws(VMMError) {
        let first = queues.count
        var events: [EventFD] = []
        do {
            for _ in 0..<device.queueCount { events.append(try EventFD()) }
        } catch { throw VMMError(.host, "\(error)") }
        let doorbells = events
        let log = self.log
        let transport: VirtioPCIDevice
        do {
            transport = try VirtioPCIDevice(device: device, memory: memory, delivery: KVMMSIDelivery(machine: machine),
                                            onNotify: { queue in if queue < doorbells.count { doorbells[queue].signal() } },
                                            onError: { reason in log.warn(reason) })
            try bus.attach(transport)
        } catch { throw VMMError(.hypervisor, "virtio device setup: \(error)") }
        for (i, event) in events.enumerated() {
            queues.append(Queue(device: device, index: i, eventFD: event, transport: transport))
            do { try poller.add(event.fd, token: UInt64(first + i)) } catch { throw VMMError(.host, "\(error)") }
        }
        for (index, fd) in device.eventSources.enumerated() {
            do { try poller.add(fd, token: Self.sourceTokenBase + UInt64(sources.count)) } catch { throw VMMError(.host, "\(error)") }
            sources.append((device, index, transport))
        }
        refreshNotifiers()
    }

    /// (Re)registers each queue's ioeventfd at its doorbell's current address (after attach and
    /// whenever the guest moves a BAR). Without ioeventfd support doorbells still work, slower.
    func refreshNotifiers() {
        guard machine.notifierSupport.ioNotifiers else { return }
        let anyLength = machine.notifierSupport.anyLengthIONotifiers
        for i in queues.indices {
            let q = queues[i]
            let address = q.transport.notifyAddress(queue: q.index)
            guard address != q.notifierAddress else { continue }
            if let old = q.notifierAddress {
                try? machine.detachIONotifier(q.eventFD.fd, address: old, length: anyLength ? 0 : 2, space: .mmio)
            }
            queues[i].notifierAddress = nil
            if let address, (try? machine.attachIONotifier(q.eventFD.fd, address: address, length: anyLength ? 0 : 2, space: .mmio)) != nil {
                queues[i].notifierAddress = address
            }
        }
    }

    /// Starts the device thread.
    func start() throws(VMMError) {
        guard !queues.isEmpty else { return }
        do {
            thread = try VCPUThread(name: "virtio") { [self] in run() }
        } catch { throw VMMError(.host, error.message) }
    }

    private func run() {
        let queues = self.queues, sources = self.sources
        while true {
            _ = poller.wait(timeoutNanoseconds: nil) { token in
                if token >= Self.sourceTokenBase {
                    let i = Int(token - Self.sourceTokenBase)
                    guard i < sources.count, sources[i].transport.isActive else { return }
                    sources[i].device.eventSourceReady(sources[i].index)
                    return
                }
                guard token < UInt64(queues.count) else { return }
                let q = queues[Int(token)]
                _ = q.eventFD.drain()
                guard q.transport.isActive else { return }
                q.device.queueNotified(q.index)
                if q.device.needsReset { q.transport.enterNeedsReset("virtio device \(q.device.deviceType): a queue is broken; the driver must reset it") }
            }
        }
    }
}
