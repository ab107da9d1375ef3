import Glibc
import Testing
@testable import Host

/// `ImageFile`: a guest's kernel, initrd or disk is a regular file (a disk may be a block device),
/// refused at once otherwise, and read no further than guest memory could hold.
@Suite struct ImageFileTests {
    /// A fresh path in a directory of its own, removed with it.
    final class Scratch {
        let directory: String
        init() {
            var template = Array("/tmp/swiftlet-imagefile-XXXXXX".utf8CString)
            directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        }
        func path(_ name: String) -> String { directory + "/" + name }
        func file(_ name: String, _ bytes: [UInt8]) throws -> String {
            let path = path(name)
            let fd = try FileDescriptor.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC)
            try bytes.withUnsafeBytes { try fd.pwrite($0, at: 0) }
            return path
        }
        deinit {
            // Every entry is a plain name in the one directory.
            if let dir = opendir(directory) {
                while let entry = readdir(dir) {
                    let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
                    if name != "." && name != ".." { unlink(directory + "/" + name) }
                }
                closedir(dir)
            }
            rmdir(directory)
        }
    }

    /// The one line `body` was refused with.
    func refusal(_ body: () throws -> Void) -> String {
        do { try body() } catch let error as HostError { return error.description } catch { return "\(error)" }
        return "(no error)"
    }

    /// A FIFO used to block open(2) for a writer: now refused at once, with the path and what it is.
    @Test func aFIFOIsRefusedWithoutWaiting() throws {
        let scratch = Scratch()
        let fifo = scratch.path("f")
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(refusal { _ = try ImageFile.read(fifo, for: "kernel", limit: 1 << 20) } == "kernel \(fifo) is a FIFO, not a regular file")
        #expect(refusal { _ = try ImageFile.open(fifo, for: "disk", writable: true, blockDeviceAllowed: true) }
            == "disk \(fifo) is a FIFO, not a regular file or block device")
        #expect(refusal { _ = try DiskImage(path: fifo, readOnly: true) } == "disk \(fifo) is a FIFO, not a regular file or block device")
    }

    /// The stat-only judgement (swiftletd's check of a definition) says what the open would.
    @Test func problemJudgesWithoutOpening() throws {
        let scratch = Scratch()
        let fifo = scratch.path("f")
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(ImageFile.problem(at: fifo) == "is a FIFO, not a regular file")
        #expect(ImageFile.problem(at: fifo, blockDeviceAllowed: true) == "is a FIFO, not a regular file or block device")
        #expect(ImageFile.problem(at: "/dev/zero") == "is a character device, not a regular file")
        #expect(ImageFile.problem(at: scratch.directory) == "is a directory, not a regular file")
        #expect(ImageFile.problem(at: scratch.path("missing")) == "no such file")
        #expect(ImageFile.problem(at: try scratch.file("k", [1, 2, 3])) == nil)
    }

    /// /dev/zero and /dev/urandom never end: they used to be read until memory ran out.
    @Test func characterDevicesAreRefused() {
        for device in ["/dev/zero", "/dev/urandom"] {
            #expect(refusal { _ = try ImageFile.read(device, for: "initrd", limit: 1 << 20) } == "initrd \(device) is a character device, not a regular file")
            #expect(refusal { _ = try DiskImage(path: device, readOnly: true) } == "disk \(device) is a character device, not a regular file or block device")
        }
    }

    @Test func aDirectoryIsRefused() {
        #expect(refusal { _ = try ImageFile.read("/tmp", for: "kernel", limit: 1 << 20) } == "kernel /tmp is a directory, not a regular file")
        #expect(refusal { _ = try DiskImage(path: "/tmp", readOnly: false) } == "disk /tmp is a directory, not a regular file or block device")
    }

    /// open(2) of a socket fails with ENXIO; the refusal still says it is a socket.
    @Test func aSocketIsRefused() throws {
        let scratch = Scratch()
        let path = scratch.path("s")
        let listener = try StreamSocket.listen(path: path)
        defer { withExtendedLifetime(listener) {} }
        #expect(refusal { _ = try ImageFile.open(path, for: "kernel_image_path") } == "kernel_image_path \(path) is a socket, not a regular file")
    }

    @Test func aMissingFileNamesThePurposeAndErrno() {
        #expect(refusal { _ = try ImageFile.read("/nonexistent/k", for: "kernel", limit: 1) } == "kernel /nonexistent/k: No such file or directory")
    }

    @Test func aRegularFileIsReadWholeAndLeftBlocking() throws {
        let scratch = Scratch()
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let path = try scratch.file("k", bytes)
        #expect(try ImageFile.read(path, for: "kernel", limit: 10_000) == bytes)
        #expect(try ImageFile.read(try scratch.file("empty", []), for: "kernel", limit: 0) == [])
        let fd = try ImageFile.open(path, for: "disk", writable: true)
        #expect(fcntl(fd.rawValue, F_GETFL) & O_NONBLOCK == 0)
        #expect(try fd.status().size == 10_000)
    }

    /// A disk may be a block device; a kernel or initrd may not.
    @Test func blockDevicesOnlyWhereAllowed() throws {
        guard let device = Self.someBlockDevice() else { return }
        #expect(refusal { _ = try ImageFile.read(device, for: "kernel", limit: 1 << 20) } == "kernel \(device) is a block device, not a regular file")
        // Opening one takes root (the devices are 0600 root) — true where these tests run.
        guard geteuid() == 0 else { return }
        _ = try ImageFile.open(device, for: "disk", blockDeviceAllowed: true)
        let disk = try DiskImage(path: device, readOnly: true)
        #expect(fcntl(disk.descriptor, F_GETFL) & O_NONBLOCK == 0)
    }

    static func someBlockDevice() -> String? {
        for name in ["loop0", "loop1", "vda", "sda", "nvme0n1", "zram0"] {
            var info = stat()
            if stat("/dev/" + name, &info) == 0, info.st_mode & S_IFMT == S_IFBLK { return "/dev/" + name }
        }
        return nil
    }

    /// A file larger than guest memory is refused from its size, before a byte of it is read:
    /// a sparse 1 TiB file would otherwise be read whole.
    @Test func aFileLargerThanTheLimitIsRefusedBeforeReading() throws {
        let scratch = Scratch()
        let path = try scratch.file("big", [])
        let fd = try FileDescriptor.open(path, flags: O_RDWR)
        try fd.truncate(to: 1 << 40)
        #expect(refusal { _ = try ImageFile.read(path, for: "initrd", limit: 4 << 20) }
            == "initrd \(path) (1099511627776 bytes) does not fit in the guest's memory (4194304 bytes)")
        let exact = try scratch.file("exact", [UInt8](repeating: 1, count: 4097))
        #expect(try ImageFile.read(exact, for: "kernel", limit: 4097).count == 4097)
        #expect(refusal { _ = try ImageFile.read(exact, for: "kernel", limit: 4096) }.contains("does not fit"))
    }

    /// A regular file whose st_size says nothing (/proc: 0) is read to its end, but no further
    /// than the limit either.
    @Test func aFileLongerThanItsSizeSaysStopsAtTheLimit() throws {
        #expect(try ImageFile.read("/proc/self/status", for: "kernel", limit: 1 << 20).count > 100)
        #expect(refusal { _ = try ImageFile.read("/proc/self/status", for: "kernel", limit: 10) }
            == "kernel /proc/self/status (more than 10 bytes) does not fit in the guest's memory (10 bytes)")
    }
}
