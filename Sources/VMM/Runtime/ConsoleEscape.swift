/// The one console escape of every swiftlet console on a terminal: Ctrl-A then x leaves it
/// (`swiftlet run` stops the VM, `swiftlet ctl console` detaches); Ctrl-A Ctrl-A sends one Ctrl-A to
/// the guest; Ctrl-A then anything else sends both. QEMU's and screen's habit, so hands know it.
public struct ConsoleEscape: Sendable {
    /// Ctrl-A.
    public static let prefix: UInt8 = 0x01
    /// What follows the prefix to leave.
    public static let leave = UInt8(ascii: "x")
    /// How the escape is written in messages.
    public static let text = "Ctrl-A x"

    private var afterPrefix = false

    public init() {}

    /// Appends to `out` the bytes of `input` meant for the guest; returns true when the escape was
    /// typed (the bytes after it are dropped). A prefix at the end of `input` waits for the next call.
    public mutating func filter(_ input: some Sequence<UInt8>, into out: inout [UInt8]) -> Bool {
        for byte in input {
            if afterPrefix {
                afterPrefix = false
                if byte == Self.leave { return true }
                if byte != Self.prefix { out.append(Self.prefix) }
                out.append(byte)
            } else if byte == Self.prefix {
                afterPrefix = true
            } else {
                out.append(byte)
            }
        }
        return false
    }
}
