import GuestMemory
import KVM
import Synchronization

/// Register and CPUID types of the x86 guest state, defined in the KVM layer as plain Swift values.
public typealias Registers = X86Registers
public typealias SpecialRegisters = X86SpecialRegisters
public typealias Segment = X86Segment
public typealias DescriptorTable = X86DescriptorTable
public typealias CPUIDLeaf = CPUIDEntry

/// Documented limits of one machine (NVMM documents 128 VMs, 256 vCPUs, 128 GiB; we report what
/// the running kernel allows).
public struct MachineLimits: Equatable, Sendable {
    /// Recommended vCPUs per VM (KVM_CAP_NR_VCPUS).
    public var recommendedVCPUs: Int
    /// Hard maximum vCPUs per VM (KVM_CAP_MAX_VCPUS).
    public var maximumVCPUs: Int
    /// Memory slots per VM (KVM_CAP_NR_MEMSLOTS).
    public var memorySlots: Int

    /// What the KVM device at `devicePath` allows, without creating a machine.
    public init(devicePath: String = "/dev/kvm") throws(HypervisorError) {
        do { try self.init(try KVMSystem(path: devicePath)) } catch { throw HypervisorError(error) }
    }

    init(_ system: KVMSystem) throws(KVMError) {
        let recommended = Int(try system.capability(.nrVCPUs))
        let maximum = Int(try system.capability(.maxVCPUs))
        recommendedVCPUs = max(recommended, 1)
        maximumVCPUs = max(maximum, recommended, 1)
        memorySlots = Int(try system.capability(.nrMemslots))
    }
}

/// A virtual machine: guest memory mapped into slots, and vCPUs created on request. Nothing runs
/// unless the caller asks: no devices, no interrupt controller, no implicit assists.
public final class Machine: @unchecked Sendable {
    public let limits: MachineLimits
    let system: KVMSystem
    let vm: KVMVirtualMachine
    /// What is mapped where; changed by `map`/`unmap` (the C ABI's callers map as they go).
    private let mappings: Mutex<(table: MemoryMappings, memory: GuestMemory)>

    /// The guest memory the mappings make now (the regions given at creation, unless changed).
    public var memory: GuestMemory { mappings.withLock { $0.memory } }

    /// Opens the KVM device and creates a VM with no memory; map it with `map`.
    public convenience init(devicePath: String = "/dev/kvm") throws(HypervisorError) {
        try self.init(memory: try! GuestMemory(regions: []), devicePath: devicePath)
    }

    /// Opens the KVM device, creates an empty VM and maps every region of `memory`.
    public init(memory: GuestMemory, devicePath: String = "/dev/kvm") throws(HypervisorError) {
        do {
            system = try KVMSystem(path: devicePath)
            vm = try system.createVM()
            limits = try MachineLimits(system)
            guard memory.regions.count <= limits.memorySlots else {
                throw HypervisorError(.unsupported, "\(memory.regions.count) memory regions, KVM allows \(limits.memorySlots)")
            }
            var table = MemoryMappings(slotLimit: limits.memorySlots)
            for (slot, region) in memory.regions.enumerated() {
                try vm.setUserMemoryRegion(slot: UInt32(slot), guestAddress: region.base.rawValue,
                                           size: region.size, hostAddress: region.host)
                table.insert(MemoryMapping(slot: UInt32(slot), guestAddress: region.base.rawValue, size: region.size,
                                           hostAddress: UInt(bitPattern: region.host), readOnly: false))
            }
            mappings = Mutex((table, memory))
        } catch let error as KVMError {
            throw HypervisorError(error)
        } catch let error as HypervisorError {
            throw error
        } catch {
            throw HypervisorError(.kernel, "\(error)")
        }
    }

    /// Maps `size` bytes of the caller's memory at `host` into guest-physical space at
    /// `guestAddress` (all page-aligned, no overlap). The memory must outlive the mapping.
    public func map(guestAddress: UInt64, host: UnsafeMutableRawPointer?, size: UInt64, readOnly: Bool = false) throws(HypervisorError) {
        try mappings.withLock { state throws(HypervisorError) in
            let mapping = try state.table.proposed(guestAddress: guestAddress, size: size,
                                                   hostAddress: UInt(bitPattern: host), readOnly: readOnly)
            do throws(KVMError) {
                try vm.setUserMemoryRegion(slot: mapping.slot, guestAddress: guestAddress, size: size, hostAddress: host!, readOnly: readOnly)
            } catch { throw HypervisorError(error) }
            state.table.insert(mapping)
            state.memory = state.table.guestMemory
        }
    }

    /// Removes the mapping that starts at `guestAddress` and is `size` bytes long.
    public func unmap(guestAddress: UInt64, size: UInt64) throws(HypervisorError) {
        try mappings.withLock { state throws(HypervisorError) in
            let mapping = try state.table.existing(guestAddress: guestAddress, size: size)
            do throws(KVMError) { try vm.deleteUserMemoryRegion(slot: mapping.slot) } catch { throw HypervisorError(error) }
            state.table.remove(mapping)
            state.memory = state.table.guestMemory
        }
    }

    /// The current mappings, sorted by guest address.
    public var memoryMappings: [MemoryMapping] { mappings.withLock { $0.table.mappings } }

    /// The guest-physical ranges mapped read-only (see `MMIOAssist.Context.readOnlyRanges`).
    public var readOnlyRanges: [Range<UInt64>] { mappings.withLock { $0.table.readOnlyRanges } }

    /// Opt-in: in-kernel PIC + IOAPIC + local APICs, and the i8254 PIT, as a PC has. Must be
    /// called before any vCPU is created. TSS/identity-map pages go just below 4 GiB (Intel needs them).
    public func createPlatformInterruptControllers() throws(HypervisorError) {
        do {
            try vm.setIdentityMapAddress(0xFFFB_C000)
            try vm.setTSSAddress(0xFFFB_D000)
            try vm.createIRQChip()
            try vm.createPIT()
        } catch { throw HypervisorError(error) }
    }

    /// Drives ISA IRQ / GSI `line` of the in-kernel irqchip. Safe from any thread.
    @inline(__always)
    public func setInterruptLine(_ line: UInt32, high: Bool) throws(HypervisorError) {
        do { try vm.setIRQLine(line, level: high) } catch { throw HypervisorError(error) }
    }

    /// Creates vCPU `index` (0-based).
    public func createVCPU(index: Int) throws(HypervisorError) -> VCPU {
        guard index >= 0, index < limits.maximumVCPUs else {
            throw HypervisorError(.invalidArgument, "vCPU index \(index) outside 0..<\(limits.maximumVCPUs)")
        }
        do {
            return VCPU(try vm.createVCPU(id: UInt32(index)), index: index)
        } catch {
            throw HypervisorError(error)
        }
    }

    /// The CPUID leaves this KVM supports; callers adjust and pass them to `VCPU.setCPUID`.
    public func supportedCPUID() throws(HypervisorError) -> [CPUIDLeaf] {
        do { return try system.supportedCPUID() } catch { throw HypervisorError(error) }
    }

    /// Whether KVM can emulate the TSC-deadline timer even when CPUID does not list it.
    public var hasTSCDeadlineTimer: Bool { ((try? system.capability(.tscDeadlineTimer)) ?? 0) > 0 }
}
