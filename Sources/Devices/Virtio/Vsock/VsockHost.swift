/// The host side of a virtio-vsock device, as the device sees it: byte streams named by a token,
/// and the events that open and wake them. Backends implements it with Firecracker's hybrid vsock
/// over Unix sockets (`VsockMuxer`: a program connects to `uds_path` and writes `CONNECT <port>\n`;
/// a guest connection to host port P connects to `uds_path_P`).
///
/// Every call comes from the device under its own lock, so an implementation needs no locking
/// of its own.
public protocol VsockHost: AnyObject, Sendable {
    /// What the device's event loop polls: readable when `pollEvents` has something to report.
    var readinessSource: Int32 { get }
    /// Streams open now, including host connections still waiting for their `CONNECT` line.
    var streamCount: Int { get }
    /// Starts taking host-initiated connections (the driver is there to serve them).
    func startListening()
    /// Stops taking them (the driver reset the device).
    func stopListening()
    /// Reports what happened since the last call, without blocking. Returns the number of ready
    /// host events seen (0: nothing was ready).
    func pollEvents(_ handle: (VsockHostEvent) -> Void) -> Int
    /// Opens a stream to the host's listener for `port` (guest-initiated); nil when nobody
    /// listens there or too many streams are open.
    func connect(port: UInt32) -> UInt64?
    /// The guest accepted host-initiated `stream` on `localPort`: tells the host program. False
    /// when it could not be told (the stream is then useless).
    func accepted(_ stream: UInt64, localPort: UInt32) -> Bool
    /// Reads what `stream` has for the guest into `buffer`.
    func receive(_ stream: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> VsockTransfer
    /// Writes guest data to `stream`.
    func send(_ stream: UInt64, _ bytes: UnsafeRawBufferPointer) -> VsockTransfer
    /// The guest sends no more on `stream`: the host reads end of stream.
    func shutdownWrite(_ stream: UInt64)
    /// Closes `stream`.
    func close(_ stream: UInt64)
    /// Closes every stream (the listener stays).
    func closeAll()
}

/// Something that happened on the host side of vsock.
public enum VsockHostEvent: Equatable, Sendable {
    /// A host program asked for guest port `port` on the new `stream`.
    case connectRequest(stream: UInt64, port: UInt32)
    /// `stream` may be readable or writable again (edge seen).
    case ready(stream: UInt64)
}

/// The outcome of one transfer on a host stream.
public enum VsockTransfer: Equatable, Sendable {
    /// This many bytes moved (a receive never reports 0: that is `closed`).
    case bytes(Int)
    /// Nothing can move now; a `ready` event follows when it can.
    case wouldBlock
    /// End of stream, or the stream failed.
    case closed
}
