import Foundation
import Testing

/// Debian's virtio_net driver against Swiftlet's virtio-net device on a tap, on the nested real KVM
/// (see LinuxNestedBootTests). In L1: tap0 = 10.0.2.1 (made with busybox tunctl after loading
/// tun.ko from the guest kernel's package), the guest's eth0 = 10.0.2.2. Pings both ways, 1 MiB
/// each way over TCP with busybox nc, then a tap swiftlet creates itself and removes on exit.
@Suite(.enabled(if: Harness.isRoot && ProcessInfo.processInfo.environment["SWIFTLET_NESTED"] != "0",
                "needs root (nested KVM via QEMU); SWIFTLET_NESTED=0 skips"),
       .serialized)
struct LinuxNestedNetTests {
    /// L1's side, run in /share. The guest's own script travels on a read-only virtio-blk disk:
    /// the kernel hands init at most 32 words after `--`.
    static let l1Script = #"""
#!/bin/sh
# L1 side of the virtio-net nested test: tap0 = 10.0.2.1, the guest's eth0 = 10.0.2.2.
# The guest's script travels on a read-only virtio-blk disk (the kernel passes at most 32 words
# after `--` to init).
N=${1:-1048576}
insmod /share/tun.ko 2>/dev/null
tunctl -t tap0 >/dev/null || { echo tunctl-failed; exit 1; }
ip addr add 10.0.2.1/24 dev tap0
ip link set tap0 up
cat >/tmp/guest.sh <<GUEST
ip addr add 10.0.2.2/24 dev eth0
ip link set eth0 up
echo guest-mac=\$(cat /sys/class/net/eth0/address)
ping -c 3 10.0.2.1 | grep -E 'transmitted|min' | sed 's/^/guest-ping: /'
a=\$(cut -d' ' -f1 /proc/uptime)
head -c $N /dev/zero | nc 10.0.2.1 5001
b=\$(cut -d' ' -f1 /proc/uptime)
echo g2h-seconds=\$a-\$b
mkfifo /tmp/hold
nc -l -p 5002 </tmp/hold | wc -c | sed s/^/h2g-bytes=/ &
exec 3>/tmp/hold
wait
exit 0
GUEST
# Pad to whole sectors with blank lines.
n=$(wc -c </tmp/guest.sh); pad=$(( (512 - n % 512) % 512 ))
head -c $pad /dev/zero | tr '\0' '\n' >>/tmp/guest.sh
# A listener whose stdin never ends: busybox nc half-closes when stdin ends, and exits when the
# peer half-closes, so stdin /dev/null would end the transfer early.
mkfifo /tmp/hold
nc -l -p 5001 </tmp/hold | wc -c >/tmp/g2h &
exec 3>/tmp/hold
swiftlet run --kernel vmlinuz --initrd initrd.img --disk /tmp/guest.sh,readonly --net tap=tap0,mac=02:00:00:00:00:02 \
    --cmdline 'console=ttyS0 quiet panic=-1 -- sh /dev/vda' &
vm=$!
i=0; until ping -c 1 -W 1 10.0.2.2 >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 90 ] && break; kill -0 $vm 2>/dev/null || break; done
# The guest's console shares this terminal byte by byte: what the host says waits until the guest
# is done, or the two interleave mid-line.
hostping=$(ping -c 3 10.0.2.2 | grep -E 'transmitted|min' | sed 's/^/host-ping: /')
sleep 1
a=$(cut -d' ' -f1 /proc/uptime)
i=0; until head -c $N /dev/zero | nc 10.0.2.2 5002 2>/dev/null; do
    i=$((i+1)); [ $i -gt 60 ] && break; kill -0 $vm 2>/dev/null || break; sleep 0.5; a=$(cut -d' ' -f1 /proc/uptime)
done
b=$(cut -d' ' -f1 /proc/uptime)
wait $vm
echo "swiftlet-status=$?"
echo "$hostping"
echo "h2g-seconds=$a-$b"
echo "g2h-bytes=$(cat /tmp/g2h)"
for f in rx_packets tx_packets rx_bytes tx_bytes rx_dropped tx_dropped; do echo "tap0 $f $(cat /sys/class/net/tap0/statistics/$f)"; done
# A tap that does not exist: swiftlet (root) creates it and it goes away with swiftlet.
swiftlet run --kernel vmlinuz --initrd initrd.img --net tap=auto0 \
    --cmdline 'console=ttyS0 quiet panic=-1 -- echo auto-mac=$(cat /sys/class/net/eth0/address); sleep 1' &
vm=$!
i=0; until [ -e /sys/class/net/auto0 ]; do i=$((i+1)); [ $i -gt 300 ] && break; kill -0 $vm 2>/dev/null || break; sleep 0.1; done
[ -e /sys/class/net/auto0 ] && echo auto0-present
wait $vm
echo "auto-status=$?"
[ -e /sys/class/net/auto0 ] || echo auto0-removed
swiftlet run --kernel vmlinuz --net tap=tap0,mac=01:00:00:00:00:01 2>&1 | head -1
swiftlet run --kernel vmlinuz --net tap=a-name-much-too-long 2>&1 | head -1
"""#

    /// The guest files, tun.ko from the same kernel package (L1 runs that kernel) and the script.
    static let share: Result<URL, any Error> = {
        do {
            let guest = try LinuxNestedBootTests.guest.get()
            let dir = Harness.scratch.appendingPathComponent("net-share")
            try? FileManager.default.removeItem(at: dir)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for f in ["vmlinuz", "initrd.img"] {
                try FileManager.default.copyItem(at: guest.appendingPathComponent(f), to: dir.appendingPathComponent(f))
            }
            try FileManager.default.copyItem(atPath: try tunModule(guest: guest), toPath: dir.appendingPathComponent("tun.ko").path)
            try l1Script.write(to: dir.appendingPathComponent("net-test.sh"), atomically: true, encoding: .utf8)
            return .success(dir)
        } catch { return .failure(error) }
    }()

    /// tun.ko of the kernel make-guest unpacked into its cache (scripts/lib/guest-common.sh).
    static func tunModule(guest: URL) throws -> String {
        let env = ProcessInfo.processInfo.environment
        let version = try String(contentsOf: guest.appendingPathComponent("kernel-version"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let cache = env["SWIFTLET_GUEST_CACHE"]
            ?? ((env["XDG_CACHE_HOME"] ?? ((env["HOME"] ?? "/root") + "/.cache")) + "/swiftlet-guest")
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []
        for entry in entries.sorted() where entry.hasPrefix("kernel-") {
            let path = "\(cache)/\(entry)/lib/modules/\(version)/kernel/drivers/net/tun.ko"
            if FileManager.default.fileExists(atPath: path) { return path }
        }
        throw HarnessError("tun.ko for \(version) not found under \(cache)")
    }

    @Test func pingAndTCPBothWaysAndTapLifetime() throws {
        let r = Harness.run("/bin/bash", [Harness.root.appendingPathComponent("scripts/nested-kvm").path,
                                          "--timeout", "300", "--share", try Self.share.get().path,
                                          "--swiftlet", Harness.swiftlet, "--", "sh net-test.sh 1048576"], timeout: 420)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("guest-mac=02:00:00:00:00:02"), "\(r.output)")
        #expect(r.output.contains("host-ping: 3 packets transmitted, 3 packets received"), "\(r.output)")
        #expect(r.output.contains("guest-ping: 3 packets transmitted") && !r.output.contains("guest-ping: 3 packets transmitted, 0 packets"),
                "\(r.output)")
        #expect(r.output.contains("g2h-bytes=1048576"), "guest to host: \(r.output)")
        #expect(r.output.contains("h2g-bytes=1048576"), "host to guest: \(r.output)")
        #expect(r.output.contains("swiftlet-status=0"), "\(r.output)")
        // The tap swiftlet created exists while it runs and disappears with it.
        #expect(r.output.contains("auto0-present"), "\(r.output)")
        #expect(r.output.contains("auto0-removed"), "\(r.output)")
        #expect(r.output.contains("auto-status=0"), "\(r.output)")
        #expect(r.output.contains("is not tap=NAME"), "\(r.output)")
        // A tap name too long is refused with the other --net mistakes, before any device exists.
        #expect(r.output.contains("--net 'tap=a-name-much-too-long' is not tap=NAME") && r.output.contains("tap name 1 to 15 characters"),
                "\(r.output)")
    }
}
