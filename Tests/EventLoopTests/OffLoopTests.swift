@testable import EventLoop
import Foundation
import Testing

/// `OffLoop`: CPU-bound work (a fetched page's parse) runs on another thread while its loop
/// keeps serving, and its result comes back on the loop; a loop that has finished refuses work
/// from other threads instead of waking a torn-down loop.
@Suite struct OffLoopTests {
    @Test(.timeLimit(.minutes(1))) func workRunsOffTheLoopWhileTheLoopKeepsServing() throws {
        let loop = EventLoop()
        // The work waits for a timer of the loop: had it run on the loop, the timer could not
        // fire and the wait would time out.
        let timerFired = DispatchSemaphore(value: 0)
        let workThread = Lock<(onLoop: Bool, timerSeenFirst: Bool)?>(nil)
        var delivered: (value: Int, onLoop: Bool)?
        var failure: String?
        let timer = LoopTimer(loop: loop) { timerFired.signal() }
        let deadline = LoopTimer(loop: loop) { failure = "timed out"; loop.stop() }
        deadline.start(afterMilliseconds: 30_000)
        // Set up on this thread, which then runs the loop.
        OffLoop.run(on: loop, {
            let seen = timerFired.wait(timeout: .now() + 20) == .success
            workThread.withLock { $0 = (loop.inLoopThread, seen) }
            return 42
        }, then: { value in
            delivered = (value, loop.inLoopThread)
            loop.stop()
        })
        timer.start(afterMilliseconds: 1)
        loop.run()
        #expect(failure == nil)
        let work = workThread.withLock { $0 }
        #expect(work?.onLoop == false, "the work ran on a thread of its own")
        #expect(work?.timerSeenFirst == true, "the loop served its timer while the work ran")
        #expect(delivered?.value == 42)
        #expect(delivered?.onLoop == true, "the result came back on the loop's thread")
        timer.close()
        deadline.close()
    }

    /// A lane runs at most `width` items at once, queues at most `backlog` and refuses the rest
    /// at once; an item cancelled while it waits never runs (review 62B #1: every fetched page was
    /// parsed, without bound, for clients long gone).
    @Test(.timeLimit(.minutes(1))) func aLaneBoundsItsWorkAndSkipsCancelledItems() throws {
        let loop = EventLoop()
        let lane = OffLoopLane(width: 1, backlog: 2)
        let gate = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        let ran = Lock<[Int]>([])
        var delivered: [Int] = []
        var accepted: [Bool] = []
        let tickets = (0..<4).map { _ in OffLoopLane.Ticket() }
        let deadline = LoopTimer(loop: loop) { loop.stop() }
        deadline.start(afterMilliseconds: 30_000)
        for index in 0..<4 {
            accepted.append(lane.submit(on: loop, ticket: tickets[index], {
                if index == 0 { started.signal(); gate.wait() }
                ran.withLock { $0.append(index) }
                return index
            }, then: { value in
                delivered.append(value)
                if delivered.count == 2 { loop.stop() }
            }))
            if index == 0 { #expect(started.wait(timeout: .now() + 20) == .success) }
        }
        #expect(accepted == [true, true, true, false], "one running, two waiting, the fourth refused")
        #expect(lane.waitingCount == 2)
        tickets[1].cancel()  // its client left while it waited
        gate.signal()
        loop.run()
        #expect(delivered == [0, 2])
        #expect(ran.withLock { $0 } == [0, 2], "the cancelled item never ran")
        #expect(lane.waitingCount == 0)
        deadline.close()
    }

    /// What waits is bounded in bytes too, but one item is always let wait (review 63 #4).
    @Test(.timeLimit(.minutes(1))) func aLaneBoundsWhatWaitsInBytes() throws {
        let loop = EventLoop()
        let lane = OffLoopLane(width: 1, backlog: 10, backlogBytes: 100)
        let gate = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        var delivered = 0
        let deadline = LoopTimer(loop: loop) { loop.stop() }
        deadline.start(afterMilliseconds: 30_000)
        func submit(_ bytes: Int, blocking: Bool = false) -> Bool {
            lane.submit(on: loop, ticket: OffLoopLane.Ticket(), bytes: bytes, {
                if blocking { started.signal(); gate.wait() }
                return 0
            }, then: { _ in
                delivered += 1
                if delivered == 2 { loop.stop() }
            })
        }
        #expect(submit(0, blocking: true))
        #expect(started.wait(timeout: .now() + 20) == .success)
        #expect(submit(500), "the first to wait waits, whatever it holds")
        #expect(!submit(1), "then the budget is spent")
        var lane2Accepted: [Bool] = []
        let small = OffLoopLane(width: 1, backlog: 10, backlogBytes: 100)
        let gate2 = DispatchSemaphore(value: 0)
        let started2 = DispatchSemaphore(value: 0)
        _ = small.submit(on: loop, ticket: OffLoopLane.Ticket(), { started2.signal(); gate2.wait(); return 0 }, then: { _ in })
        #expect(started2.wait(timeout: .now() + 20) == .success)
        for bytes in [80, 30, 20] { lane2Accepted.append(small.submit(on: loop, ticket: OffLoopLane.Ticket(), bytes: bytes, { 0 }, then: { _ in })) }
        #expect(lane2Accepted == [true, false, true], "80 waits, 30 would pass 100, 20 fits")
        gate2.signal()
        gate.signal()
        loop.run()
        #expect(delivered == 2, "the running item and the one that waited")
        deadline.close()
    }

    @Test(.timeLimit(.minutes(1))) func aFinishedLoopRefusesWorkAndDropsLateResults() throws {
        let loop = EventLoop()
        let release = DispatchSemaphore(value: 0)
        let dropped = DispatchSemaphore(value: 0)
        let ran = Lock(false)
        // The result is ready only after the loop has finished: it must be dropped, not
        // delivered to a torn-down loop (whose wakeup descriptor is closed).
        OffLoop.run(on: loop, {
            release.wait()
            return 1
        }, then: { [witness = Witness { dropped.signal() }] _ in
            _ = witness
            ran.withLock { $0 = true }
        })
        loop.stop()
        loop.run()
        #expect(!loop.execute {}, "a loop that has finished takes no more work")
        #expect(throws: LoopError.self, "nor waits for work it will never run (review 49 #8)") { try loop.submitAndWait { 1 } }
        release.signal()
        #expect(dropped.wait(timeout: .now() + 20) == .success, "the late result's handler was let go")
        #expect(!ran.withLock { $0 }, "nothing ran on the finished loop")
    }

    /// Work handed over while the loop is stopping is either run or, dropped with the loop,
    /// reported: `submitAndWait` never waits forever (review 50 #5).
    @Test(.timeLimit(.minutes(1))) func workHandedOverAsTheLoopStopsNeverHangsItsWaiter() throws {
        let thread = EventLoopThread(name: "stopping")
        let loop = thread.loop
        let answered = DispatchSemaphore(value: 0)
        let handed = DispatchSemaphore(value: 0)
        loop.execute {
            loop.onShutdown {
                DispatchQueue.global().async {
                    handed.signal()
                    _ = try? loop.submitAndWait { 1 }  // run or refused, never a hang
                    answered.signal()
                }
                _ = handed.wait(timeout: .now() + 10)
                usleep(50_000)  // the other thread is queueing its work meanwhile
            }
        }
        thread.shutdown()
        #expect(answered.wait(timeout: .now() + 20) == .success)
    }
}

/// Signals when released.
private final class Witness: Sendable {
    let onRelease: @Sendable () -> Void
    init(_ onRelease: @escaping @Sendable () -> Void) { self.onRelease = onRelease }
    deinit { onRelease() }
}
