import Testing
@testable import Devices

@Suite struct Serial16550Tests {
    let irq = FakeInterruptLine()
    let sent = Recorder<UInt8>()
    let uart: Serial16550

    init() {
        let sent = self.sent
        uart = Serial16550(interrupt: irq) { sent.record($0) }
    }

    // Register offsets, named as in the datasheet.
    let RBR: UInt16 = 0, THR: UInt16 = 0, DLL: UInt16 = 0, IER: UInt16 = 1, DLM: UInt16 = 1
    let IIR: UInt16 = 2, FCR: UInt16 = 2, LCR: UInt16 = 3, MCR: UInt16 = 4, LSR: UInt16 = 5
    let MSR: UInt16 = 6, SCR: UInt16 = 7

    func inb(_ offset: UInt16) -> UInt8 { UInt8(truncatingIfNeeded: uart.read(offset: offset, size: 1)) }
    func outb(_ offset: UInt16, _ value: UInt8) { uart.write(offset: offset, size: 1, value: UInt32(value)) }

    /// The checks Linux's 8250 autoconfig makes before it trusts a port and calls it a 16550A.
    @Test func linuxProbeSequenceFindsA16550A() {
        // IER existence test: the low nibble reads back, the rest stays 0.
        let savedIER = inb(IER)
        outb(IER, 0)
        #expect(inb(IER) & 0x0F == 0)
        outb(IER, 0x0F)
        #expect(inb(IER) & 0x0F == 0x0F)
        outb(IER, 0xFF)
        #expect(inb(IER) == 0x0F)
        outb(IER, savedIER)

        // Loopback test: MCR = LOOP | OUT2 | RTS must show DCD | CTS in the MSR.
        let savedMCR = inb(MCR)
        outb(MCR, 0x10 | 0x0A)
        #expect(inb(MSR) & 0xF0 == 0x90)
        outb(MCR, savedMCR)

        // Scratch register holds what was written.
        for pattern: UInt8 in [0x55, 0xAA, 0x00, 0xFF] {
            outb(SCR, pattern)
            #expect(inb(SCR) == pattern)
        }

        // FIFO detection: with FIFOs enabled, IIR bits 7:6 both set means 16550A.
        outb(LCR, 0)
        #expect(inb(IIR) & 0xC0 == 0)      // an 8250 before FIFOs are on
        outb(FCR, 0x07)
        #expect(inb(IIR) >> 6 == 3)
        #expect(inb(IIR) & 0x20 == 0)      // no 64-byte FIFO: not mistaken for a 16750

        // EFR check (LCR = 0xBF): a 16550A has no EFR, so reg 2 still reads IIR, never 0.
        outb(LCR, 0xBF)
        #expect(inb(IIR) != 0)
        outb(LCR, 0)
        // Only the IER test's THRI bit raised the line, and restoring IER dropped it.
        #expect(irq.history == [true, false])
    }

    @Test func divisorLatchIsBehindDLAB() {
        outb(IER, 0x05)
        outb(LCR, 0x80 | 0x03)
        outb(DLL, 0x01)                    // 115200 baud
        outb(DLM, 0x00)
        #expect(inb(DLL) == 0x01)
        #expect(inb(DLM) == 0x00)
        #expect(sent.all.isEmpty)          // a DLL write is not a transmit
        outb(LCR, 0x03)                    // 8N1, DLAB off
        #expect(inb(LCR) == 0x03)
        #expect(inb(IER) == 0x05)          // IER kept its value under the latch
        outb(LCR, 0x83)
        #expect(inb(DLL) == 0x01)
        #expect(inb(DLM) == 0x00)
    }

    @Test func transmitGoesToTheSinkAtOnce() {
        #expect(inb(LSR) == 0x60)          // THRE and TEMT
        for byte in "hi\n".utf8 { outb(THR, byte) }
        #expect(sent.all == Array("hi\n".utf8))
        #expect(inb(LSR) == 0x60)
        #expect(irq.history.isEmpty)       // THR-empty interrupt not enabled
    }

    @Test func receiveRaisesTheInterruptAndDataReady() {
        outb(IER, 0x01)
        #expect(irq.history.isEmpty)
        #expect(uart.enqueueInput(Array("ab".utf8)) == 2)
        #expect(irq.level)
        #expect(inb(LSR) == 0x61)
        #expect(inb(IIR) == 0x04)
        #expect(inb(RBR) == UInt8(ascii: "a"))
        #expect(irq.level)
        #expect(inb(RBR) == UInt8(ascii: "b"))
        #expect(!irq.level)
        #expect(inb(LSR) == 0x60)
        #expect(inb(IIR) == 0x01)
        #expect(irq.history == [true, false])
    }

    @Test func receiveWithoutTheInterruptEnabledIsPolled() {
        uart.enqueueInput([0x41])
        #expect(irq.history.isEmpty)
        #expect(inb(LSR) & 0x01 == 1)
        outb(IER, 0x01)                    // enabling with data queued raises it
        #expect(irq.level)
        #expect(inb(RBR) == 0x41)
        #expect(!irq.level)
        #expect(inb(RBR) == 0)             // empty receiver
    }

    @Test func thrEmptyInterruptIsRaisedOnEnableAndAcknowledgedByIIR() {
        outb(IER, 0x02)
        #expect(irq.level)
        #expect(inb(IIR) == 0x02)          // reading it is the acknowledgement
        #expect(!irq.level)
        #expect(inb(IIR) == 0x01)
        // Every transmitted byte re-arms it, with a fresh edge.
        outb(THR, 0x41)
        #expect(irq.level)
        outb(THR, 0x42)
        #expect(irq.risingEdges == 3)
        // Disabling the source drops the line.
        outb(IER, 0)
        #expect(!irq.level)
        #expect(inb(IIR) == 0x01)
    }

    /// Linux's startup THRE test: IER = THRI twice, IIR must report THRI both times.
    @Test func linuxTHRETestSeesTheInterruptReassert() {
        outb(IER, 0x02)
        #expect(inb(IIR) & 0x0F == 0x02)
        outb(IER, 0)
        outb(IER, 0x02)
        #expect(inb(IIR) & 0x0F == 0x02)
        outb(IER, 0)
        #expect(!irq.level)
    }

    @Test func interruptPrioritiesFollowTheDatasheet() {
        outb(FCR, 0x01)
        outb(MCR, 0x10)                    // loopback, all outputs off
        _ = inb(MSR)                       // clear the deltas from entering loopback
        outb(IER, 0x0B)                    // received data, THR empty, modem status
        outb(MCR, 0x10 | 0x02)             // RTS on -> CTS changes -> modem status pending
        uart.enqueueInput([1, 2])
        #expect(irq.level)
        #expect(inb(IIR) == 0xC4)          // received data first
        #expect(inb(IIR) == 0xC4)          // ... and reading IIR does not clear it
        _ = inb(RBR); _ = inb(RBR)
        #expect(inb(IIR) == 0xC2)          // then THR empty, cleared by this read
        #expect(inb(IIR) == 0xC0)          // then modem status
        #expect(inb(MSR) == 0x10 | 0x01)   // CTS, delta CTS; the read clears the delta
        #expect(inb(IIR) == 0xC1)
        #expect(!irq.level)
    }

    @Test func loopbackSendsTransmitToTheReceiver() {
        outb(MCR, 0x10)
        outb(THR, 0x5A)
        #expect(sent.all.isEmpty)
        #expect(inb(LSR) & 0x01 == 1)
        #expect(inb(RBR) == 0x5A)
        outb(MCR, 0x0B)                    // leave loopback: DTR | RTS | OUT2
        #expect(inb(MSR) & 0xF0 == 0xB0)   // a connected terminal again
        outb(THR, 0x5B)
        #expect(sent.all == [0x5B])
    }

    @Test func loopbackMirrorsEveryModemLine() {
        let cases: [(mcr: UInt8, msrHigh: UInt8)] = [
            (0x10, 0x00), (0x11, 0x20), (0x12, 0x10), (0x14, 0x40), (0x18, 0x80), (0x1F, 0xF0),
        ]
        for c in cases {
            outb(MCR, c.mcr)
            #expect(inb(MSR) & 0xF0 == c.msrHigh, "MCR 0x\(String(c.mcr, radix: 16))")
        }
        // RI going off sets TERI (bit 2); RI coming on does not.
        outb(MCR, 0x14)
        _ = inb(MSR)
        outb(MCR, 0x10)
        #expect(inb(MSR) & 0x0F == 0x04)
        outb(MCR, 0x14)
        #expect(inb(MSR) & 0x0F == 0x00)
    }

    @Test func inputIsBoundedAndDropsAreCounted() {
        let small = Serial16550(interrupt: irq, inputCapacity: 4) { _ in }
        #expect(small.wantsInput)
        #expect(small.enqueueInput([1, 2, 3, 4, 5, 6]) == 4)
        #expect(small.droppedInputBytes == 2)
        #expect(!small.wantsInput)
        #expect(small.inputSpace == 0)
        #expect(small.read(offset: 0, size: 1) == 1)
        #expect(small.wantsInput)
        // The ring wraps: keep FIFO order across the wrap point.
        #expect(small.enqueueInput([7]) == 1)
        var got: [UInt32] = []
        while small.read(offset: 5, size: 1) & 1 == 1 { got.append(small.read(offset: 0, size: 1)) }
        #expect(got == [2, 3, 4, 7])
    }

    @Test func consoleIsWokenWhenAFullQueueDrainsToHalf() {
        let wakes = Recorder<Int>()
        let small = Serial16550(interrupt: irq, inputCapacity: 8, onInputSpace: { wakes.record(1) }) { _ in }
        small.enqueueInput([1, 2, 3, 4, 5, 6, 7])     // not full: nobody is owed a wake-up
        for _ in 0..<7 { _ = small.read(offset: 0, size: 1) }
        #expect(wakes.all.isEmpty)
        small.enqueueInput(Array(repeating: 0, count: 10))
        #expect(!small.wantsInput)
        for _ in 0..<3 { _ = small.read(offset: 0, size: 1) }
        #expect(wakes.all.isEmpty)                    // 5 left, above half
        _ = small.read(offset: 0, size: 1)
        #expect(wakes.all.count == 1)                 // 4 left: half
        for _ in 0..<4 { _ = small.read(offset: 0, size: 1) }
        #expect(wakes.all.count == 1)                 // once per full episode
    }

    @Test func fifoClearKeepsQueuedInput() {
        uart.enqueueInput([9])
        outb(FCR, 0x07)
        #expect(inb(RBR) == 9)
    }

    /// A console thread feeding input while a "vCPU" drains it: nothing lost, order kept.
    @Test func concurrentInputAndReads() async {
        let total = 20_000
        let small = Serial16550(interrupt: irq, inputCapacity: 64) { _ in }
        await withTaskGroup(of: [UInt8].self) { group in
            group.addTask {
                var next = 0
                while next < total {
                    guard small.wantsInput else { await Task.yield(); continue }
                    let chunk = (next..<min(total, next + small.inputSpace)).map { UInt8(truncatingIfNeeded: $0) }
                    next += small.enqueueInput(chunk)
                }
                return []
            }
            group.addTask {
                var received: [UInt8] = []
                while received.count < total {
                    if small.read(offset: 5, size: 1) & 1 == 1 {
                        received.append(UInt8(small.read(offset: 0, size: 1)))
                    } else {
                        await Task.yield()
                    }
                }
                return received
            }
            for await received in group where !received.isEmpty {
                #expect(received == (0..<total).map { UInt8(truncatingIfNeeded: $0) })
            }
        }
        #expect(small.droppedInputBytes == 0)
    }
}
