import Devices
import GuestMemory
#if canImport(Glibc)
import Glibc
#endif

extension FuzzTargets {
    /// virtio-blk's request processing (Devices' VirtioBlock and BlockRequestProcessor) behind
    /// the real virtio-pci transport, over fuzzed guest RAM and queue state, with an in-memory
    /// disk of a few KB whose failures (short transfers, a failing flush, hole punching and zeroing
    /// refused) the input chooses. Every request type runs: IN, OUT, FLUSH, GET_ID, DISCARD,
    /// WRITE_ZEROES and unknown ones, split into buffers any way the guest likes.
    ///
    /// Checks, besides no trap, no ASan report (guest RAM is `VirtioFuzzRAM`) and no timeout:
    /// - every iovec the device hands the disk is inside guest RAM, and they add up to exactly the
    ///   bytes it asks to move; every range it reads, writes, discards or zeroes lies inside the
    ///   disk; a read-only disk is never written;
    /// - the `VirtioFuzzDriver` promises: a device stopped by a broken queue writes no guest RAM,
    ///   and DEVICE_NEEDS_RESET reasons are one line.
    ///
    /// Input: 4 disk bytes [size choice (512, 4096, 4396, 8192), read-only flag, failure bits (see
    /// `FuzzDisk`), serial choice], the `VirtioFuzzDriver` part (one queue), then guest RAM from
    /// address 0 (64 KiB). Backend events are doorbells here.
    static let virtioBlock = FuzzTarget(
        name: "virtio-blk",
        summary: "virtio-blk requests over fuzzed guest RAM and queue state, an in-memory disk"
    ) { bytes in
        var input = FuzzInput(bytes)
        let disk = FuzzDisk.shared
        disk.reset(size: input.pick([512, 4096, 4096 + 300, 8192]), readOnly: input.bool(), failures: input.byte())
        let serial = input.pick([nil, "", "fuzz-disk", "01234567890123456789"])
        let device = try! VirtioBlock(backend: disk, path: "fuzz.img", readOnly: disk.readOnly, serial: serial)
        var driver = VirtioFuzzDriver(device: device)
        driver.read(&input)
        _ = VirtioFuzzRAM.shared.fill(with: input.remaining)
        driver.play { _ in
            if driver.transport.isActive { device.queueNotified(0) }
        }
        fuzzLog("virtio-blk: \(device.requests) requests, \(device.errors) errors, read \(device.bytesRead), wrote \(device.bytesWritten)")
    }
}

/// An in-memory disk for virtio-blk that checks every request the device makes of it. Its bytes
/// are a heap block (ASan checks the disk side of each copy too); reset per input.
final class FuzzDisk: BlockBackend, @unchecked Sendable {
    static let shared = FuzzDisk()
    static let capacity = 8192

    private let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: FuzzDisk.capacity, alignment: 16)
    private(set) var size: UInt64 = 512
    private(set) var readOnly = false
    /// Bit 0: transfers stop half way; 1: flush fails; 2-3: punchHole done/unsupported/failed;
    /// 4: zeroRange fails; 5: writeZeros fails.
    private var failures: UInt8 = 0
    var preferredBlockSize: Int { 4096 }

    func reset(size: Int, readOnly: Bool, failures: UInt8) {
        self.size = UInt64(size)
        self.readOnly = readOnly
        self.failures = failures
        fillPattern(storage, seed: 0x5A)
    }

    /// Traps unless [offset, offset + length) is inside the disk.
    private func requireRange(_ offset: Int64, _ length: Int64, _ what: String) {
        guard offset >= 0, length >= 0, UInt64(offset) <= size, UInt64(length) <= size - UInt64(offset) else {
            fatalError("virtio-blk: \(what) of \(length) bytes at \(offset) on a disk of \(size)")
        }
    }

    private func requireWritable(_ what: String) {
        if readOnly { fatalError("virtio-blk: \(what) on a read-only disk") }
    }

    func transfer(write: Bool, _ iovecs: UnsafeMutablePointer<iovec>, count: Int, offset: Int64, total: Int)
        -> (moved: Int, complete: Bool)
    {
        if write { requireWritable("write") }
        requireRange(offset, Int64(total), write ? "write" : "read")
        var sum = 0
        for i in 0..<count {
            VirtioFuzzRAM.shared.requireInside(iovecs[i].iov_base, count: iovecs[i].iov_len, "virtio-blk iovec \(i) of \(count)")
            sum += iovecs[i].iov_len
        }
        if sum != total { fatalError("virtio-blk: iovecs hold \(sum) bytes for a transfer of \(total)") }
        let limit = failures & 1 != 0 ? total / 2 : total
        var moved = 0
        for i in 0..<count where moved < limit {
            let n = min(iovecs[i].iov_len, limit - moved)
            let disk = storage.baseAddress! + Int(offset) + moved
            if write { disk.copyMemory(from: iovecs[i].iov_base!, byteCount: n) } else { iovecs[i].iov_base!.copyMemory(from: disk, byteCount: n) }
            moved += n
        }
        return (moved, moved == total)
    }

    func flush() -> Bool { failures & 2 == 0 }

    func punchHole(offset: Int64, length: Int64) -> BlockDeallocation {
        requireWritable("discard")
        requireRange(offset, length, "discard")
        switch (failures >> 2) & 3 {
        case 0:
            (storage.baseAddress! + Int(offset)).initializeMemory(as: UInt8.self, repeating: 0, count: Int(length))
            return .done
        case 1: return .unsupported
        default: return .failed
        }
    }

    func zeroRange(offset: Int64, length: Int64) -> Bool {
        requireWritable("zero range")
        requireRange(offset, length, "zero range")
        guard failures & 16 == 0 else { return false }
        (storage.baseAddress! + Int(offset)).initializeMemory(as: UInt8.self, repeating: 0, count: Int(length))
        return true
    }

    func writeZeros(offset: Int64, length: Int64, from zeros: UnsafeRawBufferPointer) -> Bool {
        requireWritable("write zeros")
        requireRange(offset, length, "write zeros")
        if zeros.isEmpty || zeros.contains(where: { $0 != 0 }) { fatalError("virtio-blk: the zero buffer is not zeros") }
        guard failures & 32 == 0 else { return false }
        (storage.baseAddress! + Int(offset)).initializeMemory(as: UInt8.self, repeating: 0, count: Int(length))
        return true
    }
}
