import Foundation
import Testing

/// Our ABI-2 test guests behave the same under Solo5 v0.12.1's own `solo5-hvt` as under
/// `swiftlet hvt`: the same exit status and the same guest output (numbers masked: times, cycle
/// counts and addresses differ from run to run). A guest the real tender disagrees with means
/// our reading of the ABI is wrong. Runs only where the team's shared peers are present (CI and
/// developer machines); a user's clone skips it.
///
/// Exempt, and why:
/// - ABI-1 guests: solo5-hvt v0.12.1 runs only ABI 2.
/// - `wnox`, `xnow`: Swiftlet's hardening beyond solo5-hvt. We map text read-only and data
///   non-executable in the guest's page tables, so the guest takes a page fault and aborts (255);
///   solo5-hvt lets data execute (`XNOW FAIL`) and stops a write to text as a tender error (1).
/// - `sse`: neither tender can run SSE on this machine's emulating KVM (both exit 1 here).
/// - `ringbad` and floods: hostile rings and long floods are ours to survive (HvtRingTests).
@Suite(.enabled(if: Harness.hasKVM && Harness.peerTender != nil, "needs /dev/kvm and ../shared/peers/solo5-hvt"),
       .serialized)
struct HvtPeerParityTests {
    static let cases: [[String]] = [
        ["@hello", "a", "b"], ["@exit", "7"], ["@exit"], ["@abort"], ["@zeropage"],
        ["@trap", "ud2"], ["@trap", "div0"], ["@trap", "gp"], ["@trap", "pf"], ["@time"], ["@demo", "x"],
        ["@hcloop", "100"], ["@putsbad", "beyond"], ["@putsbad", "straddle"], ["@putsbad", "wrap"],
        ["@putsbad", "huge"], ["@hcbad", "beyond"], ["@hcbad", "straddle"], ["@hcbad", "badnr"],
        ["@hcbad", "kick"], ["@tls"], ["--mem=2", "@hello"], ["--mem=5", "@hello"], ["--mem=4", "@demo"],
        ["@blk"], ["@blkbad", "read"], ["@blkbad", "write"], ["@blkbad", "straddle"], ["@blkbad", "wrap"],
    ]

    /// Guest lines only (the tenders' own messages differ in prefix and wording), digits masked.
    static func normalized(_ output: String) -> [String] {
        output.split(separator: "\n").map(String.init)
            .filter { !$0.hasPrefix("swiftlet:") && !$0.hasPrefix("solo5-hvt:") }
            .map { $0.replacingOccurrences(of: "[0-9a-f]*[0-9][0-9a-f]*", with: "#", options: .regularExpression) }
    }

    @Test(arguments: cases)
    func sameUnderTheRealTender(_ template: [String]) throws {
        var args = try HvtGuestTests.resolve(template)
        if template.contains(where: { $0.hasPrefix("@blk") }) {
            args.insert("--block:storage=\(Harness.disk("parity-\(template.joined()).img", size: 64 << 10))", at: 0)
        }
        let ours = Harness.hvt(args)
        let peer = Harness.run(Harness.peerTender!, args)
        #expect(ours.status == peer.status, "\(template): swiftlet \(ours.status), solo5-hvt \(peer.status)\n\(ours.output)\n---\n\(peer.output)")
        #expect(Self.normalized(ours.output) == Self.normalized(peer.output), "\(template):\n\(ours.output)\n---\n\(peer.output)")
    }

    @Test func realUnikernelRunsTheSame() throws {
        // A real v0.12.1 unikernel, built by Solo5's own toolchain.
        let hello = Harness.peers.appendingPathComponent("hello-solo5-v0.12.1.hvt").path
        let ours = Harness.hvt(["--mem=4", hello, "Hello_Solo5"])
        let peer = Harness.run(Harness.peerTender!, ["--mem=4", hello, "Hello_Solo5"])
        #expect(ours.status == 0 && peer.status == 0, "\(ours.output)")
        #expect(ours.output == peer.output)
        #expect(ours.output.contains("SUCCESS"))
    }

    @Test func networkGuestOverTheRing() throws {
        // The same net guest, through the ring, answers ping under both tenders.
        for tender in [[Harness.swiftlet, "hvt"], [Harness.peerTender!]] {
            let output = try HvtRingTests.ping(tender: tender, guestArgs: [])
            #expect(output.contains("net: io=ring") && output.contains("SUCCESS"), "\(tender): \(output)")
        }
    }
}
