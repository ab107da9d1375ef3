import VMSpec
import GuestMemory
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A virtio network device (VIRTIO 1.2 section 5.1) backed by a Linux tap interface.
///
/// Two queues: 0 = receiveq1, 1 = transmitq1 (5.1.2); no control queue, one queue pair. The
/// configuration (5.1.4) carries the MAC (VIRTIO_NET_F_MAC) and a status that is always LINK_UP
/// (VIRTIO_NET_F_STATUS). Offered offloads: CSUM and HOST_TSO4/6/ECN (the guest may send partial
/// checksums and TCP segments of up to 64 KiB), GUEST_CSUM and GUEST_TSO4/6/ECN (it accepts them),
/// and MRG_RXBUF (mergeable receive buffers).
///
/// The tap is opened with IFF_VNET_HDR and a 12-byte vnet header, the layout of
/// struct virtio_net_hdr (5.1.6), so headers pass between guest and kernel unchanged and the
/// kernel does any checksum or segmentation work: on activation TUNSETOFFLOAD tells it which
/// offloads the guest negotiated, so it never hands the guest what it cannot take.
///
/// Transmit (5.1.6.2): each chain of the transmitq (header + frame, device-readable) goes to the
/// tap with one writev over the guest's buffers, and is used with length 0. Receive (5.1.6.4):
/// frames are read with one readv straight into stashed receive buffers (see `NetReceiveBuffers`);
/// with MRG_RXBUF a frame may span several chains (num_buffers), otherwise each chain holds one
/// frame. When the receiveq runs dry the device stops reading, leaving frames queued in the tap,
/// until the driver posts buffers. Nothing is allocated per frame.
///
/// The device's event source is its back end's readiness source (Backends: a private epoll set
/// holding the tap's fd): the event loop polls it, and the device switches input off while it
/// cannot receive (not activated, or no receive buffers), so pending frames do not wake the loop
/// over and over.
///
/// A guest that breaks a queue stops the device: `needsReset` turns true until `reset()`.
public final class VirtioNet: VirtioDevice {
    typealias Spec = VirtioNetSpec

    /// Largest Queue Size offered, for both queues.
    public static let queueSize: UInt16 = 256
    /// Index of receiveq1 and transmitq1 (5.1.2).
    public static let receiveQueue = 0, transmitQueue = 1
    /// Frames received per event before the loop thread gets to serve other queues.
    static let receiveBatch = 256
    /// Vectors of one transmitted chain (writev's IOV_MAX).
    static let transmitVectorCapacity = 1024

    private struct State {
        var receiveQueue: SplitVirtqueue?
        var transmitQueue: SplitVirtqueue?
        var interrupt: (any VirtioInterrupt)?
        var features: UInt64 = 0
        var needsReset = false
        /// Whether the back end's input readiness is switched on.
        var inputEnabled = false
        /// The backend failed a read with something other than EAGAIN (the tap was deleted under
        /// us: its fd then polls as an error forever). Input stays off for good.
        var backendFailed = false
        let receiveBuffers: NetReceiveBuffers
        let transmitVectors: NetTransmitVectors
    }

    private let state: Mutex<State>
    private let counters = NetCounters()
    private let backend: any NetBackend
    private let configuration: [UInt8]

    /// The MAC address in the configuration space.
    public let mac: [UInt8]
    /// The tap interface's name (empty for a test backend).
    public let interfaceName: String
    /// True when the device created the tap; it disappears when the device goes away.
    public let createdInterface: Bool

    public var deviceType: UInt16 { VirtioDeviceType.net }
    public var queueCount: Int { 2 }
    public var maximumQueueSize: UInt16 { Self.queueSize }
    public var configurationSize: Int { Spec.configurationSize }
    public let deviceFeatures: UInt64 = Spec.featureMAC | Spec.featureStatus | Spec.featureMergeableReceiveBuffers
        | Spec.featureChecksum | Spec.featureHostTSO4 | Spec.featureHostTSO6 | Spec.featureHostECN
        | Spec.featureGuestChecksum | Spec.featureGuestTSO4 | Spec.featureGuestTSO6 | Spec.featureGuestECN

    /// A device over `backend` (Backends' tap, or a test's). `mac` is the guest's address (6
    /// bytes, unicast); nil picks a random locally administered one. `name` and `created` describe
    /// the interface for reports. Throws one line naming the problem.
    public init(backend: any NetBackend, mac: [UInt8]?, name: String = "", created: Bool = false) throws(VirtioDeviceError) {
        let address = mac ?? MACAddress.random().bytes
        guard address.count == 6 else { throw VirtioDeviceError("virtio-net: a MAC address has 6 bytes, not \(address.count)") }
        guard address[0] & 1 == 0 else {
            throw VirtioDeviceError("virtio-net: MAC \(MACAddress(bytes: address).map(\.description) ?? "\(address)") is a multicast address")
        }
        // Input starts switched off: nothing may wake the loop before the driver activates us.
        backend.setInputEnabled(false)
        self.backend = backend
        self.mac = address
        interfaceName = name
        createdInterface = created

        // struct virtio_net_config (5.1.4), little-endian.
        var config = [UInt8](repeating: 0, count: Spec.configurationSize)
        for (i, byte) in address.enumerated() { config[Spec.macOffset + i] = byte }
        config[Spec.statusOffset] = UInt8(Spec.statusLinkUp & 0xFF)
        config[Spec.maxVirtqueuePairsOffset] = 1
        configuration = config
        state = Mutex(State(receiveBuffers: NetReceiveBuffers(), transmitVectors: NetTransmitVectors(capacity: Self.transmitVectorCapacity)))
    }

    // `backend` closes its tap when released: a tap it created (not persistent) goes with it.

    // MARK: Counters (cheap, lock-free reads)

    /// Frames delivered to the guest.
    public var rxFrames: UInt64 { counters.receivedFrames.load(ordering: .relaxed) }
    /// Bytes of the frames delivered to the guest (without the 12-byte header).
    public var rxBytes: UInt64 { counters.receivedBytes.load(ordering: .relaxed) }
    /// Frames the guest sent that reached the tap.
    public var txFrames: UInt64 { counters.transmittedFrames.load(ordering: .relaxed) }
    /// Bytes of those frames (without the header).
    public var txBytes: UInt64 { counters.transmittedBytes.load(ordering: .relaxed) }
    /// Frames dropped either way (malformed, oversized or truncated, refused by the tap) and
    /// receive buffers returned unused because they were malformed.
    public var dropped: UInt64 { counters.dropped.load(ordering: .relaxed) }

    /// The guest broke a queue; the device processes nothing more until `reset()`.
    public var needsReset: Bool { state.withLock { $0.needsReset } }

    // MARK: VirtioDevice

    public func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        copyConfiguration(configuration, offset: offset, into: data)
    }

    public var eventSources: [Int32] { [backend.readinessSource] }

    public func activate(features: UInt64, memory: GuestMemory, queues: [SplitVirtqueue?],
                         interrupt: any VirtioInterrupt) throws(VirtioDeviceError) {
        // Tell the tap what the guest accepts before any frame can reach it (5.1.6.4: the device
        // sets NEEDS_CSUM or a gso_type only when the matching GUEST_ feature was negotiated).
        let offloads = Spec.tapOffloads(forGuestFeatures: features)
        if let error = backend.setReceiveOffloads(offloads) {
            throw VirtioDeviceError("virtio-net: TUNSETOFFLOAD \(offloads): \(error)")
        }
        // The transport hands the queues over for good on DRIVER_OK and does not touch them again
        // (the VirtioDevice contract), so moving them into the lock is a real transfer; the
        // protocol just cannot spell its parameter `sending`.
        let handover = QueueHandover(queues: queues)
        state.withLock { state in
            state.receiveQueue = handover.take(Self.receiveQueue)
            state.transmitQueue = handover.take(Self.transmitQueue)
            state.interrupt = interrupt
            state.features = features
            state.needsReset = false
            state.receiveBuffers.removeAll()
            setInput(state.receiveQueue != nil, &state)
        }
    }

    public func queueNotified(_ index: Int) {
        switch index {
        case Self.receiveQueue:
            // The driver posted receive buffers: that is the only kick it sends us on the
            // receiveq (we ask for one only when we ran dry), so resume reading.
            let interrupt = state.withLock { state in receive(&state) }
            interrupt?.signalUsedBuffers(queue: Self.receiveQueue)
        case Self.transmitQueue:
            let interrupt = state.withLock { state in transmit(&state) }
            interrupt?.signalUsedBuffers(queue: Self.transmitQueue)
        default:
            break
        }
    }

    /// The back end has frames (its readiness source is readable).
    public func eventSourceReady(_ index: Int) {
        let interrupt = state.withLock { state in receive(&state) }
        interrupt?.signalUsedBuffers(queue: Self.receiveQueue)
    }

    public func reset() {
        state.withLock { state in
            state.receiveQueue = nil
            state.transmitQueue = nil
            state.interrupt = nil
            state.features = 0
            state.needsReset = false
            state.receiveBuffers.removeAll()
            setInput(false, &state)
        }
        // Back to plain frames, so what queues up until the next activation suits any driver.
        _ = backend.setReceiveOffloads(0)
    }

    // MARK: Receive (5.1.6.3, 5.1.6.4)

    private func setInput(_ enabled: Bool, _ state: inout State) {
        let enabled = enabled && !state.backendFailed
        guard state.inputEnabled != enabled else { return }
        backend.setInputEnabled(enabled)
        state.inputEnabled = enabled
    }

    /// Reads frames from the backend into receive buffers until it has none, the receiveq runs
    /// dry, or a batch is done. Returns the interrupt to raise, if the driver wants one (2.7.7).
    private func receive(_ state: inout State) -> (any VirtioInterrupt)? {
        guard !state.needsReset, let queue = state.receiveQueue, let interrupt = state.interrupt else {
            setInput(false, &state)
            return nil
        }
        let buffers = state.receiveBuffers
        let mergeable = state.features & Spec.featureMergeableReceiveBuffers != 0
        // What to hold before reading a frame of unknown size. With mergeable buffers: room for
        // the largest frame the tap may deliver (64 KiB segments with GUEST_TSO/UFO; else a jumbo
        // frame). Without: one chain, which the driver sized for a whole frame (5.1.6.3.1).
        let gso = Spec.featureGuestTSO4 | Spec.featureGuestTSO6 | Spec.featureGuestUFO
        let target = state.features & gso != 0 ? Spec.maximumPacketSize : Spec.headerSize + 9018
        var broken = false
        var reads = 0
        queue.disableNotifications()
        receiving: while reads < Self.receiveBatch {
            // Take buffers.
            while mergeable ? buffers.byteCount < target && buffers.canTake : buffers.chainCount == 0 {
                let chain: DescriptorChain?
                do { chain = try queue.nextChain() } catch {
                    if queue.isBroken { broken = true; break receiving }
                    continue
                }
                guard let chain else { break }
                if !buffers.append(chain) {
                    counters.dropped.add(1, ordering: .relaxed)
                    do { try queue.addUsed(head: chain.head, length: 0) } catch { broken = true; break receiving }
                }
            }
            let enough = mergeable
                ? buffers.chainCount > 0 && (buffers.byteCount >= target || !buffers.canTake || buffers.chainCount >= Int(queue.size))
                : buffers.chainCount > 0
            if !enough {
                // Dry: ask the driver to kick us when it posts buffers (2.7.10), and check again
                // for buffers posted before it could see that request.
                if queue.enableNotifications() {
                    queue.disableNotifications()
                    continue
                }
                if queue.isBroken { broken = true; break receiving }  // avail.idx jumped
                // Stop reading; the frames wait in the tap until queueNotified(0).
                setInput(false, &state)
                return queue.needsNotification() ? interrupt : nil
            }
            setInput(true, &state)

            let vectorCount = mergeable ? buffers.vectorCount : buffers.vectors(0)
            let capacity = mergeable ? buffers.byteCount : buffers.bytes(0)
            let length = backend.receive(buffers.vectors, count: vectorCount)
            if length == 0 { break }  // no frame waiting
            if length < 0 {
                // A level-triggered error would wake the loop again at once, forever: stop
                // reading from this backend. Transmit keeps trying (and counts its drops).
                state.backendFailed = true
                setInput(false, &state)
                break
            }
            reads += 1
            guard length > Spec.headerSize, length <= capacity else {
                // A runt, or a frame larger than the buffers (truncated): drop it. The buffers
                // were not used, so they stay for the next frame.
                counters.dropped.add(1, ordering: .relaxed)
                continue
            }
            // Use as many chains as the frame filled, in order, each with the bytes written to it.
            var left = length
            var used = 0
            while left > 0 {
                left -= min(left, buffers.bytes(used))
                used += 1
            }
            // 5.1.6.4.1: num_buffers is the number of buffers used, 1 without MRG_RXBUF.
            buffers.setNumberOfBuffers(UInt16(used))
            left = length
            for i in 0..<used {
                let part = min(left, buffers.bytes(i))
                left -= part
                do { try queue.addUsed(head: buffers.head(i), length: UInt32(part)) } catch { broken = true; break receiving }
            }
            buffers.removeFirst(used)
            counters.receivedFrames.add(1, ordering: .relaxed)
            counters.receivedBytes.add(UInt64(length - Spec.headerSize), ordering: .relaxed)
        }
        if broken {
            state.needsReset = true
            buffers.removeAll()
            setInput(false, &state)
            return nil
        }
        return queue.needsNotification() ? interrupt : nil
    }

    // MARK: Transmit (5.1.6.2)

    /// Drains the transmitq (batching notifications, 2.7.10). Returns the interrupt to raise.
    private func transmit(_ state: inout State) -> (any VirtioInterrupt)? {
        guard !state.needsReset, let queue = state.transmitQueue, let interrupt = state.interrupt else { return nil }
        let vectors = state.transmitVectors
        // 5.1.6.2.1 / 2.7.8: the device writes nothing into a transmit buffer.
        let result = queue.drain { chain in
            if !send(chain, vectors) { counters.dropped.add(1, ordering: .relaxed) }
            return 0
        }
        if result.broken {
            state.needsReset = true
            return nil
        }
        return result.needsNotification ? interrupt : nil
    }

    /// Sends one chain (header + frame, all device-readable) with one writev. False when the
    /// chain is malformed (a buffer the queue refuses, a device-writable one, nothing past the
    /// header), larger than 65562 bytes, or refused by the backend.
    private func send(_ chain: DescriptorChain, _ scratch: NetTransmitVectors) -> Bool {
        var walk = chain
        var count = 0
        var total = 0
        do {
            while let descriptor = try walk.next() {
                guard !descriptor.isWriteOnly else { return false }
                guard descriptor.length != 0 else { continue }
                total += descriptor.bytes.count
                guard total <= Spec.maximumPacketSize, count < scratch.capacity else { return false }
                scratch.vectors[count] = iovec(iov_base: descriptor.bytes.baseAddress, iov_len: descriptor.bytes.count)
                count += 1
            }
        } catch { return false }
        guard total > Spec.headerSize else { return false }
        // The guest may rewrite the header while the kernel copies it: that only garbles its own
        // frame, and the kernel validates the header it copied.
        let written = backend.send(scratch.vectors, count: count)
        guard written >= 0 else { return false }
        counters.transmittedFrames.add(1, ordering: .relaxed)
        counters.transmittedBytes.add(UInt64(total - Spec.headerSize), ordering: .relaxed)
        return true
    }
}

/// Preallocated iovecs for one transmitted chain.
final class NetTransmitVectors {
    let vectors: UnsafeMutablePointer<iovec>
    let capacity: Int
    init(capacity: Int) {
        self.capacity = capacity
        vectors = .allocate(capacity: capacity)
        vectors.initialize(repeating: iovec(iov_base: nil, iov_len: 0), count: capacity)
    }
    deinit { vectors.deallocate() }
}

