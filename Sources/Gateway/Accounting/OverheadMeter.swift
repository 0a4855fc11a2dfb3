/// The gateway's own time in a request, per phase: each phase's wall time less the time during
/// which something outside the gateway was pending (an upstream call, from its first request to
/// its end with any retry waits, or a web tool call). Overlapping waits count once (their union),
/// so what is left is the time the request waited on the gateway alone: validation and routing,
/// hops between loops, the state machine, writing to the client. Socket-free; times are
/// monotonic nanoseconds (one clock for every loop).
struct OverheadMeter: Sendable {
    /// A metric label: a fixed set.
    enum Phase: String, Sendable, CaseIterable {
        /// A relayed completion, whole.
        case proxy
        /// Fusion: the outer model's first turn (skipped when fusion is forced).
        case outerFirst = "outer_first"
        /// From the first panel call to the judge's first call.
        case panel
        /// From the judge's first call to the outer model's final turn.
        case judge
        /// The outer model's final turn, to the end of the response.
        case outerFinal = "outer_final"
    }

    /// More waits than this (far beyond a request's call and tool caps) are not kept: the
    /// overhead is then over-, never under-stated.
    static let maxIntervals = 1024

    private var windows: [(phase: Phase, start: UInt64, end: UInt64?)] = []
    private var intervals: [(start: UInt64, end: UInt64)] = []

    init() {}

    var currentPhase: Phase? { windows.last.flatMap { $0.end == nil ? $0.phase : nil } }

    /// Ends the current phase (if any) and starts `phase`; a phase already started is not restarted.
    mutating func begin(_ phase: Phase, at now: UInt64) {
        guard !windows.contains(where: { $0.phase == phase }) else { return }
        end(at: now)
        windows.append((phase, now, nil))
    }

    /// Something outside the gateway was pending from `start` to `end`.
    mutating func waited(from start: UInt64, to end: UInt64) {
        guard end > start, intervals.count < Self.maxIntervals else { return }
        intervals.append((start, end))
    }

    /// Ends the current phase.
    mutating func end(at now: UInt64) {
        guard let last = windows.indices.last, windows[last].end == nil else { return }
        windows[last].end = max(now, windows[last].start)
    }

    /// Each ended phase's duration and overhead, in milliseconds (to the microsecond).
    func timings() -> [GenerationRecord.PhaseTiming] {
        let merged = Self.union(intervals)
        return windows.compactMap { window in
            guard let end = window.end else { return nil }
            var waited: UInt64 = 0
            for interval in merged {
                let from = max(interval.start, window.start)
                let to = min(interval.end, end)
                if to > from { waited += to - from }
            }
            let wall = end - window.start
            return GenerationRecord.PhaseTiming(phase: window.phase, durationMilliseconds: Self.milliseconds(wall),
                                                overheadMilliseconds: Self.milliseconds(wall - min(waited, wall)))
        }
    }

    /// The overhead of every phase together (ms).
    func totalOverheadMilliseconds() -> Double {
        Self.roundedMilliseconds(timings().reduce(0) { $0 + $1.overheadMilliseconds })
    }

    /// Sorted, non-overlapping.
    static func union(_ intervals: [(start: UInt64, end: UInt64)]) -> [(start: UInt64, end: UInt64)] {
        var merged: [(start: UInt64, end: UInt64)] = []
        for interval in intervals.sorted(by: { $0.start < $1.start }) {
            if let last = merged.indices.last, interval.start <= merged[last].end {
                merged[last].end = max(merged[last].end, interval.end)
            } else {
                merged.append(interval)
            }
        }
        return merged
    }

    static func milliseconds(_ nanoseconds: UInt64) -> Double { roundedMilliseconds(Double(nanoseconds) / 1e6) }

    /// Records state times to the microsecond (so their JSON round-trips exactly).
    static func roundedMilliseconds(_ value: Double) -> Double { (value * 1000).rounded() / 1000 }
}
