import Foundation
import Testing

/// A Debian root disk (scripts/make-rootfs: debootstrap minbase + systemd, ext4 via mkfs.ext4 -d)
/// on Swiftlet's virtio-blk, booted with the make-guest kernel and initrd (`root=/dev/vda`) on the
/// nested real KVM (see LinuxNestedBootTests). One L1 run does both checks: a command chrooted into
/// the disk, then systemd up to the `login:` prompt on ttyS0, a root login and a power-off.
/// Builds the rootfs first (about 85 s with an empty cache, 6 s from the cached tree); cancelled
/// when the Debian mirror cannot be reached. SWIFTLET_ROOTFS=0 (or SWIFTLET_NESTED=0) skips.
@Suite(.enabled(if: Harness.isRoot && ProcessInfo.processInfo.environment["SWIFTLET_NESTED"] != "0"
                    && ProcessInfo.processInfo.environment["SWIFTLET_ROOTFS"] != "0",
                "needs root (debootstrap, nested KVM via QEMU); SWIFTLET_ROOTFS=0 or SWIFTLET_NESTED=0 skips"),
       .serialized)
struct LinuxNestedRootfsTests {
    /// make-rootfs's exit status when the mirror is unreachable and nothing is cached.
    static let mirrorUnreachable: Int32 = 3

    /// What L1 runs (busybox sh, in /share): the command test, then the systemd boot with a scripted
    /// login through a FIFO on swiftlet's stdin.
    static let l1Script = """
        up() { cut -d' ' -f1 /proc/uptime; }
        t0=$(up)
        swiftlet run --kernel vmlinuz --initrd initrd.img --disk root.img \\
            --cmdline 'console=ttyS0 quiet root=/dev/vda -- cat /etc/debian_version; ls /usr/bin | wc -l; hostname; exit 5'
        echo "cmd-status=$? cmd-seconds=$(awk -v a=$t0 -v b=$(up) 'BEGIN { printf "%.1f", b - a }')"

        mkfifo /tmp/in
        t0=$(up)
        timeout 240 swiftlet run --kernel vmlinuz --initrd initrd.img --disk root.img --memory 512M \\
            --cmdline 'console=ttyS0 quiet root=/dev/vda' </tmp/in >/tmp/console.log 2>&1 &
        pid=$!
        exec 3>/tmp/in
        i=0
        while ! grep -q 'login:' /tmp/console.log && [ $i -lt 2000 ] && kill -0 $pid 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
        echo "login-prompt-seconds=$(awk -v a=$t0 -v b=$(up) 'BEGIN { printf "%.1f", b - a }')"
        sleep 1
        printf 'root\\n' >&3
        i=0
        while ! grep -q 'root@' /tmp/console.log && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
        printf 'echo logged-in-as-$(id -un)-on-$(hostname)\\n' >&3
        sleep 3
        printf 'poweroff\\n' >&3
        wait $pid
        echo "systemd-status=$?"
        cat /tmp/console.log
        """

    /// vmlinuz, initrd.img (make-guest), root.img (make-rootfs) and the L1 script in one directory.
    static let share: Result<URL, any Error> = {
        do {
            let guest = try LinuxNestedBootTests.guest.get()
            let dir = Harness.scratch.appendingPathComponent("rootfs-share")
            try? FileManager.default.removeItem(at: dir)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for f in ["vmlinuz", "initrd.img"] {
                try FileManager.default.copyItem(at: guest.appendingPathComponent(f), to: dir.appendingPathComponent(f))
            }
            let r = Harness.run("/bin/bash", [Harness.root.appendingPathComponent("scripts/make-rootfs").path,
                                              dir.appendingPathComponent("root.img").path], timeout: 900)
            if r.status == mirrorUnreachable { return .failure(MirrorUnreachable(output: r.output)) }
            guard r.status == 0 else { return .failure(HarnessError("make-rootfs failed (\(r.status)): \(r.output)")) }
            try l1Script.write(to: dir.appendingPathComponent("l1.sh"), atomically: true, encoding: .utf8)
            return .success(dir)
        } catch { return .failure(error) }
    }()

    struct MirrorUnreachable: Error { var output: String }

    @Test func commandFromRootDiskThenSystemdLogin() throws {
        let dir: URL
        do { dir = try Self.share.get() } catch let e as MirrorUnreachable {
            try Test.cancel("debootstrap cannot reach the Debian mirror and no rootfs is cached: \(e.output)")
        }
        // The image (~280 MiB, copied into L1's initramfs, not sparse there) needs L1 memory.
        let r = Harness.run("/bin/bash", [Harness.root.appendingPathComponent("scripts/nested-kvm").path,
                                          "--mem", "3072", "--timeout", "400", "--share", dir.path,
                                          "--swiftlet", Harness.swiftlet, "--", "sh l1.sh"], timeout: 520)
        #expect(r.status == 0, "\(r.output)")
        // The command ran in the disk: Debian 12's version, its /usr/bin, its hostname, its status.
        #expect(r.output.range(of: #"(?m)^12\.[0-9]+\s*$"#, options: .regularExpression) != nil, "\(r.output)")
        #expect(r.output.range(of: #"(?m)^[1-9][0-9]{2,}\s*$"#, options: .regularExpression) != nil, "ls /usr/bin | wc -l: \(r.output)")
        #expect(r.output.contains("cmd-status=5"), "\(r.output)")
        // systemd reached the serial getty, root logged in without a password, poweroff ended the VM.
        #expect(r.output.contains("swiftlet login:"), "\(r.output)")
        #expect(r.output.contains("logged-in-as-root-on-swiftlet"), "\(r.output)")
        #expect(r.output.contains("systemd-status=0"), "\(r.output)")
    }
}
