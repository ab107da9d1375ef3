import Foundation
import Testing

/// Debian's stock kernel driven through `swiftlet api` with curl, as a Firecracker user would,
/// on a real KVM (the nested L1 of scripts/nested-kvm; this machine's KVM cannot boot Linux).
/// Seccomp stays on (the default), so this is also the filter's test on hardware-style KVM.
@Suite(.enabled(if: Harness.isRoot && ProcessInfo.processInfo.environment["SWIFTLET_NESTED"] != "0"
                    && FileManager.default.isExecutableFile(atPath: "/usr/bin/curl"),
                "needs root, curl and nested KVM via QEMU; SWIFTLET_NESTED=0 skips"),
       .serialized)
struct LinuxNestedAPITests {
    /// Configures a Linux guest over the API, boots it, pauses and resumes it, then presses
    /// Ctrl+Alt+Del: the guest reboots (kernel.ctrl-alt-del=1) and the API process exits 0. The
    /// guest says hello only once its keyboard is registered (Linux probes it asynchronously): a
    /// key pressed before that is lost, as on a real PC.
    @Test func bootPauseResumeAndCtrlAltDel() throws {
        let guest = try LinuxNestedBootTests.guest.get()
        let script = """
            set -u
            swiftlet api --api-sock /tmp/fc.sock --id linux1 >/tmp/console 2>&1 &
            pid=$!
            c() { curl -s --unix-socket /tmp/fc.sock -o /tmp/body -w '%{http_code}' "$@"; echo " $(cat /tmp/body)"; }
            n=0; while [ ! -S /tmp/fc.sock ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done
            echo "boot-source: $(c -X PUT http://x/boot-source -d '{"kernel_image_path": "vmlinuz", "initrd_path": "initrd.img", "boot_args": "console=ttyS0 quiet -- echo 1 > /proc/sys/kernel/ctrl-alt-del; while ! grep -q i8042 /proc/bus/input/devices; do sleep 0.2; done; echo hello-from-api; sleep 20; exit 9"}')"
            echo "machine-config: $(c -X PUT http://x/machine-config -d '{"vcpu_count": 1, "mem_size_mib": 128}')"
            echo "start: $(c -X PUT http://x/actions -d '{"action_type": "InstanceStart"}')"
            n=0; while ! grep -q hello-from-api /tmp/console && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done
            echo "info: $(c http://x/)"
            echo "late-boot-source: $(c -X PUT http://x/boot-source -d '{"kernel_image_path": "vmlinuz"}')"
            echo "pause: $(c -X PATCH http://x/vm -d '{"state": "Paused"}')"
            echo "paused-info: $(c http://x/)"
            echo "resume: $(c -X PATCH http://x/vm -d '{"state": "Resumed"}')"
            echo "metrics: $(c http://x/swiftlet/metrics)"
            echo "seccomp: $(grep Seccomp: /proc/$pid/status)"
            sleep 1
            echo "cad: $(c -X PUT http://x/actions -d '{"action_type": "SendCtrlAltDel"}')"
            wait $pid; echo "api-exit=$?"
            cat /tmp/console
            """
        try script.write(to: guest.appendingPathComponent("api-test.sh"), atomically: true, encoding: .utf8)
        let r = Harness.run("/bin/bash", [Harness.root.appendingPathComponent("scripts/nested-kvm").path,
                                          "--timeout", "300", "--share", guest.path, "--swiftlet", Harness.swiftlet,
                                          "--tool", "/usr/bin/curl", "--", "sh api-test.sh"], timeout: 420)
        let out = r.output
        #expect(out.contains("boot-source: 204"), "\(out)")
        #expect(out.contains("machine-config: 204"), "\(out)")
        #expect(out.contains("start: 204"), "\(out)")
        #expect(out.contains(#"info: 200 {"id": "linux1", "state": "Running""#), "\(out)")
        #expect(out.contains(#"late-boot-source: 400 {"fault_message": "The requested operation is not supported after starting the microVM."}"#), "\(out)")
        #expect(out.contains("pause: 204") && out.contains(#"paused-info: 200 {"id": "linux1", "state": "Paused""#), "\(out)")
        #expect(out.contains("resume: 204"), "\(out)")
        #expect(out.contains(#""kind": "block""#) == false && out.contains(#""kind": "rng""#), "\(out)")
        #expect(out.contains("seccomp: Seccomp:\t2"), "\(out)")
        #expect(out.contains("cad: 204"), "\(out)")
        #expect(out.contains("api-exit=0"), "the guest did not reboot on Ctrl+Alt+Del (it exits 9 after 20 s otherwise): \(out)")
        #expect(out.contains("hello-from-api"), "\(out)")
    }
}
