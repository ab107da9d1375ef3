#if canImport(Glibc)
import Glibc
#endif

/// The controlling terminal on standard input: raw mode for a console session (so Ctrl-C and
/// Ctrl-A reach the guest, not the shell), restored on the way out.
public final class Terminal: @unchecked Sendable {
    private let descriptor: Int32
    private var saved: termios?

    /// The terminal on `descriptor` (standard input by default), or nil when it is not a TTY.
    public init?(descriptor: Int32 = 0) {
        guard isatty(descriptor) == 1 else { return nil }
        self.descriptor = descriptor
    }

    /// Whether standard input is a terminal.
    public static var standardInputIsTerminal: Bool { isatty(0) == 1 }

    /// Switches to raw input. With `keepOutputProcessing`, output keeps "\n" → "\r\n" (a guest's
    /// console that writes bare newlines still reads well).
    public func enterRawMode(keepOutputProcessing: Bool = true) {
        var t = termios()
        guard tcgetattr(descriptor, &t) == 0 else { return }
        if saved == nil { saved = t }
        cfmakeraw(&t)
        if keepOutputProcessing { t.c_oflag |= tcflag_t(OPOST) }
        tcsetattr(descriptor, TCSANOW, &t)
    }

    /// Puts back the mode `enterRawMode` found.
    public func restore() {
        guard var t = saved else { return }
        tcsetattr(descriptor, TCSANOW, &t)
    }
}
