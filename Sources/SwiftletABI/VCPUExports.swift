import CSwiftlet
import Host
import Hypervisor
import VMSpec

// The vCPU functions of swiftlet.h (version 1): creation, register state, running, kicks,
// interrupts and translation. Everything but kick holds the vCPU (`ABIVCPU.claim`).

@_cdecl("swiftlet_vcpu_create")
public func swiftlet_vcpu_create(_ machine: UInt64, _ index: UInt32, _ vcpu: UnsafeMutablePointer<UInt64>?) -> Int32 {
    abiCall { () throws(ABIError) in
        let m = try ABIRegistry.machine(machine)
        let out = try required(vcpu, "vcpu")
        guard Int(index) < m.machine.limits.maximumVCPUs else {
            throw ABIError.invalid("vCPU index \(index): KVM allows 0 to \(m.machine.limits.maximumVCPUs - 1)")
        }
        let created = try ABIError.wrap { () throws(HypervisorError) in
            let v = try m.machine.createVCPU(index: Int(index))
            try v.setCPUID(try m.cpuid())
            if m.hasIRQChip { try v.configureLocalInterrupts() }
            return v
        }
        out.pointee = try m.members.withLock { members throws(ABIError) in
            guard !members.destroyed else { throw ABIError(SWIFTLET_E_HANDLE, "the machine was destroyed") }
            let handle = try ABIRegistry.vcpus.insert(ABIVCPU(vcpu: created, owner: m))
            members.vcpus.insert(handle)
            return handle
        }
    }
}

@_cdecl("swiftlet_vcpu_destroy")
public func swiftlet_vcpu_destroy(_ vcpu: UInt64) -> Int32 {
    abiCall { () throws(ABIError) in
        try ABIRegistry.requireOpen()
        let removed = try ABIRegistry.vcpus.remove(vcpu) { (v: ABIVCPU) throws(ABIError) in
            if v.isBusy { throw ABIError(SWIFTLET_E_BUSY, "vCPU \(v.vcpu.index) is running") }
        }
        removed.owner.members.withLock { _ = $0.vcpus.remove(vcpu) }
    }
}

@_cdecl("swiftlet_vcpu_get_regs")
public func swiftlet_vcpu_get_regs(_ vcpu: UInt64, _ regs: UnsafeMutablePointer<swiftlet_regs>?) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIRegistry.vcpu(vcpu)
        let out = try sized(regs, "swiftlet_regs", version1Size: ABIVersion.regsSize)
        let state = try v.hold { vcpu throws(HypervisorError) in try vcpu.registers() }
        state.store(into: &out.pointee)
    }
}

@_cdecl("swiftlet_vcpu_set_regs")
public func swiftlet_vcpu_set_regs(_ vcpu: UInt64, _ regs: UnsafePointer<swiftlet_regs>?) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIRegistry.vcpu(vcpu)
        let input = try sized(regs, "swiftlet_regs", version1Size: ABIVersion.regsSize)
        let state = Registers(input.pointee)
        try v.hold { vcpu throws(HypervisorError) in try vcpu.setRegisters(state) }
    }
}

@_cdecl("swiftlet_vcpu_get_sregs")
public func swiftlet_vcpu_get_sregs(_ vcpu: UInt64, _ sregs: UnsafeMutablePointer<swiftlet_sregs>?) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIRegistry.vcpu(vcpu)
        let out = try sized(sregs, "swiftlet_sregs", version1Size: ABIVersion.sregsSize)
        let state = try v.hold { vcpu throws(HypervisorError) in try vcpu.specialRegisters() }
        state.store(into: &out.pointee)
    }
}

@_cdecl("swiftlet_vcpu_set_sregs")
public func swiftlet_vcpu_set_sregs(_ vcpu: UInt64, _ sregs: UnsafePointer<swiftlet_sregs>?) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIRegistry.vcpu(vcpu)
        let input = try sized(sregs, "swiftlet_sregs", version1Size: ABIVersion.sregsSize)
        let state = SpecialRegisters(input.pointee)
        try v.hold { vcpu throws(HypervisorError) in try vcpu.setSpecialRegisters(state) }
    }
}

@_cdecl("swiftlet_vcpu_get_fpu")
public func swiftlet_vcpu_get_fpu(_ vcpu: UInt64, _ fpu: UnsafeMutablePointer<swiftlet_fpu>?) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIRegistry.vcpu(vcpu)
        let out = try sized(fpu, "swiftlet_fpu", version1Size: ABIVersion.fpuSize)
        let state = try v.hold { vcpu throws(HypervisorError) in try vcpu.fpuState() }
        state.store(into: &out.pointee)
    }
}

@_cdecl("swiftlet_vcpu_set_fpu")
public func swiftlet_vcpu_set_fpu(_ vcpu: UInt64, _ fpu: UnsafePointer<swiftlet_fpu>?) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIRegistry.vcpu(vcpu)
        let input = try sized(fpu, "swiftlet_fpu", version1Size: ABIVersion.fpuSize)
        let state = FPUState(input.pointee)
        try v.hold { vcpu throws(HypervisorError) in try vcpu.setFPUState(state) }
    }
}

/// The most MSRs one call reads or writes (KVM_GET_MSRS/KVM_SET_MSRS in one buffer).
let msrBatchLimit: UInt32 = 64

@_cdecl("swiftlet_vcpu_get_msrs")
public func swiftlet_vcpu_get_msrs(_ vcpu: UInt64, _ msrs: UnsafeMutablePointer<swiftlet_msr>?, _ count: UInt32) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIRegistry.vcpu(vcpu)
        let entries = try required(msrs, "msrs")
        guard (1...msrBatchLimit).contains(count) else { throw ABIError.invalid("\(count) MSRs (1 to \(msrBatchLimit))") }
        let n = Int(count)
        try withUnsafeTemporaryAllocation(of: UInt32.self, capacity: n) { indices throws(ABIError) in
            try withUnsafeTemporaryAllocation(of: UInt64.self, capacity: n) { values throws(ABIError) in
                for i in 0..<n { indices[i] = entries[i].index }
                try v.hold { vcpu throws(HypervisorError) in try vcpu.msrs(UnsafeBufferPointer(indices), into: values) }
                for i in 0..<n { entries[i].value = values[i]; entries[i].reserved = 0 }
            }
        }
    }
}

@_cdecl("swiftlet_vcpu_set_msrs")
public func swiftlet_vcpu_set_msrs(_ vcpu: UInt64, _ msrs: UnsafePointer<swiftlet_msr>?, _ count: UInt32) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIRegistry.vcpu(vcpu)
        let entries = try required(msrs, "msrs")
        guard (1...msrBatchLimit).contains(count) else { throw ABIError.invalid("\(count) MSRs (1 to \(msrBatchLimit))") }
        let pairs = (0..<Int(count)).map { (index: entries[$0].index, value: entries[$0].value) }
        try v.hold { vcpu throws(HypervisorError) in try vcpu.setMSRs(pairs) }
    }
}

@_cdecl("swiftlet_vcpu_run")
public func swiftlet_vcpu_run(_ vcpu: UInt64, _ exit: UnsafeMutablePointer<swiftlet_exit>?) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIRegistry.vcpu(vcpu)
        let out = try sized(exit, "swiftlet_exit", version1Size: ABIVersion.exitSize)
        try v.claim { () throws(ABIError) in
            let thread = ThreadHandle.current
            if v.runningThread != thread {
                v.vcpu.attachToCurrentThread()
                v.runningThread = thread
            }
            let result: VMExit
            do throws(HypervisorError) { result = try v.vcpu.run() } catch {
                v.lastExit = nil
                throw ABIError(error)
            }
            v.lastExit = result
            swiftlet_exit.record(result, of: v.vcpu, into: out)
        }
    }
}

@_cdecl("swiftlet_vcpu_kick")
public func swiftlet_vcpu_kick(_ vcpu: UInt64) -> Int32 {
    abiCall { () throws(ABIError) in
        try ABIRegistry.vcpu(vcpu).vcpu.kick()
    }
}

@_cdecl("swiftlet_vcpu_inject_interrupt")
public func swiftlet_vcpu_inject_interrupt(_ vcpu: UInt64, _ vector: UInt32) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIRegistry.vcpu(vcpu)
        guard v.owner.hasIRQChip == false else {
            throw ABIError.invalid("the machine has the in-kernel irqchip: raise a line with swiftlet_machine_irq_line")
        }
        guard vector <= 255 else { throw ABIError.invalid("interrupt vector \(vector) (0 to 255)") }
        try v.hold { vcpu throws(HypervisorError) in try vcpu.injectInterrupt(vector: vector) }
    }
}

@_cdecl("swiftlet_vcpu_translate")
public func swiftlet_vcpu_translate(_ vcpu: UInt64, _ gva: UInt64, _ gpa: UnsafeMutablePointer<UInt64>?) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIRegistry.vcpu(vcpu)
        let out = try required(gpa, "gpa")
        let physical = try v.hold { vcpu throws(HypervisorError) in try vcpu.translate(gva) }
        guard let physical else { throw ABIError(SWIFTLET_E_NOT_FOUND, "guest-virtual \(gva.hexString) is not mapped") }
        out.pointee = physical
    }
}
