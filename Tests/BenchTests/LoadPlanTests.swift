import Bench
import Foundation
import Testing

@Suite struct LoadPlanTests {
    static let hundred = StopCondition(requestsPerTarget: 100)

    @Test func closedLoopWorkersAreSpreadOverLoops() throws {
        let plan = try LoadPlan(shape: .closedLoop(concurrency: 5), stop: Self.hundred, targets: 1, loops: 2)
        #expect(plan.closedLoopWorkers() == [[[0], [0], [0]], [[0], [0]]])
    }

    @Test func comparedTargetsGetHalfTheStreamsEachOrOneAlternating() throws {
        let split = try LoadPlan(shape: .closedLoop(concurrency: 4), stop: Self.hundred, targets: 2, loops: 1)
        #expect(split.closedLoopWorkers() == [[[0], [1], [0], [1]]])
        let alternating = try LoadPlan(shape: .closedLoop(concurrency: 1), stop: Self.hundred, targets: 2, loops: 3)
        #expect(alternating.closedLoopWorkers() == [[[0, 1]], [], []])
        #expect(throws: LoadPlan.Invalid.self) {
            try LoadPlan(shape: .closedLoop(concurrency: 3), stop: Self.hundred, targets: 2, loops: 1)
        }
    }

    @Test func invalidPlansAreRefused() {
        let cases: [(LoadShape, StopCondition, Int)] = [
            (.closedLoop(concurrency: 0), Self.hundred, 1),
            (.openLoop(rate: 0, arrivals: .poisson, maxConcurrency: nil), Self.hundred, 1),
            (.openLoop(rate: .infinity, arrivals: .poisson, maxConcurrency: nil), Self.hundred, 1),
            (.openLoop(rate: 5, arrivals: .poisson, maxConcurrency: 0), Self.hundred, 1),
            (.closedLoop(concurrency: 1), StopCondition(), 1),
            (.closedLoop(concurrency: 1), StopCondition(requestsPerTarget: 0), 1),
            (.closedLoop(concurrency: 1), StopCondition(durationSeconds: -1), 1),
            (.closedLoop(concurrency: 1), Self.hundred, 0),
            (.closedLoop(concurrency: 1), Self.hundred, 65),
            (.closedLoop(concurrency: 1_000_000), Self.hundred, 1),
            (.openLoop(rate: 1e-300, arrivals: .poisson, maxConcurrency: nil), Self.hundred, 1),
            (.closedLoop(concurrency: 1), StopCondition(durationSeconds: 1e300), 1),
            (.closedLoop(concurrency: 1), StopCondition(durationSeconds: .nan), 1),
        ]
        for (shape, stop, loops) in cases {
            #expect(throws: LoadPlan.Invalid.self) { try LoadPlan(shape: shape, stop: stop, targets: 1, loops: loops) }
        }
    }

    @Test func openLoopRateAndCapAreSplitEvenly() throws {
        let plan = try LoadPlan(shape: .openLoop(rate: 30, arrivals: .constant, maxConcurrency: 7),
                                stop: Self.hundred, targets: 1, loops: 3)
        let shares = plan.openLoopShares()
        #expect(shares.map(\.rate) == [10, 10, 10])
        #expect(shares.map(\.maxInFlight) == [3, 2, 2])
        // Constant arrivals of three loops interleave: 0, 1/30, 2/30 s, then every 1/10 s each.
        let phases: [Double] = [0, 1.0 / 30, 2.0 / 30]
        #expect(shares.map(\.phaseSeconds) == phases)
    }

    @Test func aCapBelowTheLoopCountLeavesLoopsIdle() throws {
        let plan = try LoadPlan(shape: .openLoop(rate: 10, arrivals: .poisson, maxConcurrency: 1),
                                stop: Self.hundred, targets: 1, loops: 2)
        #expect(plan.openLoopShares() == [OpenLoopShare(rate: 10, phaseSeconds: 0, maxInFlight: 1),
                                          OpenLoopShare(rate: 0, phaseSeconds: 0, maxInFlight: 0)])
    }

    /// Returns the same number every time: makes the Poisson clock's arithmetic checkable.
    struct FixedGenerator: RandomNumberGenerator {
        var value: UInt64
        mutating func next() -> UInt64 { value }
    }

    @Test func constantArrivalsAreEvenlySpaced() {
        var clock = ArrivalClock(rate: 4, process: .constant, phaseSeconds: 0.125)
        var generator = FixedGenerator(value: 0)
        let times = (0..<4).map { _ in clock.nextArrival(using: &generator) }
        #expect(times == [0.125, 0.375, 0.625, 0.875])  // binary fractions: exact
    }

    @Test func poissonGapsAreExponential() {
        // U = 0.5 every time (Swift's Double.random takes the low 53 bits: 2^52 / 2^53): each
        // gap is −ln(0.5) / rate.
        var generator = FixedGenerator(value: 1 << 52)
        var clock = ArrivalClock(rate: 2, process: .poisson)
        let times = (0..<3).map { _ in clock.nextArrival(using: &generator) }
        let gap = -Foundation.log(0.5) / 2
        #expect(times[0] == 0)
        #expect(abs(times[1] - gap) < 1e-12)
        #expect(abs(times[2] - 2 * gap) < 1e-12)
    }

    @Test func poissonMeanRateHolds() {
        var generator = SystemRandomNumberGenerator()
        var clock = ArrivalClock(rate: 100, process: .poisson)
        var last = 0.0
        for _ in 0..<20_000 { last = clock.nextArrival(using: &generator) }
        // 20,000 exponential gaps of mean 10 ms: the sum's standard deviation is ~0.7%.
        #expect(abs(last - 200) < 10)
    }
}
