import Foundation
import Histogram

/// The percentiles every report shows.
public struct Summary: Sendable, Equatable, Codable {
    public var count: Int
    public var mean: Double
    public var min: Double
    public var max: Double
    public var p50: Double
    public var p90: Double
    public var p99: Double
    public var p99_9: Double

    public init(count: Int, mean: Double, min: Double, max: Double, p50: Double, p90: Double, p99: Double, p99_9: Double) {
        self.count = count
        self.mean = mean
        self.min = min
        self.max = max
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
        self.p99_9 = p99_9
    }

    /// The statistics in report order, keyed as in the JSON (`p99_9` for p99.9).
    public var statistics: [(key: String, value: Double)] {
        [("p50", p50), ("p90", p90), ("p99", p99), ("p99_9", p99_9), ("mean", mean), ("min", min), ("max", max)]
    }

    public static let statisticKeys = ["p50", "p90", "p99", "p99_9", "mean", "min", "max"]

    /// A column heading: `p99_9` reads p99.9.
    public static func label(_ key: String) -> String { key.replacingOccurrences(of: "_", with: ".") }
}

/// One metric's samples: an HdrHistogram for the percentiles (3 significant digits, any number of
/// samples in constant memory, mergeable across loops) plus the exact count, sum, min and max,
/// which the histogram only knows to its bucket width.
///
/// Values are Doubles in the unit the report shows (milliseconds, tokens/s); the histogram stores
/// them as integers of `1 / resolution` of that unit, so `resolution: 1000` keeps microseconds of a
/// millisecond metric.
public struct Distribution: Sendable {
    public private(set) var histogram: Histogram<UInt64>
    public let resolution: Double
    public private(set) var count = 0
    public private(set) var sum = 0.0
    /// Samples beyond the histogram's range (`highestTrackable`), recorded in its last bucket.
    private var saturated = 0
    /// Those samples exactly, the first `maxBeyond` of them (rare: a rate from a garbage count,
    /// an hour-long wait), so a percentile among them is theirs, not the max (review 127 #6).
    private var beyond: [Double] = []
    static let maxBeyond = 4_096
    public private(set) var min = Double.infinity
    public private(set) var max = -Double.infinity

    /// 2^42 units: an hour in microseconds is 3.6e9, a million tokens/s in milli-tokens 1e9.
    static let highestTrackable: UInt64 = 1 << 42

    public init(resolution: Double = 1000) {
        self.resolution = resolution
        histogram = Histogram(highestTrackableValue: Self.highestTrackable, numberOfSignificantValueDigits: .three)
    }

    /// Records one sample. Non-finite or negative values (a clock that went backwards, a division
    /// by zero upstream of here) are refused rather than recorded as garbage.
    public mutating func record(_ value: Double) {
        guard value.isFinite, value >= 0 else { return }
        let scaled = (value * resolution).rounded()
        // Beyond the histogram's range the exact max still says how far; the bucket saturates.
        if scaled >= Double(Self.highestTrackable) {
            saturated += 1
            if beyond.count < Self.maxBeyond { beyond.append(value) }
        }
        _ = histogram.record(scaled >= Double(Self.highestTrackable) ? Self.highestTrackable - 1 : UInt64(scaled))
        count += 1
        sum += value
        min = Swift.min(min, value)
        max = Swift.max(max, value)
    }

    public mutating func merge(_ other: Distribution) {
        precondition(other.resolution == resolution, "merging distributions of different resolutions")
        histogram.add(other.histogram)
        count += other.count
        sum += other.sum
        saturated += other.saturated
        beyond += other.beyond.prefix(Self.maxBeyond - beyond.count)
        min = Swift.min(min, other.min)
        max = Swift.max(max, other.max)
    }

    /// HdrHistogram's value at `percentile` (0–100): the highest value, to 3 significant digits,
    /// at or below which that share of samples lies; nil without samples.
    public func value(atPercentile percentile: Double) -> Double? {
        guard count > 0 else { return nil }
        // A percentile among the samples beyond the range is one of them, read from the exact
        // values (review 127 #6: the max, a p50 equal to the max of two samples), or the max
        // once more of them came than were kept; never raised to the min (review 103 #4).
        let rank = Swift.max(1, Int((percentile / 100 * Double(count)).rounded(.up)))
        if saturated > 0, rank > count - saturated {
            guard beyond.count == saturated else { return max }
            return beyond.sorted()[Swift.min(rank - (count - saturated), saturated) - 1]
        }
        // The histogram clamps to its recorded range; the exact extremes are better still.
        let value = Double(histogram.valueAtPercentile(percentile)) / resolution
        return Swift.min(Swift.max(value, min), max)
    }

    public var summary: Summary? {
        guard count > 0 else { return nil }
        return Summary(count: count, mean: sum / Double(count), min: min, max: max,
                       p50: value(atPercentile: 50)!, p90: value(atPercentile: 90)!,
                       p99: value(atPercentile: 99)!, p99_9: value(atPercentile: 99.9)!)
    }

    /// (value, share of samples at or below it) pairs for a CDF plot, from the histogram's
    /// recorded buckets in ascending order.
    public var cumulative: [(value: Double, fraction: Double)] {
        guard count > 0 else { return [] }
        let total = Double(histogram.totalCount)
        return histogram.recordedValues().map { step in
            (Swift.min(Swift.max(Double(step.value) / resolution, min), max), Double(step.totalCountToThisValue) / total)
        }
    }

    /// Sample counts in `bins` equal-width bins over [lower, upper]; samples outside fall into the
    /// first or last bin (so a histogram can stop at p99 and still count the tail).
    public func binned(_ bins: Int, from lower: Double, to upper: Double) -> [Int] {
        guard bins > 0 else { return [] }
        var counts = [Int](repeating: 0, count: bins)
        let width = upper > lower ? (upper - lower) / Double(bins) : 1
        for step in histogram.recordedValues() {
            let value = Swift.min(Swift.max(Double(step.value) / resolution, min), max)
            let index = Swift.min(Swift.max(Int(((value - lower) / width).rounded(.down)), 0), bins - 1)
            counts[index] += Int(clamping: step.count)
        }
        return counts
    }
}
