import Foundation

public enum ArrivalProcess: String, Sendable, Codable, CaseIterable {
    /// Exponential gaps: independent users arriving at random, the usual model of live traffic.
    case poisson
    /// Evenly spaced arrivals.
    case constant
}

/// How requests are issued.
public enum LoadShape: Sendable, Equatable {
    /// `concurrency` streams, each sending its next request as soon as the previous one ends.
    case closedLoop(concurrency: Int)
    /// Requests arrive at `rate` per second whatever the server does; at most `maxConcurrency`
    /// are in flight, later arrivals wait for a slot (the wait is reported as queue wait).
    case openLoop(rate: Double, arrivals: ArrivalProcess, maxConcurrency: Int?)
}

/// When the measured run stops issuing requests (whichever comes first); requests in flight
/// then finish and count.
public struct StopCondition: Sendable, Equatable {
    public var requestsPerTarget: Int?
    public var durationSeconds: Double?

    public init(requestsPerTarget: Int? = nil, durationSeconds: Double? = nil) {
        self.requestsPerTarget = requestsPerTarget
        self.durationSeconds = durationSeconds
    }
}

/// Loop k's part of an open-loop run.
public struct OpenLoopShare: Sendable, Equatable {
    public var rate: Double
    /// When its first arrival is due: constant arrivals of several loops interleave evenly.
    public var phaseSeconds: Double
    public var maxInFlight: Int?

    public init(rate: Double, phaseSeconds: Double, maxInFlight: Int?) {
        self.rate = rate
        self.phaseSeconds = phaseSeconds
        self.maxInFlight = maxInFlight
    }
}

/// How a run's load is spread over targets and event loops. Each loop gets an even share and
/// works on its own, so no request crosses threads.
public struct LoadPlan: Sendable, Equatable {
    public var shape: LoadShape
    public var stop: StopCondition
    /// 1, or 2 with `--compare`.
    public var targets: Int
    public var loops: Int

    public struct Invalid: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    // Bounds that keep every derived figure representable: arrival times and deadlines are
    // UInt64 nanoseconds, and each stream is a worker with a socket.
    public static let maxLoops = 64
    public static let maxStreams = 100_000
    public static let rates: ClosedRange<Double> = 0.001...1_000_000
    public static let maxDurationSeconds = 30.0 * 86_400

    public init(shape: LoadShape, stop: StopCondition, targets: Int, loops: Int) throws(Invalid) {
        guard (1...2).contains(targets) else { throw Invalid(description: "one or two targets") }
        guard (1...Self.maxLoops).contains(loops) else { throw Invalid(description: "--loops must be 1 to \(Self.maxLoops)") }
        switch shape {
        case .closedLoop(let concurrency):
            guard (1...Self.maxStreams).contains(concurrency) else {
                throw Invalid(description: "--concurrency must be 1 to \(Self.maxStreams)")
            }
            guard targets == 1 || concurrency == 1 || concurrency % 2 == 0 else {
                throw Invalid(description: "with --compare, --concurrency must be 1 (one stream alternating) or even (half per target)")
            }
        case .openLoop(let rate, _, let cap):
            guard Self.rates.contains(rate) else { throw Invalid(description: "--rate must be 0.001 to 1000000 requests/s") }
            guard cap.map({ $0 >= 1 }) ?? true else { throw Invalid(description: "--max-concurrency must be at least 1") }
        }
        guard stop.requestsPerTarget != nil || stop.durationSeconds != nil else {
            throw Invalid(description: "give --requests or --duration")
        }
        guard stop.requestsPerTarget.map({ $0 >= 1 }) ?? true else { throw Invalid(description: "--requests must be at least 1") }
        guard stop.durationSeconds.map({ $0 > 0 && $0 <= Self.maxDurationSeconds }) ?? true else {
            throw Invalid(description: "--duration must be more than 0 and at most 30 days, in seconds")
        }
        self.shape = shape
        self.stop = stop
        self.targets = targets
        self.loops = loops
    }

    /// Closed loop: for each loop, its workers; a worker cycles through the target indices it
    /// lists. One target: every worker sends to it. Two: one worker alternates between them when
    /// the concurrency is 1, else half the workers are bound to each, so both always have the
    /// same number of streams open.
    public func closedLoopWorkers() -> [[[Int]]] {
        guard case .closedLoop(let concurrency) = shape else { return Array(repeating: [], count: loops) }
        let workers: [[Int]]
        if targets == 1 {
            workers = Array(repeating: [0], count: concurrency)
        } else if concurrency == 1 {
            workers = [[0, 1]]
        } else {
            workers = (0..<concurrency).map { [$0 % 2] }
        }
        var perLoop = Array(repeating: [[Int]](), count: loops)
        for (index, worker) in workers.enumerated() { perLoop[index % loops].append(worker) }
        return perLoop
    }

    /// Open loop: each loop's rate, phase and cap. The cap is split evenly, and a loop with no
    /// slot gets no arrivals (so `--max-concurrency 1` uses one loop whatever `--loops` says).
    /// With two targets each loop's arrivals alternate between them: the rate is the total.
    public func openLoopShares() -> [OpenLoopShare] {
        guard case .openLoop(let rate, let arrivals, let cap) = shape else { return [] }
        let active = min(loops, cap ?? loops)
        return (0..<loops).map { loop in
            guard loop < active else { return OpenLoopShare(rate: 0, phaseSeconds: 0, maxInFlight: 0) }
            let slots = cap.map { $0 / active + (loop < $0 % active ? 1 : 0) }
            let phase = arrivals == .constant ? Double(loop) / rate : 0
            return OpenLoopShare(rate: rate / Double(active), phaseSeconds: phase, maxInFlight: slots)
        }
    }
}

/// When an open-loop share's arrivals are due, in seconds since the run began. Absolute times
/// (not "sleep one gap after the last send"), so a late timer never slows the offered rate.
public struct ArrivalClock: Sendable {
    public let rate: Double
    public let process: ArrivalProcess
    private var next: Double

    public init(rate: Double, process: ArrivalProcess, phaseSeconds: Double = 0) {
        self.rate = rate
        self.process = process
        next = phaseSeconds
    }

    /// The next arrival's due time; the first is at the phase.
    public mutating func nextArrival(using generator: inout some RandomNumberGenerator) -> Double {
        let due = next
        switch process {
        case .constant:
            next += 1 / rate
        case .poisson:
            // Inverse transform: −ln(1 − U) / λ is exponential with mean 1/λ for U in [0, 1).
            next += -log(1 - Double.random(in: 0..<1, using: &generator)) / rate
        }
        return due
    }
}
