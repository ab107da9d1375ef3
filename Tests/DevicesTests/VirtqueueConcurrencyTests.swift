import Foundation
import GuestMemory
import Synchronization
import Testing
@testable import Devices

/// The driver on another thread, as a guest vCPU would be: exercises the acquire/release pairs
/// on avail.idx and used.idx. On x86 (TSO) this mostly guards against compiler reordering; on a
/// weakly ordered host it would also catch missing CPU barriers.
@Suite struct VirtqueueConcurrencyTests {
    final class Progress: Sendable {
        let mismatches = Atomic<Int>(0)
        let finished = Atomic<Bool>(false)
    }

    @Test func driverOnAnotherThread() throws {
        let size: UInt16 = 16
        let requests = 70_000  // crosses the 16-bit wrap
        let driver = try VirtqueueTestDriver(size: size)
        let queue = try driver.makeQueue()
        let memory = driver.memory
        let (desc, avail, used) = (driver.descriptorTable.rawValue, driver.availableRing.rawValue, driver.usedRing.rawValue)
        let progress = Progress()

        let thread = Thread {
            do {
                let availIndex = try memory.bytes(at: GuestAddress(avail + 2), count: 2).baseAddress!
                let usedIndex = try memory.bytes(at: GuestAddress(used + 2), count: 2).baseAddress!
                var published: UInt16 = 0
                // Chains of two descriptors: slot s uses descriptors 2s and 2s+1, so at most
                // size/2 chains can be outstanding.
                let inFlight = Int(size) / 2
                for request in 0..<requests {
                    while Int(published &- loadAcquire16(usedIndex)) >= inFlight { sched_yield() }
                    let slot = UInt64(request % inFlight)
                    let input = 0x80000 + slot * 16, output = 0x90000 + slot * 16
                    if request >= inFlight {
                        // The device answered the request that last used this slot.
                        let answer: UInt64 = try memory.load(at: GuestAddress(output))
                        if answer != UInt64(request - inFlight) &+ 1 { progress.mismatches.add(1, ordering: .relaxed) }
                    }
                    try memory.store(UInt64(request), at: GuestAddress(input))
                    let first = slot * 2
                    let entry = desc + first * 16
                    try memory.store(input, at: GuestAddress(entry))
                    try memory.store(UInt32(8), at: GuestAddress(entry + 8))
                    try memory.store(SplitVirtqueueLayout.descriptorFlagNext, at: GuestAddress(entry + 12))
                    try memory.store(UInt16(first + 1), at: GuestAddress(entry + 14))
                    try memory.store(output, at: GuestAddress(entry + 16))
                    try memory.store(UInt32(8), at: GuestAddress(entry + 24))
                    try memory.store(SplitVirtqueueLayout.descriptorFlagWrite, at: GuestAddress(entry + 28))
                    try memory.store(UInt16(first), at: GuestAddress(avail + 4 + 2 * UInt64(published & (size - 1))))
                    published &+= 1
                    storeRelease16(availIndex, published)
                }
            } catch {
                progress.mismatches.add(1_000_000, ordering: .relaxed)
            }
            progress.finished.store(true, ordering: .releasing)
        }
        thread.start()

        var served = 0
        var lastProgress = ContinuousClock.now
        while served < requests {
            guard let chain = try queue.nextChain() else {
                #expect(ContinuousClock.now - lastProgress < .seconds(20), "stalled after \(served) requests")
                if ContinuousClock.now - lastProgress >= .seconds(20) { break }
                sched_yield()
                continue
            }
            lastProgress = .now
            var value: UInt64 = 0
            let copied = try withUnsafeMutableBytes(of: &value) { try chain.copyOut(into: $0) }
            #expect(copied == 8)
            #expect(value == UInt64(served), "request \(served)")
            var answer = value &+ 1
            let written = try withUnsafeBytes(of: &answer) { try chain.copyIn(from: $0) }
            try queue.addUsed(head: chain.head, length: UInt32(written))
            served += 1
        }
        while !progress.finished.load(ordering: .acquiring) { sched_yield() }
        #expect(served == requests)
        #expect(progress.mismatches.load(ordering: .relaxed) == 0)
    }
}
