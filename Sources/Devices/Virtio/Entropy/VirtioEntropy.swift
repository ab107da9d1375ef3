import GuestMemory
import Synchronization

/// A virtio entropy device, virtio-rng (VIRTIO 1.2 section 5.4): one request queue, no feature
/// bits, no configuration space. Each chain's device-writable buffers are filled in place from
/// an `EntropySource` (Backends: getrandom(2)), at most `requestLimit` bytes per chain; the used length is the bytes filled
/// (5.4.6). Device-readable buffers are ignored.
///
/// A guest that breaks the queue stops the device: `needsReset` turns true until `reset()`, and
/// the transport should set DEVICE_NEEDS_RESET (2.1.2).
public final class VirtioEntropy: VirtioDevice {
    /// Largest Queue Size offered.
    public static let queueSize: UInt16 = 256
    /// Most bytes handed out per chain, so one request cannot keep the loop thread busy.
    public static let requestLimit = 64 << 10

    private let requestQueue = SingleRequestQueue()
    private let filled = Atomic<UInt64>(0)
    private let served = Atomic<UInt64>(0)

    public var deviceType: UInt16 { VirtioDeviceType.entropy }
    public var queueCount: Int { 1 }
    public var maximumQueueSize: UInt16 { Self.queueSize }
    public var deviceFeatures: UInt64 { 0 }
    public var configurationSize: Int { 0 }

    private let source: any EntropySource

    /// A device drawing its bytes from `source`.
    public init(source: any EntropySource) { self.source = source }

    /// Requests taken from the queue.
    public var requests: UInt64 { served.load(ordering: .relaxed) }
    /// Random bytes handed to the guest.
    public var bytesProvided: UInt64 { filled.load(ordering: .relaxed) }
    /// The guest broke the queue; the device processes nothing more until `reset()`.
    public var needsReset: Bool { requestQueue.needsReset }

    public func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        for i in 0..<data.count { data[i] = 0 }
    }

    public func activate(features: UInt64, memory: GuestMemory, queues: [SplitVirtqueue?],
                         interrupt: any VirtioInterrupt) throws(VirtioDeviceError) {
        requestQueue.activate(queues: queues, interrupt: interrupt)
    }

    public func queueNotified(_ index: Int) {
        guard index == 0 else { return }
        requestQueue.serve { _, chain in UInt32(fill(chain)) }
    }

    public func reset() { requestQueue.reset() }

    /// Fills the chain's writable buffers, in order, up to `requestLimit` bytes. A chain the
    /// queue refuses gets whatever was filled before the bad descriptor (the walk checks each
    /// buffer before handing it out, and the used length is a count from the first writable
    /// byte, 2.7.8.1).
    private func fill(_ chain: DescriptorChain) -> Int {
        served.add(1, ordering: .relaxed)
        var walk = chain
        var total = 0
        while total < Self.requestLimit {
            let descriptor: DescriptorChain.Descriptor?
            do { descriptor = try walk.next() } catch { break }
            guard let descriptor else { break }
            guard descriptor.isWriteOnly, descriptor.length != 0 else { continue }
            let want = min(descriptor.bytes.count, Self.requestLimit - total)
            let got = source.fill(UnsafeMutableRawBufferPointer(rebasing: descriptor.bytes[0..<want]))
            total += got
            if got < want { break }
        }
        filled.add(UInt64(total), ordering: .relaxed)
        return total
    }
}

/// Where virtio-rng's bytes come from.
public protocol EntropySource: Sendable {
    /// Fills `buffer` with random bytes; returns how many were filled (fewer only on failure).
    func fill(_ buffer: UnsafeMutableRawBufferPointer) -> Int
}
