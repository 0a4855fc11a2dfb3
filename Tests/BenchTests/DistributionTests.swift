@testable import Bench
import Testing

@Suite struct DistributionTests {
    @Test func noSamplesHasNoSummary() {
        let distribution = Distribution()
        #expect(distribution.summary == nil)
        #expect(distribution.value(atPercentile: 50) == nil)
        #expect(distribution.cumulative.isEmpty)
    }

    @Test func oneSampleIsEveryStatistic() {
        var distribution = Distribution()
        distribution.record(2.25)
        let summary = distribution.summary!
        #expect(summary.count == 1)
        for (_, value) in summary.statistics { #expect(value == 2.25) }
    }

    @Test func percentilesOfAThousandSamples() {
        var distribution = Distribution()
        for value in 1...1000 { distribution.record(Double(value)) }  // 1 … 1000 ms
        let summary = distribution.summary!
        #expect(summary.min == 1)
        #expect(summary.max == 1000)
        #expect(summary.mean == 500.5)  // exact, not from buckets
        // HdrHistogram keeps 3 significant digits: within 0.1%.
        for (value, expected) in [(summary.p50, 500.0), (summary.p90, 900), (summary.p99, 990), (summary.p99_9, 999)] {
            #expect(abs(value - expected) / expected <= 0.001, "\(value) vs \(expected)")
        }
    }

    @Test func fewSamplesReportTheMaximumAtHighPercentiles() {
        var distribution = Distribution()
        for value in [1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10] { distribution.record(value) }
        #expect(distribution.value(atPercentile: 99.9) == 10)
        #expect(distribution.value(atPercentile: 99) == 10)
        // The top of the sample's bucket: 5 ms is 5000 µs, in a bucket 4 µs wide (3 digits).
        #expect(distribution.value(atPercentile: 50) == 5.003)
        #expect(distribution.value(atPercentile: 90) == 9.007)
    }

    @Test func garbageIsRefusedAndHugeValuesSaturate() {
        var distribution = Distribution()
        distribution.record(.nan)
        distribution.record(.infinity)
        distribution.record(-1)
        #expect(distribution.count == 0)
        distribution.record(1e300)  // far beyond the histogram's range: counted, bucket saturates
        #expect(distribution.count == 1)
        #expect(distribution.summary?.max == 1e300)
        #expect(distribution.value(atPercentile: 50) == 1e300)
    }

    /// Percentiles among samples beyond the histogram's range are the exact max, never raised
    /// to the min (review 103 #4: two samples of 3.7e10 and 6.4e10 gave a p90 of 3.7e10).
    @Test func percentilesBeyondTheRangeAreTheMaximum() {
        var distribution = Distribution()
        distribution.record(3.7e10)
        distribution.record(6.4e10)
        #expect(distribution.value(atPercentile: 90) == 6.4e10 && distribution.value(atPercentile: 99.9) == 6.4e10)
        // The p50 of two is the lower one (review 127 #6: it was the max), also once merged.
        #expect(distribution.value(atPercentile: 50) == 3.7e10)
        var merged = Distribution()
        merged.merge(distribution)
        merged.record(5e10)
        #expect(merged.value(atPercentile: 50) == 5e10 && merged.value(atPercentile: 0) == 3.7e10, "\(String(describing: merged.summary))")
        var mixed = Distribution()
        for value in 1...9 { mixed.record(Double(value)) }
        mixed.record(1e12)
        #expect(abs((mixed.value(atPercentile: 50) ?? 0) - 5) < 0.01 && mixed.value(atPercentile: 99) == 1e12, "\(String(describing: mixed.summary))")
        #expect(Format.number(3.7e10) == "3.7e+10" && Format.number(12_345_678) == "12345678")
        #expect(Format.padLeft("123456789012", 10) == " 123456789012", "an overflowing cell keeps a space before it")
    }

    @Test func mergingEqualsRecordingTogether() {
        var left = Distribution()
        var right = Distribution()
        var both = Distribution()
        for value in stride(from: 0.5, through: 50, by: 0.5) {
            if Int(value * 2) % 3 == 0 { left.record(value) } else { right.record(value) }
            both.record(value)
        }
        left.merge(right)
        #expect(left.summary == both.summary)
    }

    @Test func binsCountTheTailInTheLastBin() {
        var distribution = Distribution()
        for value in [1.0, 1.5, 2, 2.5, 100] { distribution.record(value) }
        let counts = distribution.binned(4, from: 1, to: 3)
        #expect(counts == [1, 1, 1, 2])  // bins [1, 1.5) [1.5, 2) [2, 2.5) [2.5, 3]; 100 lands in the last
        #expect(counts.reduce(0, +) == 5)
        let cdf = distribution.cumulative
        #expect(cdf.last?.fraction == 1)
        #expect(cdf.first?.value == 1)
    }
}
