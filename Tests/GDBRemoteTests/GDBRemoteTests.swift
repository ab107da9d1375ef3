import GDBRemote
import Testing

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Packet framing: checksums, escapes, acknowledgements, Ctrl-C and hostile lengths.
@Suite struct GDBPacketCodecTests {
    func events(_ input: String, maximum: Int = 64) -> [GDBPacketEvent] {
        var decoder = GDBPacketDecoder(maximumPayload: maximum)
        var out: [GDBPacketEvent] = []
        decoder.feed(bytes(input)) { out.append($0) }
        return out
    }

    @Test func wellFormedPackets() {
        #expect(events("$g#67") == [.packet(bytes("g"))])
        #expect(events("+$?#3f-") == [.ack, .packet(bytes("?")), .nak])
        #expect(events("$m100020,1#ED") == [.packet(bytes("m100020,1"))])   // upper-case checksum
        #expect(events("\u{03}") == [.interrupt])
        #expect(events("junk$g#67") == [.packet(bytes("g"))])
    }

    @Test func splitAcrossReads() {
        var decoder = GDBPacketDecoder()
        var out: [GDBPacketEvent] = []
        for chunk in ["$q", "Supported", "#3", "7"] { decoder.feed(bytes(chunk)) { out.append($0) } }
        #expect(out == [.packet(bytes("qSupported"))])
    }

    @Test func badChecksumsAndCutPackets() {
        #expect(events("$g#00") == [.badChecksum])
        #expect(events("$g#zz") == [.badChecksum])
        // A new '$' restarts the packet, as GDB stubs do.
        #expect(events("$gar$g#67") == [.packet(bytes("g"))])
    }

    @Test func escapesAreUndone() {
        // X payload with an escaped '#' (0x23 -> '}' 0x03).
        let payload: [UInt8] = bytes("X10,1:") + [0x7D, 0x03]
        let framed = GDBPacketEncoder.frame(Array(bytes("X10,1:")) + [0x23])
        #expect(Array(framed.dropFirst().prefix(payload.count)) == payload)
        var decoder = GDBPacketDecoder()
        var out: [GDBPacketEvent] = []
        decoder.feed(framed) { out.append($0) }
        #expect(out == [.packet(bytes("X10,1:") + [0x23])])
    }

    @Test func oversizedPacketsAreDroppedWhole() {
        let long = String(repeating: "a", count: 100)
        let sum = long.utf8.reduce(UInt8(0)) { $0 &+ $1 }
        let hex = String(sum, radix: 16)
        #expect(events("$" + long + "#" + (hex.count == 1 ? "0" + hex : hex) + "$g#67") == [.tooLong, .packet(bytes("g"))])
    }

    @Test func hex() {
        #expect(Hex.decode(bytes("00ff7F")) == [0, 255, 127])
        #expect(Hex.decode(bytes("0")) == nil)
        #expect(Hex.decode(bytes("zz")) == nil)
        #expect(Hex.number(bytes("100020")) == 0x100020)
        #expect(Hex.number(bytes("11111111111111111")) == nil)  // more than 64 bits
        #expect(String(decoding: GDBPacketEncoder.frame("OK"), as: UTF8.self) == "$OK#9a")
    }
}

/// Requests as parsed from payloads, the malformed ones included.
@Suite struct GDBRequestTests {
    func request(_ s: String) -> GDBRequest { GDBRequest(bytes(s)) }

    @Test func parsing() {
        #expect(request("?") == .haltReason)
        #expect(request("g") == .readRegisters)
        #expect(request("G0102") == .writeRegisters([1, 2]))
        #expect(request("p10") == .readRegister(16))
        #expect(request("P10=2000100000000000") == .writeRegister(16, [0x20, 0, 0x10, 0, 0, 0, 0, 0]))
        #expect(request("m100020,40") == .readMemory(address: 0x100020, length: 0x40))
        #expect(request("M10,2:abcd") == .writeMemory(address: 0x10, bytes: [0xAB, 0xCD]))
        #expect(request("X10,2:ab") == .writeMemory(address: 0x10, bytes: [0x61, 0x62]))
        #expect(request("c") == .resume(address: nil))
        #expect(request("c100020") == .resume(address: 0x100020))
        #expect(request("s") == .step(address: nil))
        #expect(request("C05") == .resume(address: nil))
        #expect(request("S05;1000") == .step(address: 0x1000))
        #expect(request("Z0,100fc0,1") == .insertBreakpoint(.software, address: 0x100fc0, length: 1))
        #expect(request("z2,2000,4") == .removeBreakpoint(.writeWatch, address: 0x2000, length: 4))
        #expect(request("D") == .detach)
        #expect(request("D;1") == .detach)
        #expect(request("k") == .kill)
        #expect(request("vKill;1") == .kill)
        #expect(request("qSupported:swbreak+;hwbreak+") == .querySupported)
        #expect(request("QStartNoAckMode") == .startNoAckMode)
        #expect(request("qAttached") == .query("qAttached"))
        #expect(request("Hg0") == .setThread)
        #expect(request("vCont?") == .unsupported)
        #expect(request("!") == .unsupported)
    }

    @Test func malformed() {
        #expect(request("m100020") == .malformed)
        #expect(request("mzz,1") == .malformed)
        #expect(request("m1,11111111111111111") == .malformed)
        #expect(request("M10,3:abcd") == .malformed)            // length disagrees with data
        #expect(request("M10,2:abc") == .malformed)             // odd hex
        #expect(request("G012") == .malformed)
        #expect(request("Z0,zz,1") == .malformed)
        #expect(request("Z9,1000,1") == .unsupported)           // unknown kind: GDB falls back
        #expect(request("pzz") == .malformed)
        #expect(request("P10") == .malformed)
        #expect(request("cq") == .malformed)
        #expect(request("gx") == .malformed)
    }

    @Test func registerLayout() {
        #expect(AMD64Registers.count == 65 && AMD64Registers.builtinCount == 57)
        #expect(AMD64Registers.builtinByteCount == 536 && AMD64Registers.byteCount == 600)
        var r = AMD64Registers()
        r[.rip] = 0x1122334455667788
        #expect(Array(r.bytes(of: 16)) == [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])
        #expect(Array(r.bytes[128..<136]) == [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])
        r[.eflags] = 0x1_0000_0246                               // 4 bytes: truncated
        #expect(r[.eflags] == 0x246)
        #expect(AMD64Registers.size(of: 24) == 10 && AMD64Registers.size(of: 40) == 16)
    }
}

/// A whole session over an in-memory transport and a fake target: what GDB sends, what the stub
/// answers, including to hostile input.
@Suite struct GDBSessionTests {
    final class Pipe: GDBTransport {
        var input: [[UInt8]]
        var sent: [UInt8] = []
        init(_ chunks: [String]) { input = chunks.map { Array($0.utf8) } }
        func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
            guard !input.isEmpty else { return nil }
            let chunk = input.removeFirst()
            let n = min(chunk.count, buffer.count)
            for i in 0..<n { buffer[i] = chunk[i] }
            if n < chunk.count { input.insert(Array(chunk[n...]), at: 0) }
            return n
        }
        func send(_ bytes: [UInt8]) -> Bool { sent += bytes; return true }
        var text: String { String(decoding: sent, as: UTF8.self) }
    }

    final class FakeTarget: GDBTarget {
        var registers = AMD64Registers()
        var memory = [UInt8](repeating: 0xAA, count: 0x100)
        var breakpoints: [UInt64] = []
        func readRegisters() -> AMD64Registers? { registers }
        func writeRegisters(_ r: AMD64Registers) -> Bool { registers = r; return true }
        func readMemory(at address: UInt64, count: Int) -> [UInt8] {
            guard address < UInt64(memory.count) else { return [] }
            return Array(memory[Int(address)..<min(memory.count, Int(address) + count)])
        }
        func writeMemory(at address: UInt64, bytes: [UInt8]) -> Bool {
            guard address <= UInt64(memory.count), bytes.count <= memory.count - Int(address) else { return false }
            memory.replaceSubrange(Int(address)..<Int(address) + bytes.count, with: bytes)
            return true
        }
        func insertBreakpoint(_ kind: GDBRequest.BreakpointKind, address: UInt64, length: UInt64) -> GDBBreakpointResult {
            guard kind == .software else { return .unsupported }
            guard address < UInt64(memory.count) else { return .failed }
            breakpoints.append(address)
            return .done
        }
        func removeBreakpoint(_ kind: GDBRequest.BreakpointKind, address: UInt64, length: UInt64) -> GDBBreakpointResult { .done }
    }

    func packet(_ s: String) -> String { String(decoding: GDBPacketEncoder.frame(s), as: UTF8.self) }

    @Test func aTypicalStartAndContinue() {
        let pipe = Pipe([packet("qSupported:swbreak+"), packet("?"), packet("g"), packet("m10,4"),
                         packet("Z0,20,1"), packet("c")])
        let target = FakeTarget()
        target.registers[.rip] = 0x20
        let session = GDBSession(transport: pipe, target: target)
        #expect(session.serve(stop: .signal(5), announce: false) == .resume)
        let t = pipe.text
        #expect(t.contains(packet("PacketSize=4000;QStartNoAckMode+;swbreak+;hwbreak+;qXfer:features:read+")))
        #expect(t.contains(packet("S05")))
        #expect(t.contains(packet("aaaaaaaa")))
        #expect(t.contains(packet("OK")))
        #expect(target.breakpoints == [0x20])
        #expect(t.contains("$" + String(repeating: "0", count: 256) + "2000000000000000"))   // rip after 16 GPRs
        // The stop after the breakpoint says why, as swbreak was negotiated.
        session.reportExit(status: 3)
        #expect(pipe.text.hasSuffix(packet("W03")))
    }

    @Test func hostileInputGetsErrorsNotCrashes() {
        let huge = "m" + String(repeating: "1", count: 20000)
        let pipe = Pipe([
            "$g#00",                                   // bad checksum
            packet(huge),                              // longer than PacketSize
            packet("m1000,10"),                        // outside the target's memory
            packet("mffffffffffffffff,ffffffffffffffff"),
            packet("M0,ffffffffffffffff:00"),
            packet("Z0,1000,1"),                       // breakpoint outside memory
            packet("G00"),                             // short register write: applied as far as it goes
            packet("p999"),                            // no such register
            packet("P0=00"),                           // wrong size
            packet("qXfer:features:read:target.xml:0,fff"),
            packet("vCont;c"),
            "\u{03}",                                  // Ctrl-C while stopped: ignored
            packet("?"),
            packet("D"),
        ])
        let session = GDBSession(transport: pipe, target: FakeTarget())
        #expect(session.serve(stop: .signal(5), announce: false) == .detach)
        let t = pipe.text
        #expect(t.hasPrefix("-"))
        #expect(t.ranges(of: packet("E01")).count >= 5, "\(t)")
        #expect(t.contains(packet("E14")))
        #expect(t.contains(packet("")))
        #expect(t.contains(packet("S05")))
        #expect(t.hasSuffix(packet("OK")))
    }

    @Test func partialReadsAtTheEndOfMemory() {
        let pipe = Pipe([packet("mf0,100"), packet("k")])
        let session = GDBSession(transport: pipe, target: FakeTarget())
        #expect(session.serve(stop: .signal(5), announce: false) == .kill)
        #expect(pipe.text.contains(packet(String(repeating: "aa", count: 16))))
    }

    @Test func noAckModeAndRetransmission() {
        let pipe = Pipe([packet("?"), "-", packet("QStartNoAckMode"), packet("?"), packet("s")])
        let session = GDBSession(transport: pipe, target: FakeTarget())
        #expect(session.serve(stop: .softwareBreakpoint, announce: true) == .step)
        let t = pipe.text
        // Without swbreak negotiated a breakpoint is plain S05; a NAK resends the last reply;
        // after QStartNoAckMode no more '+'.
        #expect(t.hasPrefix(packet("S05") + "+" + packet("S05") + packet("S05") + "+" + packet("OK")))
        #expect(t.hasSuffix(packet("OK") + packet("S05")))
    }

    @Test func targetDescriptionInPiecesAndTheLongerRegisterFile() {
        let pipe = Pipe([packet("g"), packet("qXfer:features:read:target.xml:0,400"),
                         packet("qXfer:features:read:target.xml:400,fffff"), packet("qXfer:features:read:other.xml:0,10"),
                         packet("g"), packet("k")])
        let session = GDBSession(transport: pipe, target: FakeTarget())
        _ = session.serve(stop: .signal(5), announce: false)
        let t = pipe.text
        // Before GDB read the description: its built-in 536 bytes; after: all 600.
        #expect(t.contains("$" + String(repeating: "0", count: 1072) + "#"))
        #expect(t.contains("$" + String(repeating: "0", count: 1200) + "#"))
        let xml = AMD64Registers.targetDescription
        #expect(t.contains(packet("m" + String(xml.prefix(0x400)))))
        #expect(t.contains(packet("l" + String(xml.dropFirst(0x400)))))
        #expect(xml.contains("org.gnu.gdb.i386.core") && xml.contains("\"cr2\"") && xml.contains("\"fs_base\""))
    }

    @Test func disconnectWhileStopped() {
        let session = GDBSession(transport: Pipe([packet("?")]), target: FakeTarget())
        #expect(session.serve(stop: .signal(5), announce: false) == .disconnected)
    }

    @Test func interruptWhileRunning() {
        let session = GDBSession(transport: Pipe([]), target: FakeTarget())
        #expect(session.takeRunningInput([0x2B, 0x03][...]))
        #expect(!session.takeRunningInput([0x2B][...]))
    }

    @Test func watchpointStopsNameTheAddress() {
        let pipe = Pipe([packet("qSupported"), packet("c")])
        let session = GDBSession(transport: pipe, target: FakeTarget())
        _ = session.serve(stop: .signal(5), announce: false)
        #expect(session.serve(stop: .watchpoint(.writeWatch, address: 0x2000)) == .disconnected)
        #expect(pipe.text.contains(packet("T05watch:2000;")))
    }
}
