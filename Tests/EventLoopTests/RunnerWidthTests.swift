import EventLoop
import Foundation
import Testing

/// `scripts/test` caps how many test cases run at once (`SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH`,
/// one per core; the script says why: without it, CI's sanitizer steps pass unrelated time
/// limits). The setting is experimental: a toolchain that stopped reading it would run every test
/// at once again, and the failures would come back looking like anything but that. This fails
/// first, by name.
@Suite struct RunnerWidthTests {
    /// The cap `scripts/test` set, if any (plain `swift test` runs uncapped: nothing to hold).
    static let cap = ProcessInfo.processInfo.environment["SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH"].flatMap { Int($0) }
    /// Cases of this test in flight now.
    static let inFlight = Lock<Int>(0)

    /// Eight cases that each stay in flight for a while (suspended, holding no thread: only the
    /// runner's cap keeps them from all overlapping) never overlap more than the cap allows.
    @Test(.enabled(if: cap != nil, "scripts/test sets the cap"), arguments: 0..<8)
    func noMoreCasesRunAtOnceThanTheCap(index: Int) async throws {
        let cap = try #require(Self.cap)
        let together = Self.inFlight.withLock { count in
            count += 1
            return count
        }
        try await Task.sleep(for: .milliseconds(150))
        Self.inFlight.withLock { $0 -= 1 }
        #expect(together <= cap, "\(together) cases ran at once under a cap of \(cap): the runner ignores it")
    }
}
