@testable import EventLoop
import Testing

/// What a peer took between two looks at a connection's backlog, which the slow-reader checks
/// judge its pace by.
@Suite struct WriteBacklogTests {
    @Test func deliveredCountsWhatLeftIncludingWhatWasWrittenSince() {
        let earlier = WriteBacklog(buffered: 1_000, kernel: 500, accepted: 10_000)
        // 300 more written; 200 still here and 100 in the kernel: 1,500 + 300 - 300 taken.
        #expect(WriteBacklog(buffered: 200, kernel: 100, accepted: 10_300).delivered(since: earlier) == 1_500)
        // Nothing taken, more written.
        #expect(WriteBacklog(buffered: 1_300, kernel: 500, accepted: 10_300).delivered(since: earlier) == 0)
        // The accepted count wraps (a connection open for ever); the difference still holds.
        let nearWrap = WriteBacklog(buffered: 10, kernel: 0, accepted: .max - 5)
        #expect(WriteBacklog(buffered: 0, kernel: 0, accepted: 4).delivered(since: nearWrap) == 20)
    }

    /// Any figures, however inconsistent (a kernel count that jumps, a counter from another
    /// connection), give a count and never trap.
    @Test func hostileFiguresNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<10_000 {
            let a = WriteBacklog(buffered: Int.random(in: Int.min...Int.max, using: &generator),
                                 kernel: Int.random(in: Int.min...Int.max, using: &generator),
                                 accepted: UInt64.random(in: 0...UInt64.max, using: &generator))
            let b = WriteBacklog(buffered: Int.random(in: 0...Int.max, using: &generator),
                                 kernel: Int.random(in: Int.min...Int.max, using: &generator),
                                 accepted: UInt64.random(in: 0...UInt64.max, using: &generator))
            _ = a.delivered(since: b)
            _ = b.delivered(since: a)
        }
    }
}
