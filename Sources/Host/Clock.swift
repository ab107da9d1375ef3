#if canImport(Glibc)
import Glibc
#endif

/// The host's clocks and sleeping: the one place our code calls clock_gettime(2) and nanosleep.
public enum Clock {
    /// Wall-clock time (CLOCK_REALTIME) in nanoseconds since the Unix epoch.
    public static func realtimeNanoseconds() -> UInt64 { read(CLOCK_REALTIME) }

    /// Monotonic time (CLOCK_MONOTONIC) in nanoseconds since an arbitrary start: for durations.
    public static func monotonicNanoseconds() -> UInt64 { read(CLOCK_MONOTONIC) }

    /// Wall-clock time as seconds and nanoseconds since the epoch (for timestamps in logs).
    public static func realtime() -> (seconds: Int, nanoseconds: Int) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return (ts.tv_sec, ts.tv_nsec)
    }

    /// Sleeps the calling thread for `milliseconds` (a poll interval; never on a hot path).
    public static func sleep(milliseconds: Int) {
        var request = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }

    private static func read(_ clock: clockid_t) -> UInt64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
