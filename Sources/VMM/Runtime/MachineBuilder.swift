import GuestMemory
import Hypervisor

/// The building every guest kind shares, written once: guest memory in the kind's regions, the
/// KVM machine with them as its memory slots, the lifecycle (with the kind's log) and vCPUs with
/// CPUID. The kind supplies only its memory layout, its loader (what it writes into memory and
/// each vCPU's first registers) and the devices it attaches.
struct MachineBuilder {
    let memory: GuestMemory
    let machine: Machine
    let lifecycle: VMLifecycle

    /// Allocates `regions` (in order; the first is guest RAM at 0) and creates the machine over
    /// them. A failed allocation is a host error whose text starts with `allocationContext`
    /// (solo5-hvt's "Error allocating guest memory: " for hvt).
    init(regions: [(base: UInt64, size: UInt64)], hugePages: Bool, kvmDevice: String, log: VMMLog,
         allocationContext: String = "") throws(VMMError) {
        do {
            memory = try GuestMemory(regions: regions.map { r throws(GuestMemoryError) in
                try GuestMemoryRegion(base: GuestAddress(r.base), size: r.size, hugePages: hugePages)
            })
        } catch { throw VMMError(.host, allocationContext + "\(error)") }
        do { machine = try Machine(memory: memory, devicePath: kvmDevice) } catch {
            throw VMMError(.hypervisor, error.message)
        }
        lifecycle = VMLifecycle(log: log)
    }

    /// Creates vCPUs 0..<count, each with the CPUID `leaves` makes of what KVM supports (as is,
    /// by default). The kind then sets their registers and anything else it needs.
    func createVCPUs(_ count: Int, leaves: (_ supported: [CPUIDLeaf], _ index: Int) -> [CPUIDLeaf] = { supported, _ in supported })
        throws(HypervisorError) -> [VCPU] {
        let supported = try machine.supportedCPUID()
        var vcpus: [VCPU] = []
        for index in 0..<count {
            let vcpu = try machine.createVCPU(index: index)
            try vcpu.setCPUID(leaves(supported, index))
            vcpus.append(vcpu)
        }
        return vcpus
    }
}
