import CSwiftlet
import Hypervisor

// The library, machine and memory functions of swiftlet.h (version 1). Each validates every
// argument, returns a status through `abiCall`, and never traps: a trap would kill the client.

@_cdecl("swiftlet_open")
public func swiftlet_open(_ version: UInt32) -> Int32 {
    abiCall { () throws(ABIError) in
        guard version != 0, version <= ABIVersion.current else {
            throw ABIError(SWIFTLET_E_VERSION, "ABI version \(version) asked for; this library implements 1 to \(ABIVersion.current)")
        }
        ABIRegistry.openedVersion.store(version, ordering: .relaxed)
    }
}

@_cdecl("swiftlet_abi_version")
public func swiftlet_abi_version() -> UInt32 { ABIVersion.current }

@_cdecl("swiftlet_last_error")
public func swiftlet_last_error(_ buffer: UnsafeMutablePointer<CChar>?, _ size: Int) -> Int {
    cswiftlet_copy_error(buffer, size)
}

@_cdecl("swiftlet_capabilities")
public func swiftlet_capabilities(_ capabilities: UnsafeMutablePointer<swiftlet_capabilities>?) -> Int32 {
    abiCall { () throws(ABIError) in
        try ABIRegistry.requireOpen()
        let out = try sized(capabilities, "swiftlet_capabilities", version1Size: ABIVersion.capabilitiesSize)
        let limits = try ABIRegistry.hostLimits()
        out.pointee.abi_version = ABIVersion.current
        out.pointee.max_machines = UInt32(ABIRegistry.machineLimit)
        out.pointee.max_vcpus = UInt32(clamping: limits.maximumVCPUs)
        out.pointee.recommended_vcpus = UInt32(clamping: limits.recommendedVCPUs)
        out.pointee.max_mappings = UInt32(clamping: limits.memorySlots)
        out.pointee.page_size = 4096
        out.pointee.assists = UInt64(SWIFTLET_ASSIST_IO | SWIFTLET_ASSIST_MEM)
    }
}

@_cdecl("swiftlet_machine_create")
public func swiftlet_machine_create(_ flags: UInt32, _ machine: UnsafeMutablePointer<UInt64>?) -> Int32 {
    abiCall { () throws(ABIError) in
        try ABIRegistry.requireOpen()
        let out = try required(machine, "machine")
        guard flags & ~UInt32(SWIFTLET_MACHINE_IRQCHIP) == 0 else {
            throw ABIError.invalid("unknown machine flags \(flags & ~UInt32(SWIFTLET_MACHINE_IRQCHIP))")
        }
        // Refuse before opening anything, so a client over the limit leaks no descriptor.
        guard ABIRegistry.machines.count < ABIRegistry.machineLimit else {
            throw ABIError(SWIFTLET_E_LIMIT, "\(ABIRegistry.machineLimit) machines exist already, the most one process may hold")
        }
        let hasIRQChip = flags & UInt32(SWIFTLET_MACHINE_IRQCHIP) != 0
        let created = try ABIError.wrap { () throws(HypervisorError) in
            let m = try Machine()
            if hasIRQChip { try m.createPlatformInterruptControllers() }
            return m
        }
        out.pointee = try ABIRegistry.machines.insert(ABIMachine(machine: created, hasIRQChip: hasIRQChip))
    }
}

@_cdecl("swiftlet_machine_destroy")
public func swiftlet_machine_destroy(_ machine: UInt64) -> Int32 {
    abiCall { () throws(ABIError) in
        try ABIRegistry.requireOpen()
        _ = try ABIRegistry.machines.remove(machine) { (m: ABIMachine) throws(ABIError) in
            try m.members.withLock { members throws(ABIError) in
                for handle in members.vcpus {
                    if let vcpu = try? ABIRegistry.vcpus.lookup(handle), vcpu.isBusy {
                        throw ABIError(SWIFTLET_E_BUSY, "vCPU \(vcpu.vcpu.index) of the machine is running")
                    }
                }
                for handle in members.vcpus { _ = try? ABIRegistry.vcpus.remove(handle) }
                members.vcpus.removeAll()
                members.destroyed = true
            }
        }
    }
}

@_cdecl("swiftlet_machine_map")
public func swiftlet_machine_map(_ machine: UInt64, _ gpa: UInt64, _ host: UnsafeMutableRawPointer?, _ size: UInt64, _ flags: UInt32) -> Int32 {
    abiCall { () throws(ABIError) in
        let m = try ABIRegistry.machine(machine)
        guard flags & ~UInt32(SWIFTLET_MAP_READONLY) == 0 else {
            throw ABIError.invalid("unknown mapping flags \(flags & ~UInt32(SWIFTLET_MAP_READONLY))")
        }
        try ABIError.wrap { () throws(HypervisorError) in
            try m.machine.map(guestAddress: gpa, host: host, size: size, readOnly: flags & UInt32(SWIFTLET_MAP_READONLY) != 0)
        }
    }
}

@_cdecl("swiftlet_machine_unmap")
public func swiftlet_machine_unmap(_ machine: UInt64, _ gpa: UInt64, _ size: UInt64) -> Int32 {
    abiCall { () throws(ABIError) in
        let m = try ABIRegistry.machine(machine)
        try ABIError.wrap { () throws(HypervisorError) in try m.machine.unmap(guestAddress: gpa, size: size) }
    }
}

@_cdecl("swiftlet_machine_irq_line")
public func swiftlet_machine_irq_line(_ machine: UInt64, _ line: UInt32, _ level: UInt32) -> Int32 {
    abiCall { () throws(ABIError) in
        let m = try ABIRegistry.machine(machine)
        guard m.hasIRQChip else { throw ABIError.invalid("the machine was created without SWIFTLET_MACHINE_IRQCHIP") }
        guard level <= 1 else { throw ABIError.invalid("interrupt level \(level) (0 or 1)") }
        try ABIError.wrap { () throws(HypervisorError) in try m.machine.setInterruptLine(line, high: level == 1) }
    }
}
