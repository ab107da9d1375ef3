import Devices
import Host

/// virtio-rng's bytes from the kernel's random source (getrandom(2), the urandom pool).
public struct KernelEntropy: EntropySource {
    public init() {}
    public func fill(_ buffer: UnsafeMutableRawBufferPointer) -> Int { fillRandom(buffer) }
}

extension VirtioEntropy {
    /// A device fed by the kernel's random source.
    public convenience init() { self.init(source: KernelEntropy()) }
}
