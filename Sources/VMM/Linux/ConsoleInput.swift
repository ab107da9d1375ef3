import Devices
import Host

/// The guest's serial input, fed by a console thread (stdin or a console socket's client). While
/// the UART's receive queue is full the thread sleeps on an eventfd the UART signals when the
/// guest has drained it (`Serial16550.onInputSpace`), instead of polling.
final class SerialInput: Sendable {
    let serial: Serial16550
    private let space: EventFD

    /// A 16550 on `interrupt` whose output goes to `output`, with its input side.
    init(interrupt: any InterruptLine, output: @escaping @Sendable (UInt8) -> Void) throws(HostError) {
        let space = try EventFD()
        self.space = space
        serial = Serial16550(interrupt: interrupt, onInputSpace: { space.signal() }, output: output)
    }

    /// Queues `bytes` for the guest once its receive queue has room.
    func feed(_ bytes: [UInt8]) {
        while !serial.wantsInput {
            // The timeout only guards against a wake-up the UART never sends (a FIFO reset).
            _ = space.waitReadable(or: space, timeoutMilliseconds: 200)
            _ = space.drain()
        }
        serial.enqueueInput(bytes)
    }
}

/// Feeds the host's stdin to the guest's serial port. On a TTY it switches the terminal to raw
/// mode (so Ctrl-C reaches the guest) and watches for the escape Ctrl-A x, which stops the VM;
/// `restoreTerminal()` puts the terminal back.
final class ConsoleInput: @unchecked Sendable {
    private let input: SerialInput
    private let onEscape: @Sendable () -> Void
    private let terminal = Terminal(descriptor: 0)

    init(input: SerialInput, onEscape: @escaping @Sendable () -> Void) {
        self.input = input
        self.onEscape = onEscape
    }

    func start() {
        terminal?.enterRawMode(keepOutputProcessing: true) // keep "\n" -> "\r\n" on output
        guard let stdin = try? FileDescriptor.duplicate(standardStream: 0) else { return }
        let input = self.input, onEscape = self.onEscape, tty = terminal != nil
        // A detached reader; the process exits when the VM ends, which ends it too.
        _ = try? HostThread(name: "console", role: .device) {
            var buffer = [UInt8](repeating: 0, count: 512)
            var escape = ConsoleEscape()
            while true {
                // End of input, or an error: nothing more will come.
                let n = buffer.withUnsafeMutableBytes { (try? stdin.read(into: $0)) ?? 0 }
                guard n > 0 else { return }
                // Only a terminal has an escape: piped input goes to the guest byte for byte.
                guard tty else { input.feed(Array(buffer[0..<n])); continue }
                var out: [UInt8] = []
                out.reserveCapacity(n + 1)
                let leave = escape.filter(buffer[0..<n], into: &out)
                if !out.isEmpty { input.feed(out) }
                if leave { onEscape(); return }
            }
        }
    }

    func restoreTerminal() { terminal?.restore() }
}
