import Devices
import Host
#if canImport(Glibc)
import Glibc
#endif

/// A disk image (file or block device) as virtio-blk's storage: `DiskImage` already does the
/// positional I/O; this maps fallocate's modes and errors onto the device's terms.
extension DiskImage: BlockBackend {
    public func punchHole(offset: Int64, length: Int64) -> BlockDeallocation {
        switch allocate(mode: DiskImage.punchHole | DiskImage.keepSize, offset: offset, length: length) {
        case 0: .done
        case EOPNOTSUPP, ENOSYS: .unsupported
        default: .failed
        }
    }

    public func zeroRange(offset: Int64, length: Int64) -> Bool {
        allocate(mode: DiskImage.zeroRange | DiskImage.keepSize, offset: offset, length: length) == 0
    }
}

extension VirtioBlock {
    /// Opens the image at `path`. `serial` is the GET_ID answer (at most 20 bytes of UTF-8;
    /// none answers 20 NUL bytes). Throws one line naming the problem: the file is missing, a
    /// directory, smaller than one sector, or locked by another process.
    public convenience init(path: String, readOnly: Bool, serial: String? = nil) throws(VirtioDeviceError) {
        _ = try Self.serialBytes(serial)
        let file: DiskImage
        do { file = try DiskImage(path: path, readOnly: readOnly) } catch { throw VirtioDeviceError("virtio-blk: \(error)") }
        try self.init(backend: file, path: path, readOnly: readOnly, serial: serial)
    }
}
