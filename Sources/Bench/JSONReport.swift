import Foundation

/// `--json`: the machine-readable report. Its schema (`fusion-gateway-bench/1`) is documented in
/// the README's "Benchmark your own endpoints" section; fields are only ever added to it (an
/// optional one may stop being written: the comparison's rate ratios did).
public struct JSONReport: Codable, Equatable, Sendable {
    public static let schemaName = "fusion-gateway-bench/1"

    public var schema: String
    public var definitions: String
    public var settings: RunSettings
    public var targets: [Target]
    /// Present with two targets: second ÷ first.
    public var comparison: ComparisonRatios?

    public struct Target: Codable, Equatable, Sendable {
        public var label: String
        public var url: String
        public var model: String
        public var requests: Int
        public var succeeded: Int
        public var failed: Int
        /// Open loop: arrivals still queued for a slot when the run stopped issuing, never sent.
        public var notSent: Int?
        public var durationSeconds: Double
        public var requestsPerSecond: Double
        public var outputTokens: Int
        public var outputTokensPerSecond: Double
        public var errorRate: Double
        /// Every error kind, zeros included, so a consumer need not know the list.
        public var errors: [String: Int]
        public var errorExamples: [String: String]
        /// Non-2xx final statuses by status code.
        public var httpStatuses: [String: Int]
        /// How many successful requests' token counts came from each source.
        public var tokenSources: [String: Int]
        /// Per metric key (`ttft_ms`, …); a metric without samples is absent.
        public var metrics: [String: Summary]
        /// One entry per measured request, in order of sending.
        public var samples: [RequestSample]

        enum CodingKeys: String, CodingKey {
            case label, url, model, requests, succeeded, failed, errors, metrics, samples
            case notSent = "not_sent"
            case durationSeconds = "duration_s"
            case requestsPerSecond = "requests_per_s"
            case outputTokens = "output_tokens"
            case outputTokensPerSecond = "output_tokens_per_s"
            case errorRate = "error_rate"
            case errorExamples = "error_examples"
            case httpStatuses = "http_statuses"
            case tokenSources = "token_sources"
        }
    }

    public struct ComparisonRatios: Codable, Equatable, Sendable {
        public var baseline: String
        public var candidate: String
        /// Per metric key, per statistic (`p50`, `p90`, `p99`, `p99_9`, `mean`, `min`, `max`, as in `metrics`):
        /// candidate ÷ baseline; absent where the baseline's figure is 0 or missing. (The
        /// `requests_per_s` and `output_tokens_per_s` ratios of earlier versions are gone, never
        /// present now: see `Comparison`. They were optional, so readers already handled their absence.)
        public var metrics: [String: [String: Double]]
    }

    public init(_ report: BenchReport) {
        schema = Self.schemaName
        definitions = BenchReport.definitions
        settings = report.settings
        // Queue wait means something in open loop only (a closed loop's worker sends at once),
        // as the text and HTML reports show it (review 64A #8).
        let openLoop = report.settings.mode == "open_loop"
        targets = report.targets.map { Target($0, openLoop: openLoop) }
        comparison = report.comparison.map { comparison in
            ComparisonRatios(
                baseline: report.targets[0].info.label, candidate: report.targets[1].info.label,
                metrics: Dictionary(uniqueKeysWithValues: comparison.metrics.filter { $0.key != .queueWait || openLoop }.map { metric, ratios in
                    (metric.rawValue, ratios.compactMapValues { $0 })
                }))
        }
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    public static func decode(_ data: Data) throws -> JSONReport {
        try JSONDecoder().decode(JSONReport.self, from: data)
    }
}

extension JSONReport.Target {
    init(_ target: TargetReport, openLoop: Bool) {
        let results = target.results
        label = target.info.label
        url = target.info.url
        model = target.info.model
        requests = results.requests
        succeeded = results.succeeded
        failed = results.failed
        notSent = results.notSent
        durationSeconds = target.durationSeconds
        requestsPerSecond = target.requestsPerSecond
        outputTokens = results.outputTokens
        outputTokensPerSecond = target.outputTokensPerSecond
        errorRate = target.errorRate
        errors = Dictionary(uniqueKeysWithValues: ErrorKind.allCases.map { ($0.rawValue, results.errors[$0] ?? 0) })
        errorExamples = Dictionary(uniqueKeysWithValues: results.errorExamples.map { ($0.key.rawValue, $0.value) })
        httpStatuses = Dictionary(uniqueKeysWithValues: results.statuses.map { (String($0.key), $0.value) })
        tokenSources = Dictionary(uniqueKeysWithValues: results.tokenSources.map { ($0.key.rawValue, $0.value) })
        metrics = Dictionary(uniqueKeysWithValues: Metric.allCases.filter { $0 != .queueWait || openLoop }.compactMap { metric in
            results[metric].summary.map { (metric.rawValue, $0) }
        })
        samples = results.samples
    }
}
