#if canImport(Glibc)
import Glibc
#endif
import VMSpec
import KVM

// Interrupt and I/O notifiers: eventfd-based paths between devices that run off the vCPU threads
// (virtio back ends on an event loop) and the guest, with no vCPU exit in between.
//
// Descriptors are raw Int32 eventfds (e.g. `Host.EventFD.fd`) so this target needs no Host
// dependency; the caller owns them and must keep them open while attached. Every method is opt-in,
// explicit and safe from any thread; they need the in-kernel irqchip (call
// `createPlatformInterruptControllers()` first), except the I/O notifiers.

/// Which bus an I/O notifier watches.
public enum IONotifierSpace: Equatable, Sendable {
    /// Guest-physical memory writes (the address must not be RAM, or the guest never exits).
    case mmio
    /// x86 port I/O, ports 0...0xFFFF.
    case pio
}

/// A GSI that raises an MSI message: a write of `data` to `address` (x86: `0xFEEx_xxxx`,
/// destination APIC ID in bits 12-19; vector in data bits 0-7, delivery mode in bits 8-10).
public struct MSIRoute: Equatable, Sendable {
    public var gsi: UInt32
    public var address: UInt64
    public var data: UInt32

    public init(gsi: UInt32, address: UInt64, data: UInt32) {
        self.gsi = gsi
        self.address = address
        self.data = data
    }
}

/// What this KVM offers for notifiers (KVM_CHECK_EXTENSION), for callers that want to fall back
/// to exits and `setInterruptLine` rather than fail.
public struct NotifierSupport: Equatable, Sendable {
    /// KVM_IRQFD.
    public var interruptNotifiers: Bool
    /// KVM_IRQFD_FLAG_RESAMPLE (level-triggered interrupt notifiers).
    public var levelTriggeredInterruptNotifiers: Bool
    /// KVM_IOEVENTFD.
    public var ioNotifiers: Bool
    /// KVM_IOEVENTFD with length 0 (any access size).
    public var anyLengthIONotifiers: Bool
    /// KVM_SIGNAL_MSI.
    public var signalMSI: Bool
    /// KVM_SET_GSI_ROUTING: how many GSIs a routing table may name (0 = no routing).
    public var routableGSIs: Int
}

extension Machine {
    /// GSIs below this drive the PC irqchip pins (IOAPIC 0-23, PIC 0-15); MSI routes start here.
    public static let firstMSIRouteGSI: UInt32 = 24

    /// Queries the notifier capabilities of this KVM (a few KVM_CHECK_EXTENSION calls).
    public var notifierSupport: NotifierSupport {
        func value(_ cap: KVMSystem.Capability) -> Int32 { (try? system.capability(cap)) ?? 0 }
        return NotifierSupport(interruptNotifiers: value(.irqfd) > 0,
                               levelTriggeredInterruptNotifiers: value(.irqfdResample) > 0,
                               ioNotifiers: value(.ioeventfd) > 0,
                               anyLengthIONotifiers: value(.ioeventfdAnyLength) > 0,
                               signalMSI: value(.signalMSI) > 0,
                               routableGSIs: Int(max(value(.irqRouting), 0)))
    }

    // MARK: Interrupt notifiers (irqfd)

    /// Opt-in: every write to eventfd `eventFD` raises `gsi` in the kernel, as an edge (KVM_IRQFD):
    /// the irqchip pin(s) of GSIs 0-23, or the MSI that `setMSIRoutes` gave the GSI. A device
    /// thread then interrupts the guest with one `write`, no vCPU exit or ioctl. With `resampleFD`
    /// the line is level-triggered: KVM keeps it asserted until the guest EOIs, then lowers it and
    /// signals `resampleFD`, and the device re-signals `eventFD` if its interrupt is still pending
    /// (irqchip GSIs only). Closing `eventFD` detaches it too; otherwise call
    /// `detachInterruptNotifier` while `eventFD` is still open.
    public func attachInterruptNotifier(_ eventFD: Int32, gsi: UInt32, resampleFD: Int32? = nil) throws(HypervisorError) {
        try require(.irqfd, "interrupt notifiers (KVM_IRQFD)")
        if resampleFD != nil { try require(.irqfdResample, "level-triggered interrupt notifiers (KVM_IRQFD_FLAG_RESAMPLE)") }
        do { try vm.assignIRQFD(eventFD, gsi: gsi, resampleFD: resampleFD) } catch {
            throw notifierError(error, hint: "needs createPlatformInterruptControllers() first; GSI \(gsi) must not already have this eventfd")
        }
    }

    /// Undoes `attachInterruptNotifier(eventFD, gsi: gsi)`.
    public func detachInterruptNotifier(_ eventFD: Int32, gsi: UInt32) throws(HypervisorError) {
        do { try vm.deassignIRQFD(eventFD, gsi: gsi) } catch {
            throw notifierError(error, hint: "no interrupt notifier with this eventfd on GSI \(gsi)")
        }
    }

    // MARK: I/O notifiers (ioeventfd)

    /// Opt-in: a guest write of `length` bytes (1, 2, 4 or 8; 0 = any size) to `address` in
    /// `space` signals eventfd `eventFD` and resumes the guest at once, instead of exiting to this
    /// process (KVM_IOEVENTFD). Meant for doorbells such as a virtio queue notify register, whose
    /// device thread then drains the eventfd. With `datamatch`, only writes of that value match
    /// (e.g. one queue index per eventfd); other writes exit as usual. The written value is not
    /// kept. Reads are not affected. Closing `eventFD` does not detach it.
    public func attachIONotifier(_ eventFD: Int32, address: UInt64, length: Int, space: IONotifierSpace,
                                 datamatch: UInt64? = nil) throws(HypervisorError) {
        try require(.ioeventfd, "I/O notifiers (KVM_IOEVENTFD)")
        if length == 0 { try require(.ioeventfdAnyLength, "any-length I/O notifiers (KVM_CAP_IOEVENTFD_ANY_LENGTH)") }
        do {
            try vm.assignIOEventFD(eventFD, address: address, length: length, space: space.kvm, datamatch: datamatch)
        } catch {
            throw notifierError(error, hint: "an identical I/O notifier may already exist at \(address.hexString)")
        }
    }

    /// Undoes `attachIONotifier` with the same arguments.
    public func detachIONotifier(_ eventFD: Int32, address: UInt64, length: Int, space: IONotifierSpace,
                                 datamatch: UInt64? = nil) throws(HypervisorError) {
        do {
            try vm.deassignIOEventFD(eventFD, address: address, length: length, space: space.kvm, datamatch: datamatch)
        } catch {
            throw notifierError(error, hint: "no I/O notifier with these arguments at \(address.hexString)")
        }
    }

    // MARK: MSI

    /// Injects one MSI message now (KVM_SIGNAL_MSI), e.g. for an MSI-X vector without a route.
    /// True when it reached a local APIC; false when the guest blocked it (no APIC matches the
    /// destination, or the APIC is software-disabled). Safe from any thread.
    public func signalMSI(address: UInt64, data: UInt32) throws(HypervisorError) -> Bool {
        do { return try vm.signalMSI(address: address, data: data) } catch {
            // Capability checked only on failure: this is a per-interrupt path.
            try require(.signalMSI, "KVM_SIGNAL_MSI")
            throw notifierError(error, hint: "needs createPlatformInterruptControllers() first")
        }
    }

    /// Routes each `routes[i].gsi` to its MSI message, so an interrupt notifier on that GSI
    /// raises the MSI (KVM_SET_GSI_ROUTING). KVM replaces the whole routing table on every call,
    /// so this sends KVM's default PC wiring for GSIs 0-23 (IOAPIC pin = GSI; PIC pins for 0-15)
    /// followed by `routes`: pass the complete MSI set each time; an empty array restores the
    /// defaults. GSIs must be unique, at least `firstMSIRouteGSI`, and below what the kernel allows.
    public func setMSIRoutes(_ routes: [MSIRoute]) throws(HypervisorError) {
        let limit = try require(.irqRouting, "GSI routing (KVM_SET_GSI_ROUTING)")
        let room = GSIRoute.maximumTableSize - GSIRoute.pcDefaults.count
        guard routes.count <= room else {
            throw HypervisorError(.invalidArgument, "\(routes.count) MSI routes, at most \(room)")
        }
        var seen = Set<UInt32>()
        for route in routes {
            guard route.gsi >= Self.firstMSIRouteGSI, Int64(route.gsi) < Int64(limit) else {
                throw HypervisorError(.invalidArgument,
                                      "MSI route GSI \(route.gsi) outside \(Self.firstMSIRouteGSI)..<\(limit)")
            }
            guard seen.insert(route.gsi).inserted else {
                throw HypervisorError(.invalidArgument, "MSI route GSI \(route.gsi) given twice")
            }
        }
        let table = GSIRoute.pcDefaults + routes.map { GSIRoute.msi(gsi: $0.gsi, address: $0.address, data: $0.data) }
        do { try vm.setGSIRouting(table) } catch {
            throw notifierError(error, hint: "needs createPlatformInterruptControllers() first")
        }
    }

    // MARK: Helpers

    /// Throws `.unsupported` naming `what` unless KVM reports `cap`; returns the reported value.
    @discardableResult
    private func require(_ cap: KVMSystem.Capability, _ what: String) throws(HypervisorError) -> Int32 {
        let value: Int32
        do { value = try system.capability(cap) } catch { throw HypervisorError(error) }
        guard value > 0 else { throw HypervisorError(.unsupported, "this KVM does not support \(what)") }
        return value
    }

    /// Argument errors found before the ioctl become `.invalidArgument`; a kernel EINVAL/EEXIST/
    /// ENOENT gets `hint`, the likely cause.
    private func notifierError(_ error: KVMError, hint: String) -> HypervisorError {
        if error.errno == 0 { return HypervisorError(.invalidArgument, error.description) }
        var e = HypervisorError(error)
        if [EINVAL, EEXIST, ENOENT].contains(error.errno) { e.message += " (\(hint))" }
        if [EEXIST, ENOENT].contains(error.errno) { e.code = .invalidArgument }
        return e
    }
}

extension IONotifierSpace {
    var kvm: IOEventSpace {
        switch self {
        case .mmio: .mmio
        case .pio: .pio
        }
    }
}

let EEXIST: Int32 = 17
let EINVAL: Int32 = 22

