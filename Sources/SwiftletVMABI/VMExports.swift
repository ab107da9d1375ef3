import CSwiftlet
import FirecrackerJSON
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import Host
import SwiftletABI
import VMM
import VMSpec

// The VM level of swiftlet.h (version 2, SWIFTLET_1.1): a whole microVM (VMM's `MicroVM`, the one
// `swiftlet api` runs) from a Firecracker JSON config, in the caller's process.

/// A VM behind a `swiftlet_vm_t`: the machine, its console, the client's end of the console
/// until swiftlet_vm_console hands it over, and how far its run got (for swiftlet_vm_wait).
final class ABIVM: @unchecked Sendable {
    enum Run: Equatable { case notStarted, running, ended(Int32) }

    let micro: MicroVM
    let console: StreamConsole
    /// The console's other end; nil once the client took it.
    private let clientEnd: ConditionLock<FileDescriptor?>
    let run = ConditionLock(Run.notStarted)

    init(micro: MicroVM, console: StreamConsole, clientEnd: FileDescriptor) {
        self.micro = micro
        self.console = console
        self.clientEnd = ConditionLock(clientEnd)
    }

    /// The console's other end, once: nil after the first call (the client took it, or the VM
    /// started without it).
    func takeClientEnd() -> FileDescriptor? {
        clientEnd.withLock { end in
            defer { end = nil }
            return end
        }
    }
}

/// The VMs of the process.
enum ABIVMRegistry {
    static let vms = HandleTable<ABIVM>(kind: 0x4B, name: "VM", limit: 1024)
    /// The longest config accepted (a Firecracker config is a few hundred bytes).
    static let maximumJSONBytes = 1 << 20

    static func vm(_ handle: UInt64) throws(ABIError) -> ABIVM {
        try ABIRegistry.requireOpen()
        return try vms.lookup(handle)
    }
}

@_cdecl("swiftlet_vm_create")
public func swiftlet_vm_create(_ json: UnsafePointer<CChar>?, _ length: Int, _ vm: UnsafeMutablePointer<UInt64>?) -> Int32 {
    abiCall { () throws(ABIError) in
        try ABIRegistry.requireOpen()
        let text = try required(json, "json")
        let out = try required(vm, "vm")
        guard length > 0, length <= ABIVMRegistry.maximumJSONBytes else {
            throw ABIError.invalid("a config of \(length) bytes (1 to \(ABIVMRegistry.maximumJSONBytes))")
        }
        let data = Data(bytes: text, count: length)
        let config: FirecrackerConfig
        do throws(VMMError) { config = try FirecrackerConfig.parse(data) } catch { throw ABIError(SWIFTLET_E_CONFIG, error.message) }
        let ends: (FileDescriptor, FileDescriptor)
        do throws(HostError) { ends = try UnixSocket.pair() } catch { throw ABIError(SWIFTLET_E_KERNEL, "console: \(error.description)") }
        let console = StreamConsole(ends.0)
        // The VM runs in the client's process: leave its malloc and code pages alone.
        VMMProcess.isDedicated.store(false, ordering: .relaxed)
        let built: ABIVM
        do throws(VMMError) { built = ABIVM(micro: try MicroVM(config, console: .stream(console)), console: console, clientEnd: ends.1) } catch {
            throw ABIError(SWIFTLET_E_CONFIG, error.message)
        }
        out.pointee = try ABIVMRegistry.vms.insert(built)
    }
}

@_cdecl("swiftlet_vm_console")
public func swiftlet_vm_console(_ vm: UInt64, _ fd: UnsafeMutablePointer<Int32>?) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIVMRegistry.vm(vm)
        let out = try required(fd, "fd")
        guard v.run.withLock({ $0 == .notStarted }) else {
            throw ABIError(SWIFTLET_E_STATE, "swiftlet_vm_console after swiftlet_vm_start")
        }
        let end = v.takeClientEnd()
        guard let end else { throw ABIError(SWIFTLET_E_STATE, "the console descriptor was already taken") }
        // The client gets a descriptor of its own to close; ours closes here.
        do throws(HostError) { out.pointee = try end.duplicateForCaller() } catch { throw ABIError(SWIFTLET_E_KERNEL, "console: \(error.description)") }
    }
}

@_cdecl("swiftlet_vm_start")
public func swiftlet_vm_start(_ vm: UInt64) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIVMRegistry.vm(vm)
        let first = v.run.withLock { run -> Bool in
            guard run == .notStarted else { return false }
            run = .running
            return true
        }
        guard first else { throw ABIError(SWIFTLET_E_STATE, "the VM was started already") }
        // Without a client for the console, the guest's output is copied to stdout.
        if v.takeClientEnd() != nil { v.console.useStandardOutput() }
        do throws(VMMError) {
            try v.micro.start { [weak v] status in
                v?.run.withLockBroadcasting { $0 = .ended(status) }
            }
        } catch {
            v.run.withLockBroadcasting { $0 = .ended(1) }
            throw ABIError(SWIFTLET_E_KERNEL, error.message)
        }
        // Return once it runs (the state a pause right after start needs), or already ended.
        while v.micro.state == .created && v.run.withLock({ $0 == .running }) { Clock.sleep(milliseconds: 1) }
    }
}

@_cdecl("swiftlet_vm_pause")
public func swiftlet_vm_pause(_ vm: UInt64) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIVMRegistry.vm(vm)
        guard v.micro.state == .running || v.micro.state == .paused else {
            throw ABIError(SWIFTLET_E_STATE, "the VM is \(v.micro.state.rawValue), not running")
        }
        do throws(VMMError) { try v.micro.pause() } catch { throw ABIError(SWIFTLET_E_STATE, error.message) }
    }
}

@_cdecl("swiftlet_vm_resume")
public func swiftlet_vm_resume(_ vm: UInt64) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIVMRegistry.vm(vm)
        guard v.micro.state == .paused || v.micro.state == .running else {
            throw ABIError(SWIFTLET_E_STATE, "the VM is \(v.micro.state.rawValue), not paused")
        }
        v.micro.resume()
    }
}

@_cdecl("swiftlet_vm_stop")
public func swiftlet_vm_stop(_ vm: UInt64) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIVMRegistry.vm(vm)
        guard v.run.withLock({ $0 != .notStarted }) else {
            throw ABIError(SWIFTLET_E_STATE, "the VM was never started")
        }
        v.micro.requestStop(signal: SIGTERM)
    }
}

@_cdecl("swiftlet_vm_state")
public func swiftlet_vm_state(_ vm: UInt64, _ state: UnsafeMutablePointer<UInt32>?) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIVMRegistry.vm(vm)
        let out = try required(state, "state")
        out.pointee = switch v.micro.state {
        case .created: UInt32(SWIFTLET_VM_CREATED)
        case .running: UInt32(SWIFTLET_VM_RUNNING)
        case .paused: UInt32(SWIFTLET_VM_PAUSED)
        case .stopped: UInt32(SWIFTLET_VM_STOPPED)
        case .crashed: UInt32(SWIFTLET_VM_CRASHED)
        }
    }
}

@_cdecl("swiftlet_vm_wait")
public func swiftlet_vm_wait(_ vm: UInt64, _ timeout: Int32, _ status: UnsafeMutablePointer<Int32>?) -> Int32 {
    abiCall { () throws(ABIError) in
        let v = try ABIVMRegistry.vm(vm)
        let out = try required(status, "exit_status")
        guard v.run.withLock({ $0 != .notStarted }) else {
            throw ABIError(SWIFTLET_E_STATE, "the VM was never started")
        }
        let ended = v.run.wait(until: { if case .ended = $0 { true } else { false } }, milliseconds: Int(timeout)) { run in
            if case .ended(let code) = run { code } else { Int32(1) }
        }
        guard let ended else { throw ABIError(SWIFTLET_E_TIMEOUT, "the VM still runs after \(timeout) ms") }
        out.pointee = ended
    }
}

@_cdecl("swiftlet_vm_destroy")
public func swiftlet_vm_destroy(_ vm: UInt64) -> Int32 {
    abiCall { () throws(ABIError) in
        try ABIRegistry.requireOpen()
        let v = try ABIVMRegistry.vms.remove(vm)
        if v.run.withLock({ $0 == .running }) {
            v.micro.requestStop(signal: SIGTERM)
            v.run.wait(until: { $0 != .running }) { _ in }
        }
    }
}
