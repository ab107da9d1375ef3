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

/// The virtio devices of a VM on the PCI bus, each served by its own event-loop thread off the
/// vCPU threads, so a slow disk never stalls the network or another disk. Each queue has an
/// eventfd: KVM signals it directly when the guest writes the queue's doorbell (an ioeventfd on
/// the notify address), and a doorbell that still reaches userspace signals it too.
final class VirtioHub: @unchecked Sendable {
    /// One queue's doorbell.
    struct Doorbell {
        let queue: Int
        let eventFD: EventFD
        var notifierAddress: UInt64?
    }

    /// One device, its transport, doorbells and loop.
    final class DeviceLoop: @unchecked Sendable {
        let device: any VirtioDevice
        let transport: VirtioPCIDevice
        var doorbells: [Doorbell]
        let poller: Poller
        var thread: VCPUThread?
        /// Tokens below this are queues; at or above, `device.eventSources[token - base]`.
        static let sourceTokenBase: UInt64 = 1 << 32

        init(device: any VirtioDevice, transport: VirtioPCIDevice, doorbells: [Doorbell]) throws(HostError) {
            self.device = device
            self.transport = transport
            self.doorbells = doorbells
            poller = try Poller()
            for bell in doorbells { try poller.add(bell.eventFD.fd, token: UInt64(bell.queue)) }
            for (index, fd) in device.eventSources.enumerated() {
                try poller.add(fd, token: Self.sourceTokenBase + UInt64(index))
            }
        }

        /// Waits for doorbells and event sources and runs the device's work; never returns (the
        /// process exits with the VM).
        func run() {
            let bells = doorbells.map(\.eventFD)
            while true {
                _ = poller.wait(timeoutNanoseconds: nil) { token in
                    guard transport.isActive else {
                        if token < UInt64(bells.count) { _ = bells[Int(token)].drain() }
                        return
                    }
                    if token >= Self.sourceTokenBase {
                        device.eventSourceReady(Int(token - Self.sourceTokenBase))
                    } else if token < UInt64(bells.count) {
                        _ = bells[Int(token)].drain()
                        device.queueNotified(Int(token))
                    }
                    if device.needsReset {
                        transport.enterNeedsReset("virtio device \(device.deviceType): a queue is broken; the driver must reset it")
                    }
                }
            }
        }
    }

    let machine: Machine
    private(set) var loops: [DeviceLoop] = []
    private let log: VMMLog

    init(machine: Machine, log: VMMLog) throws(VMMError) {
        self.machine = machine
        self.log = log
    }

    /// Wraps `device` in a virtio-pci function, attaches it to `bus`, and wires its doorbells.
    func attach(_ device: any VirtioDevice, to bus: PCIBus, memory: GuestMemory) throws(VMMError) {
        var bells: [Doorbell] = []
        do {
            for q in 0..<device.queueCount { bells.append(Doorbell(queue: q, eventFD: try EventFD())) }
        } catch { throw VMMError(.host, "\(error)") }
        let events = bells.map(\.eventFD)
        let log = self.log
        do {
            let transport = try VirtioPCIDevice(device: device, memory: memory, delivery: KVMMSIDelivery(machine: machine),
                                                onNotify: { queue in if queue < events.count { events[queue].signal() } },
                                                onError: { reason in log.warn(reason) })
            try bus.attach(transport)
            loops.append(try DeviceLoop(device: device, transport: transport, doorbells: bells))
        } catch let error as HostError {
            throw VMMError(.host, "\(error)")
        } catch {
            throw VMMError(.hypervisor, "virtio device setup: \(error)")
        }
        refreshNotifiers()
    }

    /// (Re)registers each queue's ioeventfd at its doorbell's current address (after attach and
    /// whenever the guest moves a BAR). Without ioeventfd support doorbells still work, slower.
    func refreshNotifiers() {
        guard machine.notifierSupport.ioNotifiers else { return }
        let length = machine.notifierSupport.anyLengthIONotifiers ? 0 : 2
        for loop in loops {
            for i in loop.doorbells.indices {
                let bell = loop.doorbells[i]
                let address = loop.transport.notifyAddress(queue: bell.queue)
                guard address != bell.notifierAddress else { continue }
                if let old = bell.notifierAddress {
                    try? machine.detachIONotifier(bell.eventFD.fd, address: old, length: length, space: .mmio)
                }
                loop.doorbells[i].notifierAddress = nil
                if let address, (try? machine.attachIONotifier(bell.eventFD.fd, address: address, length: length, space: .mmio)) != nil {
                    loop.doorbells[i].notifierAddress = address
                }
            }
        }
    }

    /// Starts one thread per device, named after its type (e.g. `virtio-blk0`).
    func start() throws(VMMError) {
        let names: [UInt16: String] = [VirtioDeviceType.block: "blk", VirtioDeviceType.net: "net",
                                       VirtioDeviceType.entropy: "rng", VirtioDeviceType.vsock: "vsock"]
        var counts: [UInt16: Int] = [:]
        for loop in loops {
            let type = loop.device.deviceType
            let n = counts[type, default: 0]
            counts[type] = n + 1
            do {
                loop.thread = try VCPUThread(name: "virtio-\(names[type] ?? "dev")\(n)", role: .device) { loop.run() }
            } catch { throw VMMError(.host, error.message) }
        }
    }
}
