import CSwiftlet
import SwiftletABI
import SwiftletVMABI

/// One machine with one vCPU for the whole run (KVM is asked once); nil where /dev/kvm is not usable.
private let abiVCPU: UInt64? = {
    guard SwiftletABI.swiftlet_open(2) == SWIFTLET_OK else { return nil }
    var machine: UInt64 = 0, vcpu: UInt64 = 0
    guard SwiftletABI.swiftlet_machine_create(0, &machine) == SWIFTLET_OK, SwiftletABI.swiftlet_vcpu_create(machine, 0, &vcpu) == SWIFTLET_OK else { return nil }
    return vcpu
}()

/// The statuses a call may return (swiftlet.h); anything else is a broken promise.
private let knownStatuses = Set<Int32>((-18)...0)

private func requireStatus(_ status: Int32, _ what: String) {
    guard knownStatuses.contains(status) else { fatalError("libswiftlet: \(what) returned \(status)") }
    if status != SWIFTLET_OK { requireOneLine(ABIErrorMessage.current, what) }
}

extension FuzzTargets {
    /// libswiftlet's entry points that take bytes (docs/abi.md): register structs of any content
    /// and size field into a real vCPU (set, then get back), MSR batches, and a VM's JSON config;
    /// every call must give a status of swiftlet.h and, on failure, a one-line message.
    static let libswiftlet = FuzzTarget(
        name: "libswiftlet",
        summary: "libswiftlet: register structs, MSR batches and VM configs as bytes, into a real vCPU"
    ) { bytes in
        var input = FuzzInput(bytes)
        let choice = input.byte() % 5
        if choice == 4 {
            let json = Array(input.remaining)
            var vm: UInt64 = 0
            let status = json.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { SwiftletVMABI.swiftlet_vm_create($0.baseAddress, $0.count, &vm) }
            }
            requireStatus(status, "swiftlet_vm_create")
            if status == SWIFTLET_OK { requireStatus(SwiftletVMABI.swiftlet_vm_destroy(vm), "swiftlet_vm_destroy") }
            return
        }
        guard let vcpu = abiVCPU else { return }
        // The struct's bytes, as large as the biggest, its size field as the input says.
        var raw = [UInt8](repeating: 0, count: 512)
        let given = input.take(512)
        raw.replaceSubrange(0..<given.count, with: given)
        raw.withUnsafeMutableBytes { buffer in
            switch choice {
            case 0:
                let regs = buffer.baseAddress!.assumingMemoryBound(to: swiftlet_regs.self)
                requireStatus(SwiftletABI.swiftlet_vcpu_set_regs(vcpu, regs), "set_regs")
                regs.pointee.size = UInt32(MemoryLayout<swiftlet_regs>.size)
                requireStatus(SwiftletABI.swiftlet_vcpu_get_regs(vcpu, regs), "get_regs")
            case 1:
                let sregs = buffer.baseAddress!.assumingMemoryBound(to: swiftlet_sregs.self)
                requireStatus(SwiftletABI.swiftlet_vcpu_set_sregs(vcpu, sregs), "set_sregs")
                sregs.pointee.size = UInt32(MemoryLayout<swiftlet_sregs>.size)
                requireStatus(SwiftletABI.swiftlet_vcpu_get_sregs(vcpu, sregs), "get_sregs")
            case 2:
                let fpu = buffer.baseAddress!.assumingMemoryBound(to: swiftlet_fpu.self)
                requireStatus(SwiftletABI.swiftlet_vcpu_set_fpu(vcpu, fpu), "set_fpu")
                fpu.pointee.size = UInt32(MemoryLayout<swiftlet_fpu>.size)
                requireStatus(SwiftletABI.swiftlet_vcpu_get_fpu(vcpu, fpu), "get_fpu")
            default:
                let count = UInt32(buffer.count / MemoryLayout<swiftlet_msr>.size) &- UInt32(given.first ?? 0) % 40
                let msrs = buffer.baseAddress!.assumingMemoryBound(to: swiftlet_msr.self)
                requireStatus(SwiftletABI.swiftlet_vcpu_set_msrs(vcpu, msrs, count), "set_msrs")
                requireStatus(SwiftletABI.swiftlet_vcpu_get_msrs(vcpu, msrs, count), "get_msrs")
            }
        }
    }
}
