#if canImport(Glibc)
import Glibc
#endif

/// Where a virtio-net device's frames leave and arrive: one frame per call, each preceded by the
/// 12-byte struct virtio_net_hdr (VIRTIO 1.2 5.1.6), gathered from and scattered to iovecs that
/// point straight into guest buffers. Backends implements it with a tap in vnet-header mode.
public protocol NetBackend: AnyObject, Sendable {
    /// What the device's event loop polls: readable while input is enabled and a frame waits.
    var readinessSource: Int32 { get }
    /// Switches input readiness on or off, so frames left waiting (no receive buffers, device not
    /// activated) do not wake the loop over and over.
    func setInputEnabled(_ enabled: Bool)
    /// Reads one frame into `vectors[0..<count]`. Returns the frame's full length (more than the
    /// vectors hold when it was truncated), 0 when nothing is waiting, negative when the back end
    /// failed for good (the tap went away).
    func receive(_ vectors: UnsafeMutablePointer<iovec>, count: Int) -> Int
    /// Writes one frame gathered from `vectors[0..<count]`. Returns the bytes written, or a
    /// negative number when the frame was refused.
    func send(_ vectors: UnsafeMutablePointer<iovec>, count: Int) -> Int
    /// Which offloads the guest accepts on receive (TUNSETOFFLOAD flags). nil, or why not.
    func setReceiveOffloads(_ flags: UInt32) -> String?
}
