#if canImport(Glibc)
import Glibc
#endif

/// Scatter/gather I/O on a descriptor (readv/writev): one frame or record per call, straight
/// between the kernel and caller-owned buffers (guest memory, for a virtio device's back end).
public enum VectoredIO {
    /// readv(2) into `vectors[0..<count]`, retried on EINTR. Bytes read (a tap reports a frame's
    /// whole length even when the vectors were shorter), or -errno.
    public static func read(_ fd: Int32, _ vectors: UnsafeMutablePointer<iovec>, count: Int) -> Int {
        retryingInterrupts { readv(fd, vectors, Int32(count)) }
    }

    /// writev(2) from `vectors[0..<count]`, retried on EINTR. Bytes written, or -errno.
    public static func write(_ fd: Int32, _ vectors: UnsafeMutablePointer<iovec>, count: Int) -> Int {
        retryingInterrupts { writev(fd, vectors, Int32(count)) }
    }

    /// Runs `call` again while it fails with EINTR: its result, or -errno.
    @inline(__always)
    private static func retryingInterrupts(_ call: () -> Int) -> Int {
        while true {
            let n = call()
            if n >= 0 { return n }
            if errno != EINTR { return -Int(errno) }
        }
    }
}
