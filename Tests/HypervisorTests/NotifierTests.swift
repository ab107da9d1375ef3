import GuestMemory
import Glibc
import Testing
@testable import Hypervisor
import CKVM // eventfd(2): Swift's Glibc module lacks <sys/eventfd.h>

/// Interrupt and I/O notifiers on this machine's /dev/kvm: proves the ioctls are wired (a guest
/// that takes the interrupts comes with the virtio work).
@Suite(.enabled(if: access("/dev/kvm", R_OK | W_OK) == 0, "needs a usable /dev/kvm"))
struct NotifierTests {
    /// A 2 MiB machine; with the PC interrupt controllers unless `irqchip` is false.
    static func machine(irqchip: Bool = true) throws -> Machine {
        let m = try Machine(memory: try GuestMemory(size: 2 << 20))
        if irqchip { try m.createPlatformInterruptControllers() }
        return m
    }

    static func eventFD() -> Int32 { eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK)) }

    @Test func thisKVMSupportsNotifiers() throws {
        let s = try Self.machine(irqchip: false).notifierSupport
        #expect(s.interruptNotifiers && s.ioNotifiers && s.signalMSI)
        #expect(s.routableGSIs >= 24)
    }

    @Test func interruptNotifierAttachesAndDetaches() throws {
        let m = try Self.machine()
        let efd = Self.eventFD()
        defer { close(efd) }
        try m.attachInterruptNotifier(efd, gsi: 5)
        #expect(throws: HypervisorError.self) { try m.attachInterruptNotifier(efd, gsi: 5) }
        try m.detachInterruptNotifier(efd, gsi: 5)
        try m.attachInterruptNotifier(efd, gsi: 5) // free again after detach
        try m.detachInterruptNotifier(efd, gsi: 5)
    }

    @Test func levelTriggeredInterruptNotifierWithResample() throws {
        let m = try Self.machine()
        try #require(m.notifierSupport.levelTriggeredInterruptNotifiers, "KVM_CAP_IRQFD_RESAMPLE absent")
        let trigger = Self.eventFD(), resample = Self.eventFD()
        defer { close(trigger); close(resample) }
        try m.attachInterruptNotifier(trigger, gsi: 10, resampleFD: resample)
        try m.detachInterruptNotifier(trigger, gsi: 10)
    }

    @Test func interruptNotifierNeedsTheIrqchip() throws {
        let m = try Self.machine(irqchip: false)
        let efd = Self.eventFD()
        defer { close(efd) }
        let error = #expect(throws: HypervisorError.self) { try m.attachInterruptNotifier(efd, gsi: 5) }
        #expect(error?.message.contains("createPlatformInterruptControllers") == true)
    }

    @Test func ioNotifiersOnAPortAndAnMMIOAddress() throws {
        let m = try Self.machine()
        let pio = Self.eventFD(), mmio = Self.eventFD()
        defer { close(pio); close(mmio) }
        try m.attachIONotifier(pio, address: 0x510, length: 2, space: .pio)
        try m.attachIONotifier(mmio, address: 0xD000_0050, length: 4, space: .mmio, datamatch: 3)
        try m.detachIONotifier(pio, address: 0x510, length: 2, space: .pio)
        try m.detachIONotifier(mmio, address: 0xD000_0050, length: 4, space: .mmio, datamatch: 3)
        let gone = #expect(throws: HypervisorError.self) {
            try m.detachIONotifier(pio, address: 0x510, length: 2, space: .pio)
        }
        #expect(gone?.code == .invalidArgument)
    }

    @Test func anyLengthIONotifier() throws {
        let m = try Self.machine()
        try #require(m.notifierSupport.anyLengthIONotifiers, "KVM_CAP_IOEVENTFD_ANY_LENGTH absent")
        let efd = Self.eventFD()
        defer { close(efd) }
        try m.attachIONotifier(efd, address: 0xD000_1000, length: 0, space: .mmio)
        try m.detachIONotifier(efd, address: 0xD000_1000, length: 0, space: .mmio)
    }

    @Test func ioNotifierArgumentsAreChecked() throws {
        let m = try Self.machine()
        let efd = Self.eventFD()
        defer { close(efd) }
        for (length, space, address, datamatch) in [(3, IONotifierSpace.pio, UInt64(0x510), UInt64?.none),
                                                    (2, .pio, 0x1_0000, nil),
                                                    (1, .mmio, 0xD000_0000, 0x1FF)] {
            let error = #expect(throws: HypervisorError.self) {
                try m.attachIONotifier(efd, address: address, length: length, space: space, datamatch: datamatch)
            }
            #expect(error?.code == .invalidArgument)
        }
    }

    @Test func signalMSIWithoutAProgrammedAPICReturns() throws {
        let m = try Self.machine()
        let vcpu = try m.createVCPU(index: 0)
        // Fixed delivery, vector 0x30, to APIC 0: the guest never enabled its APIC, so not delivered.
        #expect(try m.signalMSI(address: 0xFEE0_0000, data: 0x30) == false)
        _ = vcpu
    }

    @Test func msiRoutesKeepTheIrqchipDefaults() throws {
        let m = try Self.machine()
        let efd = Self.eventFD()
        defer { close(efd) }
        try m.setMSIRoutes([MSIRoute(gsi: 24, address: 0xFEE0_0000, data: 0x31),
                            MSIRoute(gsi: 25, address: 0xFEE0_0000, data: 0x32)])
        try m.attachInterruptNotifier(efd, gsi: 24)
        try m.detachInterruptNotifier(efd, gsi: 24)
        // The legacy lines still work after the table was replaced.
        try m.setInterruptLine(4, high: true)
        try m.setInterruptLine(4, high: false)
        try m.setMSIRoutes([]) // back to the defaults
    }

    @Test func msiRoutesAreChecked() throws {
        let m = try Self.machine()
        for routes in [[MSIRoute(gsi: 5, address: 0xFEE0_0000, data: 0x30)],
                       [MSIRoute(gsi: 30, address: 0xFEE0_0000, data: 0x30), MSIRoute(gsi: 30, address: 0xFEE0_0000, data: 0x31)],
                       [MSIRoute(gsi: 1 << 20, address: 0xFEE0_0000, data: 0x30)],
                       (0..<1000).map { MSIRoute(gsi: 24 + $0, address: 0xFEE0_0000, data: 0x30) }] {
            let error = #expect(throws: HypervisorError.self) { try m.setMSIRoutes(routes) }
            #expect(error?.code == .invalidArgument)
        }
    }

    @Test func msiRoutesNeedTheIrqchip() throws {
        let m = try Self.machine(irqchip: false)
        let error = #expect(throws: HypervisorError.self) {
            try m.setMSIRoutes([MSIRoute(gsi: 24, address: 0xFEE0_0000, data: 0x30)])
        }
        #expect(error?.message.contains("createPlatformInterruptControllers") == true)
    }
}
