import Devices

extension FuzzTargets {
    /// virtio-rng (Devices' VirtioEntropy) behind the real virtio-pci transport, over fuzzed guest
    /// RAM and queue state, with an entropy source that fills a pattern and may come up short.
    ///
    /// Checks, besides no trap, no ASan report (guest RAM is `VirtioFuzzRAM`) and no timeout:
    /// every buffer the device asks the source to fill is inside guest RAM and at most the
    /// per-request limit; the `VirtioFuzzDriver` promises (no guest RAM written after a queue
    /// broke, one-line DEVICE_NEEDS_RESET reasons).
    ///
    /// Input: 2 source bytes [pattern seed, short-fill divisor (0: always full)], the
    /// `VirtioFuzzDriver` part (one queue), then guest RAM from address 0 (64 KiB). Backend events
    /// are doorbells here.
    static let virtioEntropy = FuzzTarget(
        name: "virtio-rng",
        summary: "virtio-rng requests over fuzzed guest RAM and queue state"
    ) { bytes in
        var input = FuzzInput(bytes)
        let source = FuzzEntropySource(seed: input.byte(), shortBy: input.byte())
        let device = VirtioEntropy(source: source)
        var driver = VirtioFuzzDriver(device: device)
        driver.read(&input)
        _ = VirtioFuzzRAM.shared.fill(with: input.remaining)
        driver.play { _ in
            if driver.transport.isActive { device.queueNotified(0) }
        }
        fuzzLog("virtio-rng: \(device.requests) requests, \(device.bytesProvided) bytes")
    }
}

/// Fills with `fillPattern(seed)`; with `shortBy` > 0 every buffer gets only
/// count - count / shortBy bytes (a getrandom that came up short).
struct FuzzEntropySource: EntropySource {
    let seed: UInt8
    let shortBy: UInt8

    func fill(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        VirtioFuzzRAM.shared.requireInside(buffer.baseAddress, count: buffer.count, "virtio-rng buffer")
        if buffer.count > VirtioEntropy.requestLimit { fatalError("virtio-rng: asked for \(buffer.count) bytes at once") }
        let count = shortBy == 0 ? buffer.count : buffer.count - buffer.count / Int(shortBy)
        fillPattern(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]), seed: seed)
        return count
    }
}
