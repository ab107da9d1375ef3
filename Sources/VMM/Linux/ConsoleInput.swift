import Devices
import Hypervisor
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Feeds the host's stdin to the guest's serial port. On a TTY it switches the terminal to raw
/// mode (so Ctrl-C reaches the guest) and watches for the escape Ctrl-A x, which stops the VM;
/// `restoreTerminal()` puts the terminal back.
final class ConsoleInput: @unchecked Sendable {
    private let serial: Serial16550
    private let onEscape: @Sendable () -> Void
    private var saved: termios?
    private let isTTY = isatty(0) == 1

    init(serial: Serial16550, onEscape: @escaping @Sendable () -> Void) {
        self.serial = serial
        self.onEscape = onEscape
    }

    func start() {
        if isTTY {
            var t = termios()
            if tcgetattr(0, &t) == 0 {
                saved = t
                cfmakeraw(&t)
                t.c_oflag |= tcflag_t(OPOST) // keep "\n" -> "\r\n" on output
                tcsetattr(0, TCSANOW, &t)
            }
        }
        let serial = self.serial, onEscape = self.onEscape, tty = isTTY
        // A detached reader; the process exits when the VM ends, which ends it too.
        _ = try? VCPUThread(name: "console") {
            var buffer = [UInt8](repeating: 0, count: 512)
            var escape = false
            while true {
                let n = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                var out: [UInt8] = []
                out.reserveCapacity(n)
                for b in buffer[0..<n] {
                    if tty && escape {
                        escape = false
                        if b == UInt8(ascii: "x") { onEscape(); return }
                        if b != 0x01 { out.append(0x01) }
                    } else if tty && b == 0x01 {
                        escape = true
                        continue
                    }
                    out.append(b)
                }
                while !serial.wantsInput { usleep(1000) }
                serial.enqueueInput(out)
            }
        }
    }

    func restoreTerminal() {
        if var t = saved { tcsetattr(0, TCSANOW, &t) }
    }
}
