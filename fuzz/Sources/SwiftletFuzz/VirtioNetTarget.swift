import Devices
#if canImport(Glibc)
import Glibc
#endif

extension FuzzTargets {
    /// virtio-net's receive and transmit paths (Devices' VirtioNet and NetReceiveBuffers) behind
    /// the real virtio-pci transport, over fuzzed guest RAM and queue state (mergeable buffers or
    /// not, offloads, event index), with a fake tap: it takes every frame the device sends, and
    /// delivers frames of fuzzed lengths (runts, jumbo, over 64 KiB, truncated ones) when a
    /// back-end event says they arrived, then the device is woken as by its readiness source.
    ///
    /// Checks, besides no trap, no ASan report (guest RAM is `VirtioFuzzRAM`) and no timeout:
    /// - every iovec the device hands the tap is inside guest RAM; a sent frame is at most
    ///   65562 bytes in at most 1024 vectors; a receive offers 1...1024 vectors;
    /// - the `VirtioFuzzDriver` promises (no guest RAM written after a queue broke, one-line
    ///   DEVICE_NEEDS_RESET reasons).
    ///
    /// Input: 2 tap bytes [offload refusal flag, send refusal flag], the `VirtioFuzzDriver` part
    /// (two queues: rx, tx), then guest RAM from address 0 (64 KiB). A backend event queues
    /// a % 4 + 1 frames of length b % 2^17 filled from seed arg (arg 255: the tap fails instead).
    static let virtioNet = FuzzTarget(
        name: "virtio-net",
        summary: "virtio-net rx and tx over fuzzed guest RAM and queue state, a fake tap"
    ) { bytes in
        var input = FuzzInput(bytes)
        let tap = FuzzTap.shared
        tap.reset(refusesOffloads: input.bool(), refusesFrames: input.bool())
        let device = try! VirtioNet(backend: tap, mac: [0x02, 0, 0, 0, 0, 1])
        var driver = VirtioFuzzDriver(device: device)
        driver.read(&input)
        _ = VirtioFuzzRAM.shared.fill(with: input.remaining)
        driver.play { event in
            tap.arrive(count: Int(event.a % 4) + 1, length: Int(event.b % (1 << 17)), seed: event.arg)
            device.eventSourceReady(0)
        }
        fuzzLog("virtio-net: rx \(device.rxFrames) frames \(device.rxBytes) bytes, tx \(device.txFrames) frames \(device.txBytes) bytes, \(device.dropped) dropped")
    }
}

/// A tap for virtio-net that checks what the device hands it. Reset per input.
final class FuzzTap: NetBackend, @unchecked Sendable {
    static let shared = FuzzTap()

    private struct Frame { var length: Int; var seed: UInt8 }
    private var frames: [Frame] = []
    private var refusesOffloads = false
    private var refusesFrames = false
    private(set) var inputEnabled = false

    var readinessSource: Int32 { -1 }

    func reset(refusesOffloads: Bool, refusesFrames: Bool) {
        frames.removeAll(keepingCapacity: true)
        self.refusesOffloads = refusesOffloads
        self.refusesFrames = refusesFrames
        inputEnabled = false
    }

    /// Frames wait in the tap (at most 16) until the device reads them.
    func arrive(count: Int, length: Int, seed: UInt8) {
        for _ in 0..<count where frames.count < 16 { frames.append(Frame(length: length, seed: seed)) }
    }

    func setInputEnabled(_ enabled: Bool) { inputEnabled = enabled }

    private func requireVectors(_ vectors: UnsafeMutablePointer<iovec>, count: Int, _ what: String) -> Int {
        guard count >= 1, count <= 1024 else { fatalError("virtio-net: \(what) with \(count) vectors") }
        var total = 0
        for i in 0..<count {
            VirtioFuzzRAM.shared.requireInside(vectors[i].iov_base, count: vectors[i].iov_len, "virtio-net \(what) vector \(i)")
            total += vectors[i].iov_len
        }
        return total
    }

    func receive(_ vectors: UnsafeMutablePointer<iovec>, count: Int) -> Int {
        _ = requireVectors(vectors, count: count, "receive")
        guard !frames.isEmpty else { return 0 }
        let frame = frames.removeFirst()
        if frame.seed == 255 { return -1 }
        // What readv would do: fill the vectors in order with as much of the frame as fits.
        var left = frame.length, seed = frame.seed
        for i in 0..<count where left > 0 {
            let n = min(left, vectors[i].iov_len)
            fillPattern(UnsafeMutableRawBufferPointer(start: vectors[i].iov_base, count: n), seed: seed)
            seed &+= UInt8(truncatingIfNeeded: n)
            left -= n
        }
        return frame.length
    }

    func send(_ vectors: UnsafeMutablePointer<iovec>, count: Int) -> Int {
        let total = requireVectors(vectors, count: count, "send")
        if total > 65562 { fatalError("virtio-net: sent a frame of \(total) bytes") }
        for i in 0..<count { _ = touch(UnsafeRawBufferPointer(start: vectors[i].iov_base, count: vectors[i].iov_len)) }
        return refusesFrames ? -1 : total
    }

    func setReceiveOffloads(_ flags: UInt32) -> String? { refusesOffloads && flags != 0 ? "refused by the fuzz tap" : nil }
}
