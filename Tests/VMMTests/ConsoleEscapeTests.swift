import Testing
import VMM

/// The one console escape (Ctrl-A x) of `swiftlet run` and `swiftlet ctl console`.
@Suite struct ConsoleEscapeTests {
    func run(_ chunks: [[UInt8]]) -> (out: [UInt8], left: Bool) {
        var escape = ConsoleEscape()
        var out: [UInt8] = []
        for chunk in chunks where escape.filter(chunk, into: &out) { return (out, true) }
        return (out, false)
    }

    @Test func ctrlAxLeavesAndDropsWhatFollows() {
        let r = run([[0x61, 0x01, 0x78, 0x62]])
        #expect(r.out == [0x61] && r.left)
    }

    @Test func ctrlACtrlASendsOneCtrlA() {
        let r = run([[0x01, 0x01, 0x63]])
        #expect(r.out == [0x01, 0x63] && !r.left)
    }

    @Test func ctrlAThenAnythingElseSendsBoth() {
        let r = run([[0x01, 0x03]])
        #expect(r.out == [0x01, 0x03] && !r.left)
    }

    @Test func thePrefixMayEndOneReadAndTheKeyStartTheNext() {
        #expect(run([[0x61, 0x01], [0x78]]) == ([0x61], true))
        #expect(run([[0x01], [0x79]]) == ([0x01, 0x79], false))
    }

    @Test func ctrlBracketIsAnOrdinaryByteNow() {
        #expect(run([[0x1d]]) == ([0x1d], false))
    }
}
