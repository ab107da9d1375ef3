/// What one device has done: requests, bytes the device wrote into the guest (`bytesIn`) and
/// bytes it took from the guest (`bytesOut`). The VM process writes it in `GET /swiftlet/metrics`
/// and swiftletd reads it back, leniently: a field the VM side leaves out counts as 0 (or kind
/// "unknown"), so the two may differ by a version.
public struct DeviceStatistics: Codable, Sendable, Equatable {
    public var id: String
    /// block, net, rng, vsock.
    public var kind: String
    public var requests: UInt64
    public var bytesIn: UInt64
    public var bytesOut: UInt64

    public init(id: String, kind: String, requests: UInt64, bytesIn: UInt64, bytesOut: UInt64) {
        self.id = id; self.kind = kind; self.requests = requests; self.bytesIn = bytesIn; self.bytesOut = bytesOut
    }

    /// The JSON names, one for each field.
    public enum CodingKeys: String, CodingKey { case id, kind, requests, bytesIn = "bytes_in", bytesOut = "bytes_out" }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        kind = try c.decodeIfPresent(String.self, forKey: .kind) ?? "unknown"
        requests = try c.decodeIfPresent(UInt64.self, forKey: .requests) ?? 0
        bytesIn = try c.decodeIfPresent(UInt64.self, forKey: .bytesIn) ?? 0
        bytesOut = try c.decodeIfPresent(UInt64.self, forKey: .bytesOut) ?? 0
    }
}
