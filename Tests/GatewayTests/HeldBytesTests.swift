import EventLoop
import Foundation
@testable import Gateway
import Synchronization
import Testing

/// The bound on whole answers held across requests: taken only when it fits, all or nothing,
/// from any number of threads at once.
@Suite struct HeldBytesTests {
    final class Peak: Sendable {
        let seen = Mutex(0)
        func note(_ value: Int) { seen.withLock { $0 = max($0, value) } }
    }

    @Test func reservationsNeverPassTheBoundAndAllComeBack() {
        let held = HeldBytes(limit: 10_000)
        #expect(held.reserve(6_000) && !held.reserve(5_000) && held.current == 6_000)
        held.release(6_000)
        #expect(held.current == 0)
        // Eight threads taking and giving back at random: never over the bound, zero at the end.
        let peak = Peak()
        DispatchQueue.concurrentPerform(iterations: 8) { seed in
            var generator = SystemRandomNumberGenerator()
            var mine: [Int] = []
            for step in 0..<5_000 {
                if mine.isEmpty || (step + seed) % 3 != 0 {
                    let size = Int.random(in: 1...3_000, using: &generator)
                    if held.reserve(size) { mine.append(size) }
                } else {
                    held.release(mine.removeLast())
                }
                peak.note(held.current)
            }
            for size in mine { held.release(size) }
        }
        #expect(peak.seen.withLock { $0 } <= 10_000)
        #expect(held.current == 0)
    }
}
