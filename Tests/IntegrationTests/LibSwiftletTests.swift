import Foundation
import Testing

/// libswiftlet as a C client sees it (Tests/abi/run against the debug build's libSwiftletC.so):
/// exported symbols and versions, v1's frozen layouts, the C and Rust examples, a hostile client
/// built against the frozen v1 header, the documented limits, the VM level from C (its misuse
/// included) and from Python. The checks are C programs, so this
/// suite only runs them and reports their lines.
@Suite struct LibSwiftletTests {
    static let library = Harness.root.appendingPathComponent(".build/debug/libSwiftletC.so").path

    private func check(_ name: String, needsKVM: Bool = true) throws {
        try #require(FileManager.default.fileExists(atPath: Self.library), "\(Self.library) is missing: `swift build` builds it (scripts/test does)")
        let r = Harness.run("/bin/bash", [Harness.root.appendingPathComponent("Tests/abi/run").path, ".build/debug", name], timeout: 300)
        #expect(r.status == 0, "\(r.output)")
        // Skipped only where the machine lacks what the check needs (/dev/kvm; rustc for Rust).
        #expect(r.output.contains("abi: \(name) ok") || (needsKVM && r.output.contains("skipped")), "\(r.output)")
    }

    @Test func exportsExactlyTheVersionedSymbolsOnRecord() throws { try check("symbols", needsKVM: false) }
    @Test func version1LayoutsHoldInTheFrozenAndTheCurrentHeader() throws { try check("layout", needsKVM: false) }
    @Test func theCExampleRunsItsGuestThroughBothAssists() throws { try check("example") }
    @Test func theRustExampleBuiltWithRustcAloneDoesTheSame() throws { try check("rust") }
    @Test func aHostileVersion1ClientGetsStatusesNeverATrap() throws { try check("bad-input") }
    @Test func aThousandVCPUsAndAHundredMachinesLeaveNoDescriptor() throws { try check("limits") }
    @Test func theVMLevelRunsStopsAndRefusesMisuse() throws { try check("vm-level") }
    @Test func pythonRunsAUnikernelWithABlockDeviceThroughCtypes() throws { try check("python") }
}
