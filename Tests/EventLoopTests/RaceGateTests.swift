import EventLoop
import Foundation
import Testing

/// The ThreadSanitizer gate must be quiet on correct code and loud on a race. `scripts/test` runs
/// this suite under TSan twice: once plainly (must pass, no report), once with
/// `FUSION_TSAN_CANARY=1` (must be reported: proof the gate can fail).
@Suite struct RaceGateTests {
    /// Threads that update shared state only under `Lock`: exact result, and no TSan report (a
    /// `Synchronization.Mutex` here gives 7–11 false reports per run on Linux).
    @Test func lockedUpdatesFromManyThreadsAreExactAndRaceFree() {
        let counter = Lock<[Int]>([])
        let threads = 4
        let perThread = 2_000
        let group = DispatchGroup()
        for thread in 0..<threads {
            group.enter()
            Thread {
                for step in 0..<perThread { counter.withLock { $0.append(thread * perThread + step) } }
                group.leave()
            }.start()
        }
        group.wait()
        let values = counter.withLock { $0 }
        #expect(values.count == threads * perThread)
        #expect(Set(values).count == threads * perThread)
    }

    /// Loops woken from other threads: work queued with `execute` from many threads at once all
    /// runs, on the loop thread.
    @Test func workQueuedFromManyThreadsRunsOnTheLoop() throws {
        let thread = EventLoopThread(name: "race-gate")
        defer { thread.shutdown() }
        let loop = thread.loop
        let ran = Lock(0)
        let onLoop = Lock(true)
        let group = DispatchGroup()
        for _ in 0..<4 {
            group.enter()
            Thread {
                for _ in 0..<500 {
                    loop.execute {
                        let inLoop = loop.inLoopThread
                        onLoop.withLock { $0 = $0 && inLoop }
                        ran.withLock { $0 += 1 }
                    }
                }
                group.leave()
            }.start()
        }
        group.wait()
        _ = try loop.submitAndWait { 0 }  // runs after everything queued before it
        #expect(ran.withLock { $0 } == 2_000)
        #expect(onLoop.withLock { $0 })
        #expect(!loop.inLoopThread)
    }

    /// A deliberate data race, run only when asked: `scripts/test` expects TSan to report it.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["FUSION_TSAN_CANARY"] == "1", "the race canary runs only in scripts/test's gate check"))
    func canaryRaceIsReported() {
        final class Unguarded: @unchecked Sendable { var value = 0 }
        let shared = Unguarded()
        let group = DispatchGroup()
        for _ in 0..<2 {
            group.enter()
            Thread {
                for _ in 0..<10_000 { shared.value += 1 }  // racy on purpose
                group.leave()
            }.start()
        }
        group.wait()
        #expect(shared.value > 0)
    }
}
