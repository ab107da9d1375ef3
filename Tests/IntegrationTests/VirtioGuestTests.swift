import Foundation
import Testing

/// `swiftlet run` with the freestanding virtio guests (guests/pvh/blk.c, rng.c, attack.c, built on
/// the polling virtio-pci driver in guests/pvh/virtio): the PCI transport, virtio-blk and
/// virtio-rng as a minimal driver sees them, and a guest that attacks the block queue.
@Suite(.enabled(if: Harness.hasKVM, "needs a usable /dev/kvm"))
struct VirtioGuestTests {
    /// The byte blk.c writes at absolute disk offset `o` (sectors 1...8).
    static func pattern(_ o: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: (o & 0xFF) ^ ((o >> 9) &* 0x1F) ^ 0xA5)
    }
    static let patternRange = 512..<(9 * 512)

    static func expectPattern(in file: String, _ comment: String) throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        #expect(bytes.count == 1 << 20)
        let mismatch = patternRange.first { bytes[$0] != pattern($0) }
        #expect(mismatch == nil, "pattern differs at offset \(mismatch ?? -1); \(comment)")
        #expect(bytes[0..<512].allSatisfy { $0 == 0 }, "sector 0 was touched")
        #expect(bytes[patternRange.upperBound...].allSatisfy { $0 == 0 }, "bytes past sector 8 were touched")
    }

    static func run(_ guest: String, disk: String? = nil, cmdline: String? = nil, extra: [String] = [],
                    timeout: Double = 60) throws -> Harness.Outcome {
        var args = ["run", "--kernel", try Harness.pvhGuest(guest)]
        if let disk { args += ["--disk", disk] }
        if let cmdline { args += ["--cmdline", cmdline] }
        return Harness.run(Harness.swiftlet, args + extra, timeout: timeout)
    }

    @Test func blockRoundTrip() throws {
        let disk = Harness.disk("vguest-blk.img", size: 1 << 20)
        let r = try Self.run("blk", disk: disk)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("SUCCESS"), "\(r.output)")
        #expect(r.output.contains("blk: capacity=2048 sectors"), "\(r.output)")
        #expect(r.output.contains("blk: out-of-range reads fail with IOERR"), "\(r.output)")
        try Self.expectPattern(in: disk, r.output)
    }

    @Test func readOnlyDiskRefusesWrites() throws {
        let path = Harness.scratch.appendingPathComponent("vguest-ro.img").path
        let original = Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) })
        try original.write(to: URL(fileURLWithPath: path))
        let r = try Self.run("blk", disk: path + ",readonly", cmdline: "ro")
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("blk: write refused with IOERR") && r.output.contains("SUCCESS"), "\(r.output)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == original, "a read-only disk changed")
    }

    @Test func entropy() throws {
        let r = try Self.run("rng")
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("SUCCESS"), "\(r.output)")
    }

    @Test func noEntropyDeviceWithNoRng() throws {
        let r = try Self.run("rng", extra: ["--no-rng"])
        #expect(r.status == 1, "\(r.output)")
        #expect(r.output.contains("FAIL no virtio-rng device"), "\(r.output)")
    }

    static let attacks = [
        "desc-outside-ram", "desc-on-mmio-bar", "addr-len-overflow", "len-past-ram", "zero-length",
        "desc-loop", "desc-self-loop", "next-out-of-range", "next-0xffff", "head-out-of-range",
        "indirect-out-of-bounds", "indirect-addr-overflow", "indirect-bad-length",
        "indirect-next-out-of-table", "indirect-nested", "indirect-with-next", "indirect-valid-control",
        "readable-after-writable", "avail-idx-jump", "queue-size-not-pow2", "queue-size-3",
        "queue-size-above-max", "ring-outside-ram", "notify-disabled-queue",
    ]

    @Test func maliciousQueuesLeaveTheVMMRunning() throws {
        let disk = Harness.disk("vguest-attack.img", size: 1 << 20)
        let start = Date()
        let r = try Self.run("attack", disk: disk, timeout: 120)
        // Exit 0 is the guest's own verdict; a crash would be 128+signal, a hang the timeout's 137.
        #expect(r.status == 0, "\(r.output)")
        #expect(Date().timeIntervalSince(start) < 120, "swiftlet had to be killed")
        for name in Self.attacks {
            #expect(r.output.contains("attack \(name): survived"), "\(name): \(r.output)")
        }
        #expect(!r.output.contains("FAILED"), "\(r.output)")
        #expect(r.output.contains("SUCCESS"), "\(r.output)")
    }

    @Test func throughputModeCompletes() throws {
        let disk = Harness.disk("vguest-bench.img", size: 1 << 20)
        let r = try Self.run("blk", disk: disk, cmdline: "bench randread 4k 256k 8")
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("BENCH END ops=64 bytes=262144 errors=0"), "\(r.output)")
    }
}
