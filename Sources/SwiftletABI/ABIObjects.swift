import CSwiftlet
import Host
import Hypervisor
import Synchronization

/// A machine behind a `swiftlet_machine_t`: the Hypervisor machine, the handles of its vCPUs
/// (destroyed with it) and what it was created with.
final class ABIMachine: @unchecked Sendable {
    let machine: Machine
    let hasIRQChip: Bool
    /// Its vCPUs' handles; `destroyed` once swiftlet_machine_destroy took it, so a vCPU created
    /// concurrently is refused instead of outliving its handle's owner unseen.
    let members = Mutex<(vcpus: Set<UInt64>, destroyed: Bool)>(([], false))
    /// KVM's supported CPUID, asked once per machine (on a nested or emulating KVM each query
    /// traps dozens of host CPUIDs) and given to every vCPU it creates.
    let supportedCPUID = Mutex<[CPUIDLeaf]?>(nil)

    init(machine: Machine, hasIRQChip: Bool) {
        self.machine = machine
        self.hasIRQChip = hasIRQChip
    }

    func cpuid() throws(HypervisorError) -> [CPUIDLeaf] {
        try supportedCPUID.withLock { cached throws(HypervisorError) in
            if let cached { return cached }
            let leaves = try machine.supportedCPUID()
            cached = leaves
            return leaves
        }
    }
}

/// A vCPU behind a `swiftlet_vcpu_t`. One thread at a time may run it or touch its state
/// (`claim`): KVM would block a second ioctl until KVM_RUN returns, which for a halted guest
/// may be never, so the second caller gets SWIFTLET_E_BUSY at once instead.
final class ABIVCPU: @unchecked Sendable {
    let vcpu: VCPU
    let owner: ABIMachine
    private let busy = Atomic<Bool>(false)
    // Touched only by the thread holding the claim.
    /// The reason and payload of the last exit `run` returned, which the assists serve (they
    /// trust this, not the caller's copy of the exit).
    var lastExit: VMExit?
    /// The thread the vCPU was last run on, for kicks: re-recorded only when it changes, so
    /// a run costs no signal-mask system call.
    var runningThread: ThreadHandle?

    init(vcpu: VCPU, owner: ABIMachine) {
        self.vcpu = vcpu
        self.owner = owner
    }

    var isBusy: Bool { busy.load(ordering: .acquiring) }

    /// Runs `body` holding the vCPU, or throws SWIFTLET_E_BUSY if another thread holds it.
    @inline(__always)
    func claim<T>(_ body: () throws(ABIError) -> T) throws(ABIError) -> T {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            throw ABIError(SWIFTLET_E_BUSY, "vCPU \(vcpu.index) is running or in use on another thread")
        }
        defer { busy.store(false, ordering: .releasing) }
        return try body()
    }

    /// A Hypervisor call on the vCPU, holding it (`claim`), its failure as an ABI status.
    @inline(__always)
    func hold<T>(_ body: (VCPU) throws(HypervisorError) -> T) throws(ABIError) -> T {
        try claim { () throws(ABIError) in try ABIError.wrap { () throws(HypervisorError) in try body(vcpu) } }
    }
}

/// A struct of swiftlet.h that starts with its `size`.
protocol SizedABIStruct { var size: UInt32 { get } }
extension swiftlet_capabilities: SizedABIStruct {}
extension swiftlet_regs: SizedABIStruct {}
extension swiftlet_sregs: SizedABIStruct {}
extension swiftlet_fpu: SizedABIStruct {}
extension swiftlet_exit: SizedABIStruct {}

/// A required struct argument whose `size` covers version 1 (SWIFTLET_E_INVALID if NULL,
/// SWIFTLET_E_STRUCT_SIZE if too small); `name` is its C name.
@inline(__always)
func sized<S: SizedABIStruct>(_ pointer: UnsafePointer<S>?, _ name: StaticString, version1Size: UInt32) throws(ABIError) -> UnsafePointer<S> {
    guard let pointer else { throw ABIError.invalid("\(name) is NULL") }
    try ABIVersion.check(pointer.pointee.size, atLeast: version1Size, name)
    return pointer
}

@inline(__always)
func sized<S: SizedABIStruct>(_ pointer: UnsafeMutablePointer<S>?, _ name: StaticString, version1Size: UInt32) throws(ABIError) -> UnsafeMutablePointer<S> {
    UnsafeMutablePointer(mutating: try sized(UnsafePointer(pointer), name, version1Size: version1Size))
}

/// The process-wide state of the C ABI: the version the client opened, and the handle tables.
public enum ABIRegistry {
    /// The ABI version swiftlet_open accepted; 0 until then.
    static let openedVersion = Atomic<UInt32>(0)
    /// Machines one process may hold (each keeps two descriptors open, plus one per vCPU).
    static let machineLimit = 1024
    static let machines = HandleTable<ABIMachine>(kind: 0x4D, name: "machine", limit: machineLimit)
    static let vcpus = HandleTable<ABIVCPU>(kind: 0x56, name: "vCPU", limit: 1 << 20)
    /// KVM's limits, asked once.
    static let limits = Mutex<MachineLimits?>(nil)

    public static func requireOpen() throws(ABIError) {
        guard openedVersion.load(ordering: .relaxed) != 0 else {
            throw ABIError(SWIFTLET_E_NOT_OPEN, "swiftlet_open has not been called")
        }
    }

    static func hostLimits() throws(ABIError) -> MachineLimits {
        try limits.withLock { cached throws(ABIError) in
            if let cached { return cached }
            do throws(HypervisorError) {
                let fresh = try MachineLimits()
                cached = fresh
                return fresh
            } catch { throw ABIError(error) }
        }
    }

    @inline(__always)
    static func machine(_ handle: UInt64) throws(ABIError) -> ABIMachine {
        try requireOpen()
        return try machines.lookup(handle)
    }

    @inline(__always)
    static func vcpu(_ handle: UInt64) throws(ABIError) -> ABIVCPU {
        try requireOpen()
        return try vcpus.lookup(handle)
    }
}

/// A required pointer argument, or SWIFTLET_E_INVALID naming it.
@inline(__always)
public func required<T>(_ pointer: T?, _ name: StaticString) throws(ABIError) -> T {
    guard let pointer else { throw ABIError.invalid("\(name) is NULL") }
    return pointer
}

extension ABIError {
    /// A Hypervisor call's failure as an ABI status.
    @inline(__always)
    static func wrap<T>(_ body: () throws(HypervisorError) -> T) throws(ABIError) -> T {
        do { return try body() } catch { throw ABIError(error) }
    }
}
