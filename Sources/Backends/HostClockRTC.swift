import Devices
import Host

extension CMOSRTC {
    /// An RTC that follows the host's wall clock (UTC).
    public convenience init() { self.init(now: { Clock.realtime().seconds }) }
}
