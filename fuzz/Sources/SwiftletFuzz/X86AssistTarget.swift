import GuestMemory
import Hypervisor

extension FuzzTargets {
    /// The opt-in MMIO assist: the x86 decoder on 15 fuzzed bytes in each execution mode, then the
    /// emulation of what it decoded against a device and 64 KiB of fuzzed guest RAM (page tables,
    /// string operands) under a fuzzed paging mode, and the page walker on fuzzed addresses. A
    /// guest chooses all of it; every outcome must be a value or a thrown error, never a trap.
    static let x86MMIOAssist = FuzzTarget(
        name: "x86-mmio-assist",
        summary: "x86 instruction decoder, MMIO emulation and guest page walker over fuzzed RAM"
    ) { bytes in
        var input = FuzzInput(bytes)
        let instructionBytes = input.take(15)
        let mode = input.pick([X86ExecutionMode.bits64, .bits32, .bits16])
        let pagingMode = input.pick([GuestPaging.Mode.identity, .legacy32(pageSizeExtensions: false),
                                     .legacy32(pageSizeExtensions: true), .pae, .fourLevel, .fiveLevel])
        let paging = GuestPaging(mode: pagingMode, cr3: input.integer(UInt64.self))
        var registers = Registers()
        for i in 0..<16 { registers[gpr: i] = input.integer(UInt64.self) }
        registers.rip = input.integer(UInt64.self)
        registers.rflags = input.integer(UInt64.self) | 0x2
        let faultAddress = input.integer(UInt64.self)
        let context = MMIOAssist.Context(paging: paging, maxRepeatCount: Int(input.byte()), isUserMode: input.bool(),
                                         enforcesWriteProtect: input.bool())
        let ram = FuzzRAM.shared.fill(with: input.remaining)

        _ = try? GuestPageWalker(memory: ram, paging: paging).translate(faultAddress)
        guard let instruction = try? X86InstructionDecoder.decode(instructionBytes, mode: mode) else { return }
        var deviceValue: UInt64 = 0
        _ = try? MMIOAssist.emulate(instruction, faultAddress: faultAddress, registers: &registers, memory: ram,
                                    context: context,
                                    read: { address, _ in address ^ deviceValue },
                                    write: { _, _, value in deviceValue = value })
    }
}

/// Guest RAM for targets that need some: mapped once (a mapping per input would dominate the
/// run), refilled from each input and zeroed past it.
final class FuzzRAM: @unchecked Sendable {
    static let shared = FuzzRAM(size: 64 << 10)
    let memory: GuestMemory
    private let size: Int

    init(size: Int) {
        self.size = size
        memory = try! GuestMemory(size: UInt64(size))
    }

    /// The RAM holding `bytes` from address 0 (as much as fits), the rest zero.
    func fill(with bytes: UnsafeRawBufferPointer) -> GuestMemory {
        let all = try! memory.bytes(at: GuestAddress(0), count: UInt64(size))
        let n = min(bytes.count, size)
        if n > 0 { all.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: n) }
        if n < size { (all.baseAddress! + n).initializeMemory(as: UInt8.self, repeating: 0, count: size - n) }
        return memory
    }
}
