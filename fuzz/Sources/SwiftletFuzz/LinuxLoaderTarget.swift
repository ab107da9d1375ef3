import Boot
import Devices
import GuestMemory

extension FuzzTargets {
    /// The Linux loaders as `swiftlet run` picks them for a kernel file: an ELF file is a PVH
    /// kernel (`PVHImage`: ELF headers, segments, the Xen PHYS32_ENTRY note;
    /// `LinuxBootLayout.buildPVH`), anything else a bzImage (`LinuxKernelImage`: the setup header,
    /// protocol version, xloadflags, setup sectors, syssize, initrd and command line limits,
    /// init_size; `LinuxBootLayout.build`: kernel, zero page, e820, GDT, page tables, initrd),
    /// both into 8 MiB of guest RAM mapped once between guard pages and zeroed per input, with
    /// the e820 reservations and RSDP address the Linux VM passes.
    ///
    /// Input: a flags byte (bit 0: an initrd; bit 1: a NUL byte ends the command line), a u16
    /// initrd size in bytes, a byte L (a command line of 300 * L characters: both sides of the
    /// kernel's and our 64 KiB limits), then the kernel file. Seeds: minimal bzImages (as
    /// Tests/BootTests/LinuxBootTests.swift builds them) and a minimal PVH ELF, behind such a header.
    ///
    /// Checks: every refusal is one line; nothing is written outside guest memory (the guard
    /// pages); the kernel's bytes are where the loader says; no size field in the image makes the
    /// loader read past it or allocate beyond it (ASan and libFuzzer's malloc limit).
    static let linuxLoader = FuzzTarget(
        name: "linux-loader",
        summary: "bzImage and PVH loaders: setup header, PVH note, segments, zero page and initrd into guarded RAM"
    ) { bytes in
        var input = FuzzInput(bytes)
        let flags = input.byte()
        let initrd = flags & 1 != 0 ? [UInt8](repeating: 0xA5, count: Int(input.integer(UInt16.self))) : nil
        let commandLine = String(repeating: "x", count: 300 * Int(input.byte())) + (flags & 2 != 0 ? "\0" : "")
        let file = Array(input.remaining)
        let name = "fuzz-kernel"

        // The front door's dispatch (LinuxVM): a unikernel is refused, an ELF file is PVH.
        guard !HvtImage.isSolo5(file) else { return }
        let memory = LinuxLoaderRAM.shared.zeroed()
        let reserved = PCIBusConfiguration().e820Reserved.map { (base: $0.base, size: $0.size) }
        if file.starts(with: [0x7F, 0x45, 0x4C, 0x46]) {
            let kernel: PVHImage
            do throws(BootError) { kernel = try PVHImage(bytes: file, name: name) } catch {
                requireOneLine(error.message, "PVHImage")
                return
            }
            do throws(BootError) {
                let boot = try LinuxBootLayout.buildPVH(kernel: kernel, initrd: initrd, commandLine: commandLine,
                                                        rsdp: LinuxBootLayout.biosStart, reserved: reserved, into: memory)
                guard boot.entry == UInt64(kernel.entry) else { fatalError("PVH entry \(boot.entry), the note says \(kernel.entry)") }
                for segment in kernel.segments where segment.fileSize > 0 {
                    let loaded = try! memory.bytes(at: GuestAddress(segment.guestAddress), count: segment.fileSize)
                    guard loaded.elementsEqual(segment.contents(in: kernel.elf.bytes)) else {
                        fatalError("PVH segment at \(segment.guestAddress) does not hold the file's bytes")
                    }
                }
            } catch {
                requireOneLine(error.message, "LinuxBootLayout.buildPVH")
            }
        } else {
            let kernel: LinuxKernelImage
            do throws(BootError) { kernel = try LinuxKernelImage(bytes: file, name: name) } catch {
                requireOneLine(error.message, "LinuxKernelImage")
                return
            }
            do throws(BootError) {
                _ = try LinuxBootLayout.build(kernel: kernel, initrd: initrd, commandLine: commandLine,
                                              rsdp: LinuxBootLayout.biosStart, reserved: reserved, into: memory)
                let loaded = try! memory.bytes(at: GuestAddress(LinuxBootLayout.kernelLoad), count: UInt64(kernel.protectedModeKernel.count))
                guard loaded.elementsEqual(kernel.protectedModeKernel) else { fatalError("bzImage kernel not at 1 MiB") }
            } catch {
                requireOneLine(error.message, "LinuxBootLayout.build")
            }
        }
    }
}

/// The Linux loader's guest RAM: 8 MiB from address 0, one region (below the 3 GiB hole).
enum LinuxLoaderRAM {
    static let shared = GuardedGuestRAM(regionSizes: [8 << 20])
}
