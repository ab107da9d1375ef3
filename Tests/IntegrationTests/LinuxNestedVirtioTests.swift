import Foundation
import Testing

/// Debian's own virtio drivers against Swiftlet's virtio-pci devices, on the nested real KVM
/// (see LinuxNestedBootTests): disk round trip, read-only disk, entropy.
@Suite(.enabled(if: Harness.isRoot && ProcessInfo.processInfo.environment["SWIFTLET_NESTED"] != "0",
                "needs root (nested KVM via QEMU); SWIFTLET_NESTED=0 skips"),
       .serialized)
struct LinuxNestedVirtioTests {
    /// The guest files plus a 16 MiB zeroed disk image, in one share directory.
    static let share: Result<URL, any Error> = {
        do {
            let guest = try LinuxNestedBootTests.guest.get()
            let dir = Harness.scratch.appendingPathComponent("virtio-share")
            try? FileManager.default.removeItem(at: dir)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for f in ["vmlinuz", "initrd.img"] {
                try FileManager.default.copyItem(at: guest.appendingPathComponent(f), to: dir.appendingPathComponent(f))
            }
            _ = FileManager.default.createFile(atPath: dir.appendingPathComponent("disk.img").path, contents: Data(count: 16 << 20))
            return .success(dir)
        } catch { return .failure(error) }
    }()

    func nested(_ command: String) throws -> Harness.Outcome {
        Harness.run("/bin/bash", [Harness.root.appendingPathComponent("scripts/nested-kvm").path,
                                  "--timeout", "300", "--share", try Self.share.get().path,
                                  "--swiftlet", Harness.swiftlet, "--", command], timeout: 420)
    }

    @Test func diskRoundTripAndReadOnlyDisk() throws {
        // L2 writes a line to sector 0 of vda and flushes; after the VM exits, L1 reads the
        // image file. Then the same image read-only: the guest's write fails, the file keeps
        // the first line.
        let r = try nested("""
            swiftlet run --kernel vmlinuz --initrd initrd.img --disk disk.img --cmdline 'console=ttyS0 quiet -- \
            echo swiftlet-disk-ok | dd of=/dev/vda bs=512 conv=sync,fsync 2>/dev/null; \
            cat /sys/block/vda/size'; echo rw-status=$?; \
            head -c 15 disk.img; echo; \
            swiftlet run --kernel vmlinuz --initrd initrd.img --disk disk.img,readonly --cmdline 'console=ttyS0 quiet -- \
            cat /sys/block/vda/ro; echo overwrite | dd of=/dev/vda bs=512 conv=sync,fsync 2>/dev/null || echo write-refused; \
            head -c 15 /dev/vda; echo'; echo ro-status=$?; head -c 15 disk.img; echo
            """)
        #expect(r.output.contains("rw-status=0"), "\(r.output)")
        #expect(r.output.contains("32768"), "16 MiB = 32768 sectors: \(r.output)")
        #expect(r.output.contains("swiftlet-disk-o\n") || r.output.contains("swiftlet-disk-o\r"), "\(r.output)")
        #expect(r.output.contains("write-refused"), "\(r.output)")
        #expect(!r.output.contains("overwrite"), "\(r.output)")
    }

    @Test func entropyDevice() throws {
        let r = try nested("swiftlet run --kernel vmlinuz --initrd initrd.img --cmdline 'console=ttyS0 quiet -- cat /sys/class/misc/hw_random/rng_current; head -c 16 /dev/hwrng | od -An -tx1'")
        #expect(r.output.contains("virtio_rng"), "\(r.output)")
    }
}
