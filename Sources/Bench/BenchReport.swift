/// What was run, as the reports state it.
public struct RunSettings: Sendable, Codable, Equatable {
    /// "closed_loop" or "open_loop".
    public var mode: String
    public var concurrency: Int?
    public var rate: Double?
    public var arrivals: ArrivalProcess?
    public var maxConcurrency: Int?
    public var requestsPerTarget: Int?
    public var durationSeconds: Double?
    public var warmupRequests: Int
    public var streamed: Bool
    public var prompts: String
    public var promptCount: Int
    public var maxTokens: Int?
    public var loops: Int
    /// The run was stopped early (Ctrl-C or SIGTERM): its figures cover the requests that finished, not
    /// the requests or duration it was set for. Absent in reports written before it existed.
    public var interrupted: Bool?
    /// How long requests still in flight at the end were given to finish (`--drain`). Absent
    /// in reports written before it existed.
    public var drainSeconds: Double?

    enum CodingKeys: String, CodingKey {
        case mode, concurrency, rate, arrivals, loops, streamed, prompts, interrupted
        case drainSeconds = "drain_s"
        case maxConcurrency = "max_concurrency"
        case requestsPerTarget = "requests_per_target"
        case durationSeconds = "duration_s"
        case warmupRequests = "warmup_requests"
        case promptCount = "prompt_count"
        case maxTokens = "max_tokens"
    }

    public init(plan: LoadPlan, warmupRequests: Int, streamed: Bool, prompts: PromptSet, maxTokens: Int?) {
        switch plan.shape {
        case .closedLoop(let concurrency):
            mode = "closed_loop"
            self.concurrency = concurrency
        case .openLoop(let rate, let arrivals, let cap):
            mode = "open_loop"
            self.rate = rate
            self.arrivals = arrivals
            maxConcurrency = cap
        }
        requestsPerTarget = plan.stop.requestsPerTarget
        durationSeconds = plan.stop.durationSeconds
        self.warmupRequests = warmupRequests
        self.streamed = streamed
        self.prompts = prompts.source
        promptCount = prompts.prompts.count
        self.maxTokens = maxTokens
        loops = plan.loops
    }

    /// One line: "closed loop, concurrency 8, 200 requests per target, streamed, …".
    public var description: String {
        var parts: [String] = []
        if mode == "closed_loop" {
            parts.append("closed loop, concurrency \(concurrency ?? 0)")
        } else {
            parts.append("open loop, \(Format.number(rate ?? 0)) req/s \(arrivals?.rawValue ?? "")"
                + (maxConcurrency.map { ", at most \($0) in flight" } ?? ""))
        }
        if let requestsPerTarget { parts.append("\(requestsPerTarget) requests per target") }
        if let durationSeconds { parts.append("\(Format.number(durationSeconds)) s") }
        parts.append("\(warmupRequests) warm-up per target")
        parts.append(streamed ? "streamed" : "not streamed")
        parts.append("\(promptCount) prompts (\(TerminalText.shown(prompts)))" + (maxTokens.map { ", max_tokens \($0)" } ?? ""))
        parts.append("\(loops) loop\(loops == 1 ? "" : "s")")
        return parts.joined(separator: ", ")
    }
}

/// B ÷ A for every statistic of every metric.
///
/// There is no ratio of the run-level rates (requests/s, output tokens/s): compared targets run
/// interleaved over one run and share its load (the same requests, or the same time), so their
/// rates over it say how that load was split, not how fast each endpoint is: with `--requests`
/// the ratio was 1.00× by construction. How fast each is, the latency ratios say.
public struct Comparison: Sendable, Equatable {
    /// Per metric, per statistic key ("p50" … "p99_9" … "max"); nil where A's figure is 0 or either is missing.
    public var metrics: [Metric: [String: Double?]]

    public init(a: TargetReport, b: TargetReport) {
        var metrics: [Metric: [String: Double?]] = [:]
        for metric in Metric.allCases {
            let left = a.results[metric].summary?.statistics
            let right = b.results[metric].summary?.statistics
            metrics[metric] = Dictionary(uniqueKeysWithValues: Summary.statisticKeys.enumerated().map { index, name in
                (name, Self.ratio(left?[index].value, right?[index].value))
            })
        }
        self.metrics = metrics
    }

    /// What the reports say instead of a ratio of the run-level rates.
    static let noRateRatio = "no ratio of requests/s or output tokens/s: both endpoints shared one interleaved run and its load"

    static func ratio(_ a: Double?, _ b: Double?) -> Double? {
        guard let a, let b, a > 0 else { return nil }
        return b / a
    }
}

/// A finished run: the settings, each target's results and, for two targets, the ratios.
public struct BenchReport: Sendable {
    /// Which tool's metric definitions these follow (see the README's "Benchmark your own endpoints").
    public static let definitions = """
        Definitions follow vLLM's `vllm bench serve` (vllm/benchmarks/serve.py) except where said, so the two \
        tools' TTFT, ITL, TPOT and E2E are close but not equal: TTFT = request sent → first content event \
        (non-empty delta.content, reasoning, a refusal or a tool call; vLLM also counts a role-only first chunk, \
        genai-perf/AIPerf and llmperf do not); ITL = every gap between consecutive content events, pooled over \
        requests (vLLM: every chunk with choices, a finish-only chunk included); \
        TPOT = (E2E − TTFT) / (output tokens − 1) per request with ≥ 2 tokens; E2E = request sent → last event \
        carrying choices (vLLM: the last chunk, the usage chunk included); output throughput = output tokens of successful \
        requests / run time; requests/s = successful requests / run time; tokens/s per stream = output tokens / \
        E2E (llmperf's per-request output throughput). Output tokens: usage.completion_tokens when the server \
        sends usage, else the number of content events. Failed requests count only as errors. Percentiles are \
        HdrHistogram's, to 3 significant digits (vLLM interpolates with numpy); mean, min and max are exact.
        """

    public var settings: RunSettings
    public var targets: [TargetReport]

    public init(settings: RunSettings, targets: [TargetReport]) {
        self.settings = settings
        self.targets = targets
    }

    public var comparison: Comparison? {
        targets.count == 2 ? Comparison(a: targets[0], b: targets[1]) : nil
    }
}
