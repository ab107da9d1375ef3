import Boot
import GuestMemory

extension FuzzTargets {
    /// The Solo5 hvt loader as `swiftlet hvt` runs it on a file: `HvtImage.isSolo5` (how the
    /// front doors tell a unikernel from a Linux kernel), `HvtImage` (ELF header, program and
    /// section headers, notes, the Solo5 ABI note, the MFT1 manifest and its entries, the load
    /// segments), the tender's attaching of every declared device in the guest's manifest copy,
    /// and `HvtGuestLayout.build` into guest RAM of 2 or 4 MiB, with or without the ABI-2 network
    /// ring's 2 MiB after it: mapped once per shape between guard pages and zeroed per input.
    ///
    /// Input: a flags byte (bit 0: 4 MiB of RAM, else 2; bit 1: offer the ring; bit 2: attach the
    /// manifest's devices), a byte L (a command line of 40 * L characters, so both sides of the
    /// 8 KiB limit), then the image file. Seeds: a real unikernel (guests/hvt's exit test, ABI 2,
    /// stripped) and small hand-built images, each behind such a header.
    ///
    /// Checks: every refusal is one line; nothing is written outside guest memory (the guard
    /// pages); a loaded image's segments hold the file's bytes, the entry is the image's and the
    /// stack is at the top of RAM.
    static let hvtLoader = FuzzTarget(
        name: "hvt-loader",
        summary: "Solo5 hvt loader: ELF, ABI and manifest notes, segments and guest layout into guarded RAM"
    ) { bytes in
        var input = FuzzInput(bytes)
        let flags = input.byte()
        let arguments = [String](repeating: String(repeating: "a", count: 40 * Int(input.byte())), count: 1)
        let file = Array(input.remaining)
        let name = "fuzz.hvt"

        _ = HvtImage.isSolo5(file)
        let image: HvtImage
        do throws(BootError) { image = try HvtImage(bytes: file, name: name) } catch {
            requireOneLine(error.message, "HvtImage")
            return
        }
        var manifest = image.manifest
        if flags & 4 != 0 {
            for (index, entry) in manifest.entries.enumerated() {
                switch entry.type {
                case .block: manifest.attachBlock(at: index, capacity: 1 << 20, blockSize: 512)
                case .net: manifest.attachNet(at: index, mac: [2, 0, 0, 0, 0, 1], mtu: 1500)
                case .reserved: break
                }
            }
        }
        let ramSize: UInt64 = flags & 1 != 0 ? 4 << 20 : 2 << 20
        let withRing = flags & 2 != 0
        let ram = HvtLoaderRAM.shapes[(ramSize == 4 << 20 ? 2 : 0) + (withRing ? 1 : 0)]
        let memory = ram.zeroed()
        let boot: HvtGuestLayout.BootState
        do throws(BootError) {
            boot = try HvtGuestLayout.build(image: image, manifest: manifest, arguments: arguments, cpuCycleFrequency: 1_000_000_000,
                                            ramSize: ramSize, netRing: withRing ? ramSize : nil, into: memory)
        } catch {
            requireOneLine(error.message, "HvtGuestLayout.build")
            return
        }
        guard boot.entry == image.entry, boot.stackPointer == ramSize - 8 else {
            fatalError("hvt boot state \(boot) for entry \(image.entry) in \(ramSize) bytes")
        }
        for segment in image.segments where segment.fileSize > 0 {
            let loaded = try! memory.bytes(at: GuestAddress(segment.guestAddress), count: segment.fileSize)
            guard loaded.elementsEqual(segment.contents(in: image.elf.bytes)) else {
                fatalError("hvt segment at \(segment.guestAddress) does not hold the file's bytes")
            }
        }
    }
}

/// Guest memory for the hvt loader, one per shape: RAM of 2 or 4 MiB, alone or followed by the
/// network ring's 2 MiB (two regions, as the tender maps them).
enum HvtLoaderRAM {
    static let shapes: [GuardedGuestRAM] = [[2 << 20], [2 << 20, 2 << 20], [4 << 20], [4 << 20, 2 << 20]]
        .map { GuardedGuestRAM(regionSizes: $0) }
}
