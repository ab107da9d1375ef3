#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// An MC146818-compatible CMOS RTC at ports 0x70 (index) / 0x71 (data), as Linux reads it for the
/// wall clock at boot.
///
/// The time registers are computed from the host clock (UTC) on every read, so the guest clock
/// never drifts and nothing ticks in the background. The guest cannot set the clock: writes to
/// the time registers are ignored. Status registers: A reads 0x26 with UIP (bit 7) always clear,
/// because the "update" is instantaneous; B defaults to 0x02 (24-hour, BCD) and its DM (bit 2)
/// and 24/12 (bit 1) bits change the encoding; C reads 0 (no interrupt sources, and no IRQ 8
/// wired); D reads 0x80 (valid RAM and time). Every other index is a byte of battery-backed RAM.
public final class CMOSRTC: PortIODevice {
    /// Base port (index register) and the number of ports.
    public static let basePort: UInt16 = 0x70
    public static let portCount: UInt16 = 2

    // Register indices.
    static let seconds: UInt8 = 0x00, minutes: UInt8 = 0x02, hours: UInt8 = 0x04
    static let weekday: UInt8 = 0x06, dayOfMonth: UInt8 = 0x07, month: UInt8 = 0x08
    static let year: UInt8 = 0x09, statusA: UInt8 = 0x0A, statusB: UInt8 = 0x0B
    static let statusC: UInt8 = 0x0C, statusD: UInt8 = 0x0D, century: UInt8 = 0x32

    static let statusAUpdateInProgress: UInt8 = 0x80
    static let statusBBinary: UInt8 = 0x04, statusB24Hour: UInt8 = 0x02
    static let statusDValid: UInt8 = 0x80
    static let hourPM: UInt8 = 0x80

    struct State {
        var index: UInt8 = 0
        var ram = [UInt8](repeating: 0, count: 128)

        init() {
            // 32.768 kHz time base, 1024 Hz periodic rate: the usual BIOS setting.
            ram[Int(CMOSRTC.statusA)] = 0x26
            ram[Int(CMOSRTC.statusB)] = CMOSRTC.statusB24Hour
        }
    }

    private let state = Mutex(State())
    private let now: @Sendable () -> Int

    /// `now` returns seconds since the Unix epoch (UTC): the host clock (Backends' `init()`), or a
    /// fixed time in tests.
    public init(now: @escaping @Sendable () -> Int) {
        self.now = now
    }

    /// Sets a CMOS RAM byte before boot (firmware conventions such as memory-size bytes). Index
    /// bits above 6 are ignored; the computed registers (time, A-D, century) are not affected.
    public func setRAM(_ value: UInt8, at index: UInt8) {
        state.withLock { $0.ram[Int(index & 0x7F)] = value }
    }

    public func read(offset: UInt16, size: Int) -> UInt32 {
        // The index port is write-only on the MC146818; a read sees a floating bus.
        guard offset == 1 else { return 0xFF }
        return UInt32(state.withLock { s in register(s.index, ram: s.ram) })
    }

    public func write(offset: UInt16, size: Int, value: UInt32) {
        let byte = UInt8(truncatingIfNeeded: value)
        state.withLock { s in
            if offset == 0 {
                // Bit 7 of port 0x70 is the NMI mask on PCs, not part of the index.
                s.index = byte & 0x7F
                return
            }
            switch s.index {
            case Self.seconds, Self.minutes, Self.hours, Self.weekday, Self.dayOfMonth, Self.month,
                 Self.year, Self.century, Self.statusC, Self.statusD:
                // The clock follows the host and C/D are read-only.
                break
            case Self.statusA:
                // UIP is read-only.
                s.ram[Int(Self.statusA)] = byte & ~Self.statusAUpdateInProgress
            default:
                s.ram[Int(s.index)] = byte
            }
        }
    }

    /// The value of CMOS register `index`.
    private func register(_ index: UInt8, ram: [UInt8]) -> UInt8 {
        let statusB = ram[Int(Self.statusB)]
        let binary = statusB & Self.statusBBinary != 0
        func encode(_ value: Int) -> UInt8 { binary ? UInt8(value) : Self.bcd(value) }

        switch index {
        case Self.seconds, Self.minutes, Self.hours, Self.weekday, Self.dayOfMonth, Self.month,
             Self.year, Self.century:
            let t = Self.civilTime(now())
            switch index {
            case Self.seconds: return encode(t.second)
            case Self.minutes: return encode(t.minute)
            case Self.hours:
                if statusB & Self.statusB24Hour != 0 { return encode(t.hour) }
                // 12-hour mode: 12, 1 ... 11 with bit 7 set for PM.
                let hour12 = t.hour % 12 == 0 ? 12 : t.hour % 12
                return encode(hour12) | (t.hour >= 12 ? Self.hourPM : 0)
            case Self.weekday: return encode(t.weekday)
            case Self.dayOfMonth: return encode(t.day)
            case Self.month: return encode(t.month)
            case Self.year: return encode(t.year % 100)
            default: return encode(t.year / 100)
            }
        case Self.statusA: return ram[Int(Self.statusA)] & ~Self.statusAUpdateInProgress
        case Self.statusC: return 0
        case Self.statusD: return Self.statusDValid
        default: return ram[Int(index)]
        }
    }

    /// Two decimal digits packed as BCD (0...99).
    static func bcd(_ value: Int) -> UInt8 { UInt8((value / 10) << 4 | value % 10) }

    /// Broken-down UTC time; weekday 1 = Sunday ... 7 = Saturday as the MC146818 counts.
    struct CivilTime: Equatable {
        var year, month, day, hour, minute, second, weekday: Int
    }

    static func civilTime(_ epochSeconds: Int) -> CivilTime {
        var t = time_t(epochSeconds)
        var parts = tm()
        // gmtime_r fills caller storage: no allocation, no shared static buffer.
        _ = gmtime_r(&t, &parts)
        return CivilTime(year: Int(parts.tm_year) + 1900, month: Int(parts.tm_mon) + 1, day: Int(parts.tm_mday),
                         hour: Int(parts.tm_hour), minute: Int(parts.tm_min), second: Int(parts.tm_sec),
                         weekday: Int(parts.tm_wday) + 1)
    }
}
