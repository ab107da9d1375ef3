import Glibc
import Testing
@testable import Host

@Suite struct EventFDTests {
    @Test func signalsAddUpAndDrainResets() throws {
        let e = try EventFD()
        #expect(e.fd >= 0)
        #expect(e.drain() == nil)
        e.signal()
        e.signal()
        e.signal()
        #expect(e.drain() == 3)
        #expect(e.drain() == nil)
    }

    @Test func initialValueAndSemaphoreMode() throws {
        let e = try EventFD(semaphore: true, initialValue: 2)
        #expect(e.isSemaphore)
        #expect(e.drain() == 1)
        #expect(e.drain() == 1)
        #expect(e.drain() == nil)
    }

    @Test func descriptorIsCloseOnExecAndNonBlocking() throws {
        let e = try EventFD()
        #expect(fcntl(e.fd, F_GETFD) & FD_CLOEXEC != 0)
        #expect(fcntl(e.fd, F_GETFL) & O_NONBLOCK != 0)
    }

    @Test func signalAtTheMaximumCountIsDropped() throws {
        let e = try EventFD()
        var nearMax: UInt64 = 0xFFFF_FFFF_FFFF_FFFE
        #expect(write(e.fd, &nearMax, 8) == 8)
        e.signal() // would overflow: EAGAIN, ignored, never blocks
        #expect(e.drain() == 0xFFFF_FFFF_FFFF_FFFE)
        e.signal()
        #expect(e.drain() == 1)
    }

    @Test func signalWakesAPollerFromAnotherThread() throws {
        let e = try EventFD()
        let poller = try Poller()
        try poller.add(e.fd, token: 9)
        var thread = pthread_t()
        let box = Unmanaged.passRetained(e)
        #expect(pthread_create(&thread, nil, { arg in
            Unmanaged<EventFD>.fromOpaque(arg!).takeRetainedValue().signal()
            return nil
        }, box.toOpaque()) == 0)
        var seen: [UInt64] = []
        #expect(poller.wait(timeoutNanoseconds: 5_000_000_000) { seen.append($0) })
        pthread_join(thread, nil)
        #expect(seen == [9])
        #expect(e.drain() == 1)
    }
}
