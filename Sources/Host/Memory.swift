import CHost
#if canImport(Glibc)
import Glibc
#endif

/// Anonymous host memory mappings (mmap/munmap/madvise/mincore): guest RAM, and the probe pages of
/// the seccomp self-check.
public enum Memory {
    /// Maps `size` bytes of zeroed, lazily-populated private memory (MAP_NORESERVE: untouched
    /// pages cost nothing). Returns nil with errno set on failure.
    public static func mapAnonymous(_ size: Int) -> UnsafeMutableRawPointer? {
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else { return nil }
        return p
    }

    /// Unmaps a range `mapAnonymous` returned (or part of one).
    public static func unmap(_ address: UnsafeMutableRawPointer, _ size: Int) { _ = munmap(address, size) }

    /// One malloc arena for every thread: VM threads allocate nothing on their hot paths, so a
    /// private arena each would only cost start-up system calls and resident pages.
    public static func useOneMallocArena() { chost_use_one_malloc_arena() }

    /// Drops the process's mappings of loaded code (read-only executable segments; the pages stay
    /// shared in the page cache and fault back in when run again), so code that ran only at
    /// start-up stops counting in the resident set: a VM process's steady state runs a small part
    /// of its binary; and returns start-up's freed heap pages (malloc_trim). Not while a debugger
    /// is attached (`HostProcess.isBeingTraced`): its breakpoints would go. Returns the code bytes released.
    @discardableResult
    public static func releaseCodeMappings() -> Int { Int(chost_release_code_mappings()) }

    /// Asks for transparent huge pages over the range (a hint: failure changes nothing).
    public static func adviseHugePages(_ address: UnsafeMutableRawPointer, _ size: Int) {
        _ = madvise(address, size, MADV_HUGEPAGE)
    }

    /// The host's page size.
    public static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Which pages of the range are resident (mincore), one entry a page; nil if the kernel
    /// refuses (the caller then treats every page as resident).
    public static func residentPages(_ address: UnsafeRawPointer, _ size: Int) -> [Bool]? {
        let pages = (size + pageSize - 1) / pageSize
        var vector = [UInt8](repeating: 0, count: pages)
        let ok = vector.withUnsafeMutableBufferPointer {
            mincore(UnsafeMutableRawPointer(mutating: address), size, $0.baseAddress) == 0
        }
        return ok ? vector.map { $0 & 1 != 0 } : nil
    }
}
