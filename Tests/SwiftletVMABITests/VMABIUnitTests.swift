import CSwiftlet
import SwiftletABI
import SwiftletVMABI
import Testing

/// The VM level's checks that need no KVM: every config is refused before a machine is made, so
/// these run anywhere. Runs, stops and destroys of real VMs are Tests/abi/vm_level.c's.
struct VMABIUnitTests {
    init() { _ = SwiftletABI.swiftlet_open(2) }

    private func create(_ json: String) -> (status: Int32, message: String) {
        var vm: UInt64 = 0
        let status = json.withCString { SwiftletVMABI.swiftlet_vm_create($0, json.utf8.count, &vm) }
        return (status, ABIErrorMessage.current)
    }

    @Test func badConfigsGetTheConfigStatusAndOneLine() {
        for (json, named) in [("{", "invalid JSON"), ("{\"boot-source\": {}}", "kernel_image_path"),
                              ("{\"boot-source\": {\"kernel_image_path\": \"/nonexistent/k\"}}", "/nonexistent/k"),
                              ("{\"boot-source\": {\"kernel_image_path\": \"/dev/zero\"}}", "/dev/zero"),
                              ("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": -1}}", "out of range"),
                              ("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"unknown\": 1}", "unknown")] {
            let (status, message) = create(json)
            #expect(status == SWIFTLET_E_CONFIG, "\(json)")
            #expect(message.contains(named) && !message.contains("\n"), "\(json): \(message)")
        }
    }

    @Test func nullsLengthsAndHandlesAreRefused() {
        var vm: UInt64 = 0
        var fd: Int32 = -1
        var state: UInt32 = 0
        var status: Int32 = 0
        #expect(SwiftletVMABI.swiftlet_vm_create(nil, 10, &vm) == SWIFTLET_E_INVALID)
        #expect("{}".withCString { SwiftletVMABI.swiftlet_vm_create($0, 2, nil) } == SWIFTLET_E_INVALID)
        #expect("{}".withCString { SwiftletVMABI.swiftlet_vm_create($0, 0, &vm) } == SWIFTLET_E_INVALID)
        #expect("{}".withCString { SwiftletVMABI.swiftlet_vm_create($0, (1 << 20) + 1, &vm) } == SWIFTLET_E_INVALID)
        for handle: UInt64 in [0, 0x4B00_0000_0100_0005, 0x4D00_0000_0100_0000] {
            #expect(SwiftletVMABI.swiftlet_vm_start(handle) == SWIFTLET_E_HANDLE)
            #expect(SwiftletVMABI.swiftlet_vm_console(handle, &fd) == SWIFTLET_E_HANDLE)
            #expect(SwiftletVMABI.swiftlet_vm_state(handle, &state) == SWIFTLET_E_HANDLE)
            #expect(SwiftletVMABI.swiftlet_vm_wait(handle, 0, &status) == SWIFTLET_E_HANDLE)
            #expect(SwiftletVMABI.swiftlet_vm_destroy(handle) == SWIFTLET_E_HANDLE)
        }
    }
}
