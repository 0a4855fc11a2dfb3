/// The per-request distributions a report shows, with the keys the JSON and the ratios use.
public enum Metric: String, CaseIterable, Sendable, Codable {
    case ttft = "ttft_ms"
    case itl = "itl_ms"
    case tpot = "tpot_ms"
    case e2e = "e2e_ms"
    case streamTokensPerSecond = "stream_output_tokens_per_s"
    case queueWait = "queue_wait_ms"

    public var title: String {
        switch self {
        case .ttft: "TTFT (ms)"
        case .itl: "ITL (ms)"
        case .tpot: "TPOT (ms)"
        case .e2e: "E2E (ms)"
        case .streamTokensPerSecond: "tokens/s per stream"
        case .queueWait: "queue wait (ms)"
        }
    }

    /// Higher is better (a throughput), not lower (a latency).
    public var higherIsBetter: Bool { self == .streamTokensPerSecond }
}

/// One request as the latency-over-time plot and the JSON's `samples` see it.
public struct RequestSample: Sendable, Codable, Equatable {
    /// When it was sent, in ms since the measured run began.
    public var startMilliseconds: Double
    public var ttftMilliseconds: Double?
    public var e2eMilliseconds: Double?
    public var outputTokens: Int
    public var error: ErrorKind?

    enum CodingKeys: String, CodingKey {
        case startMilliseconds = "start_ms"
        case ttftMilliseconds = "ttft_ms"
        case e2eMilliseconds = "e2e_ms"
        case outputTokens = "output_tokens"
        case error
    }
}

/// Everything measured for one target, accumulated request by request on one loop and merged
/// across loops at the end.
public struct TargetResults: Sendable {
    public private(set) var succeeded = 0
    public private(set) var failed = 0
    public private(set) var errors: [ErrorKind: Int] = [:]
    /// Final statuses outside 2xx, by status.
    public private(set) var statuses: [Int: Int] = [:]
    /// The first detail seen of each error kind: what to show a user who wonders why.
    public private(set) var errorExamples: [ErrorKind: String] = [:]
    public private(set) var tokenSources: [TokenSource: Int] = [:]
    public private(set) var outputTokens = 0
    /// Open loop: arrivals still waiting for a slot (`--max-concurrency`) when the run stopped
    /// issuing (its duration ran out, or Ctrl-C): never sent, so in no figure.
    public private(set) var notSent = 0
    public private(set) var distributions: [Metric: Distribution]
    public private(set) var samples: [RequestSample] = []

    public init() {
        distributions = Dictionary(uniqueKeysWithValues: Metric.allCases.map { ($0, Distribution()) })
    }

    public var requests: Int { succeeded + failed }

    public subscript(metric: Metric) -> Distribution { distributions[metric]! }

    /// Folds in one finished request; `runStartedAt` places it on the run's time axis.
    public mutating func add(_ outcome: RequestOutcome, runStartedAt: UInt64) {
        let start = outcome.sentAt >= runStartedAt ? Double(outcome.sentAt - runStartedAt) / 1e6 : 0
        // A failed request has no latency figure, in the samples as in the tables (review 103 #2:
        // its TTFT was plotted among the successes').
        samples.append(RequestSample(startMilliseconds: start, ttftMilliseconds: outcome.succeeded ? outcome.ttftMilliseconds : nil,
                                     e2eMilliseconds: outcome.succeeded ? outcome.e2eMilliseconds : nil,
                                     outputTokens: outcome.outputTokens, error: outcome.error))
        distributions[.queueWait]!.record(outcome.queueWaitMilliseconds)
        if let status = outcome.status, ErrorKind.forStatus(status) != nil { statuses[status, default: 0] += 1 }
        guard outcome.succeeded else {
            failed += 1
            let kind = outcome.error!
            errors[kind, default: 0] += 1
            if errorExamples[kind] == nil, let detail = outcome.errorDetail { errorExamples[kind] = detail }
            return
        }
        succeeded += 1
        outputTokens += outcome.outputTokens
        tokenSources[outcome.tokenSource, default: 0] += 1
        if let ttft = outcome.ttftMilliseconds { distributions[.ttft]!.record(ttft) }
        for gap in outcome.interTokenMilliseconds { distributions[.itl]!.record(gap) }
        if let tpot = outcome.tpotMilliseconds { distributions[.tpot]!.record(tpot) }
        if let e2e = outcome.e2eMilliseconds { distributions[.e2e]!.record(e2e) }
        if let rate = outcome.streamTokensPerSecond { distributions[.streamTokensPerSecond]!.record(rate) }
    }

    /// Arrivals dropped unsent when the run stopped issuing.
    public mutating func addNotSent(_ count: Int) { notSent += count }

    public mutating func merge(_ other: TargetResults) {
        notSent += other.notSent
        succeeded += other.succeeded
        failed += other.failed
        errors.merge(other.errors, uniquingKeysWith: +)
        statuses.merge(other.statuses, uniquingKeysWith: +)
        errorExamples.merge(other.errorExamples) { mine, _ in mine }
        tokenSources.merge(other.tokenSources, uniquingKeysWith: +)
        outputTokens += other.outputTokens
        for metric in Metric.allCases { distributions[metric]!.merge(other[metric]) }
        samples.append(contentsOf: other.samples)
        samples.sort { $0.startMilliseconds < $1.startMilliseconds }
    }

    /// How the output token counts were obtained, in words ("usage chunk for 200"). Usage
    /// comes in the usage chunk of a stream, in the body of a whole response.
    public func tokenSourceDescription(streamed: Bool) -> String {
        let parts = TokenSource.allCases.compactMap { source -> String? in
            guard let count = tokenSources[source], count > 0 else { return nil }
            switch source {
            case .usage: return (streamed ? "usage chunk" : "the body's usage") + " for \(count)"
            case .countedEvents: return "counted content events for \(count)"
            case .none: return "unknown for \(count) (no usage, not streamed)"
            }
        }
        return parts.isEmpty ? "no successful requests" : parts.joined(separator: ", ")
    }
}

/// Where a target is and what it was asked for.
public struct TargetInfo: Sendable, Codable, Equatable {
    public var label: String
    public var url: String
    public var model: String

    public init(label: String, url: String, model: String) {
        self.label = label
        self.url = url
        self.model = model
    }
}

/// One target's results over the measured run.
public struct TargetReport: Sendable {
    public var info: TargetInfo
    public var results: TargetResults
    /// The measured run's wall time: first request sent → last one finished (every target
    /// shares it, since compared targets run interleaved).
    public var durationSeconds: Double

    public init(info: TargetInfo, results: TargetResults, durationSeconds: Double) {
        self.info = info
        self.results = results
        self.durationSeconds = durationSeconds
    }

    /// Successful requests per second of the run.
    public var requestsPerSecond: Double { durationSeconds > 0 ? Double(results.succeeded) / durationSeconds : 0 }
    /// Output tokens of successful requests per second of the run (vLLM's output throughput).
    public var outputTokensPerSecond: Double { durationSeconds > 0 ? Double(results.outputTokens) / durationSeconds : 0 }
    public var errorRate: Double { results.requests > 0 ? Double(results.failed) / Double(results.requests) : 0 }
}
