import EventLoop
import Foundation
import PropertyBased
import Testing
@testable import Gateway

/// Warnings about floods (refused connections, a failing store): the first at once, at most one
/// per interval after it, and every occurrence counted in exactly one of them.
@Suite struct WarningThrottleTests {
    @Test func theFirstAtOnceABurstWhenItsIntervalEnds() {
        var throttle = WarningThrottle(intervalMilliseconds: 10_000)
        #expect(throttle.occurred(at: 1_000) == .log(count: 1))
        #expect(throttle.occurred(at: 4_000) == .holdUntil(afterMilliseconds: 7_000), "the end of the interval is awaited")
        for time in 4_001...4_004 as ClosedRange<UInt64> { #expect(throttle.occurred(at: time) == .held) }
        #expect(throttle.pending == 5)
        // The burst is logged when its interval ends, not when the next one comes.
        #expect(throttle.intervalEnded(at: 11_000) == 5)
        #expect(throttle.intervalEnded(at: 21_000) == nil, "nothing since")
        // A new interval began with that warning.
        #expect(throttle.occurred(at: 12_000) == .holdUntil(afterMilliseconds: 9_000))
        #expect(throttle.flush() == 1 && throttle.flush() == nil)
        // Long after the last: at once again.
        #expect(throttle.occurred(at: 100_000) == .log(count: 1))
    }

    /// Whatever the times of the occurrences (and with the timer firing when asked): every
    /// occurrence is in exactly one warning, and no two warnings are closer than the interval.
    @Test func everyOccurrenceIsCountedOnceAndWarningsAreSpaced() async {
        await propertyCheck(input: Gen.int(in: 0...5_000).array(of: 1...200), Gen.int(in: 1...20_000)) { gaps, interval in
            var throttle = WarningThrottle(intervalMilliseconds: UInt64(interval))
            var now: UInt64 = 0
            var due: UInt64?
            var logged: [(at: UInt64, count: Int)] = []
            for gap in gaps {
                let next = now + UInt64(gap)
                if let at = due, at <= next {
                    if let count = throttle.intervalEnded(at: at) { logged.append((at, count)) }
                    due = nil
                }
                now = next
                switch throttle.occurred(at: now) {
                case .log(let count): logged.append((now, count))
                case .holdUntil(let delay):
                    #expect(due == nil && delay > 0 && delay <= UInt64(interval))
                    due = now + delay
                case .held: #expect(due != nil)
                }
            }
            if let at = due, let count = throttle.intervalEnded(at: at) { logged.append((at, count)) }
            #expect(logged.map(\.count).reduce(0, +) + (throttle.flush() ?? 0) == gaps.count)
            #expect(logged.allSatisfy { $0.count > 0 })
            for (earlier, later) in zip(logged, logged.dropFirst()) { #expect(later.at - earlier.at >= UInt64(interval)) }
        }
    }

    /// On a loop: the first at once, the burst after it when its interval ends (a timer), and
    /// what is held when the gateway stops by `flush`.
    @Test func onALoopTheBurstIsLoggedByItsTimer() throws {
        let thread = EventLoopThread(name: "warning-test")
        defer { thread.shutdown() }
        final class Box: @unchecked Sendable { var warning: ThrottledWarning? }
        let box = Box()
        let logged = Lock<[Int]>([])
        try thread.loop.submitAndWait {
            box.warning = ThrottledWarning(loop: thread.loop, intervalMilliseconds: 100) { count in logged.withLock { $0.append(count) } }
            for _ in 0..<3 { box.warning?.occurred() }
        }
        #expect(logged.withLock { $0 } == [1])
        let deadline = Date().addingTimeInterval(5)
        while logged.withLock({ $0.count }) < 2 && Date() < deadline { usleep(10_000) }
        #expect(logged.withLock { $0 } == [1, 2], "the burst, once its interval ended")
        try thread.loop.submitAndWait {
            box.warning?.occurred()
            box.warning?.occurred()  // within the interval of the burst's warning: held
            box.warning?.flush()
            box.warning?.occurred()  // after the flush: at once, no timer on a loop about to end
            box.warning = nil
        }
        #expect(logged.withLock { $0 } == [1, 2, 2, 1])
    }
}
