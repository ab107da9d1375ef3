import GuestMemory
#if canImport(Glibc)
import Glibc
#endif

/// Guest memory between two inaccessible guard pages, for targets that promise "nothing is
/// written outside guest memory": a stray access just below or past it faults at once (libFuzzer
/// reports the SEGV), where a plain mapping would let it land silently in a neighbour. Mapped once
/// (a mapping per input would dominate the run) as contiguous regions from guest address 0, the
/// way the tenders lay RAM out, and reset to zero for each input.
final class GuardedGuestRAM: @unchecked Sendable {
    let memory: GuestMemory
    /// Host address of guest address 0 (the byte after the lower guard page).
    let host: UnsafeMutableRawPointer
    let size: Int

    /// - Parameter regionSizes: the regions, back to back from guest address 0 (page multiples).
    init(regionSizes: [UInt64]) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        size = Int(regionSizes.reduce(0, +))
        precondition(size > 0 && size % page == 0, "guarded RAM must be whole pages")
        let mapping = mmap(nil, size + 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
        precondition(mapping != MAP_FAILED, "cannot map guarded guest RAM")
        host = mapping + page
        precondition(mprotect(host, size, PROT_READ | PROT_WRITE) == 0, "cannot open guarded guest RAM")
        var regions: [GuestMemoryRegion] = []
        var base: UInt64 = 0
        for regionSize in regionSizes {
            regions.append(GuestMemoryRegion(base: GuestAddress(base), size: regionSize, borrowing: host + Int(base)))
            base += regionSize
        }
        memory = try! GuestMemory(regions: regions)
    }

    /// The memory, all zero (as a fresh guest mapping is: the loaders rely on it).
    func zeroed() -> GuestMemory {
        // Anonymous private pages read back as zero after MADV_DONTNEED: cheaper than a memset of
        // the whole size when an input touched a few pages.
        precondition(madvise(host, size, MADV_DONTNEED) == 0, "cannot reset guarded guest RAM")
        return memory
    }

    /// The memory holding `bytes` from address 0 (as much as fits), the rest zero.
    func filled(with bytes: UnsafeRawBufferPointer) -> GuestMemory {
        let memory = zeroed()
        let n = min(bytes.count, size)
        if n > 0 { host.copyMemory(from: bytes.baseAddress!, byteCount: n) }
        return memory
    }
}
