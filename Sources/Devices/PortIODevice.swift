/// A device that claims a range of x86 I/O ports. The `IOBus` calls it with the offset of the
/// access inside the range it was registered with, so one device type can sit at any base.
///
/// Dispatch may come from several vCPU threads at once (and a device may also be touched by a
/// console-input or event-loop thread), so every implementation protects its own state; the bus
/// takes no lock. `size` is the access width in bytes (1, 2 or 4); the bus truncates what `read`
/// returns to that width, so a byte-wide device may simply return its byte.
public protocol PortIODevice: AnyObject, Sendable {
    /// An IN from `offset` within the device's range.
    func read(offset: UInt16, size: Int) -> UInt32
    /// An OUT to `offset` within the device's range; `value` holds `size` bytes, little-endian.
    func write(offset: UInt16, size: Int, value: UInt32)
}

/// One interrupt input of the guest's interrupt controller, as seen by a device.
///
/// The VMM implements it with KVM_IRQ_LINE; tests implement it with a recorder. Devices keep
/// track of the level they last drove and call `setLevel` only on a change, while holding their
/// own lock so that level changes from different threads reach the controller in order.
/// An implementation therefore must not call back into the device that drives it.
public protocol InterruptLine: Sendable {
    /// Drives the line high (asserted) or low.
    func setLevel(_ high: Bool)
}

extension InterruptLine {
    /// Raises an edge-triggered ISA interrupt: the controller latches the rising edge, and
    /// dropping the line again at once leaves it ready for the next edge.
    public func pulse() {
        setLevel(true)
        setLevel(false)
    }
}
