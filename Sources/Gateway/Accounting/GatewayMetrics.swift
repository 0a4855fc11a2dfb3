import EventLoop
import GatewayCore
import Prometheus
import Providers

/// The gateway's metrics in Prometheus' text format (`GET /metrics`), shared by every loop
/// (swift-prometheus' metrics are thread-safe). Every label value is from a fixed set
/// (`MetricLabels`); providers are the configured ones (others count as `other`). Per-provider
/// and per-phase series are made up front, so the per-token path only looks one up in an
/// immutable dictionary.
public final class GatewayMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let activeStreams: Gauge
    let activeDeliberations: Gauge
    let backpressurePauses: Counter
    private let timeToFirstToken: [String: DurationHistogram]
    private let overhead: [String: DurationHistogram]
    private let providers: [String: ProviderSeries]
    /// Costs in units of 1e-10 dollars (`Usage.costDecimalPlaces`), summed as integers so the
    /// total prints as the decimal sum of the records' costs.
    private let costUnits = Lock([String: Int128]())
    /// What requests were charged (`spend_usd`: their usage at `prices:`, else the reported cost),
    /// in the same units: the cost of chat traffic whose upstream reports none (OpenAI's own API,
    /// vLLM, llama.cpp), which `costUnits` counts as 0 (review 64E #2).
    private let spendUnits = Lock([String: Int128]())
    /// `requests_total` series, made on first use and kept: `makeCounter` builds the series' name
    /// and searches the registry under its lock on every call, a quarter of what filing a
    /// proxied request's record cost (about 7 µs). The key's values are from fixed sets.
    private let requestCounters = Lock([RequestSeries: Counter]())

    private struct RequestSeries: Hashable {
        let route: RecordRoute
        let kind: RecordKind
        let status: String
    }

    /// One provider's series.
    struct ProviderSeries: Sendable {
        let timeToFirstToken: DurationHistogram
        let interToken: DurationHistogram
        let retries: Counter
        let fallbacks: Counter

        func observeFirstEvent(afterNanoseconds value: UInt64) { timeToFirstToken.recordNanoseconds(Int64(clamping: value)) }
        func observeGap(nanoseconds value: UInt64) { interToken.recordNanoseconds(Int64(clamping: value)) }
        func countRetry() { retries.increment() }
        func countFallback() { fallbacks.increment() }
    }

    func deliberationStarted() { activeDeliberations.increment() }
    func deliberationEnded() { activeDeliberations.decrement() }

    private static func name(_ metric: String, unit: String = "", help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "fusion_gateway", metricName: metric, unitName: unit, helpText: help)
    }

    static let latencyBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(5), .milliseconds(20), .milliseconds(100), .milliseconds(500),
        .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(30),
    ]
    static let gapBuckets: [Duration] = [
        .microseconds(100), .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(50),
        .milliseconds(100), .milliseconds(500), .seconds(2),
    ]
    static let overheadBuckets: [Duration] = [
        .microseconds(10), .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
        .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(100), .seconds(1),
    ]

    /// `providerNames`: the configured providers (the only provider label values besides `other`).
    init(providerNames: [String] = []) {
        let registry = registry
        activeStreams = registry.makeGauge(descriptor: Self.name("active_streams", help: "Completions in progress (proxied and fusion)."))
        activeDeliberations = registry.makeGauge(
            descriptor: Self.name("active_deliberations", help: "Fusion deliberations in progress (panel or judge running)."))
        backpressurePauses = registry.makeCounter(
            descriptor: Self.name("backpressure_pauses", unit: "total", help: "Upstream transfers paused because a client read slowly."))
        var ttft: [String: DurationHistogram] = [:]
        for kind in RecordKind.allCases.map(\.rawValue) {
            ttft[kind] = registry.makeDurationHistogram(
                descriptor: Self.name("time_to_first_token", unit: "seconds", help: "From a request's arrival to its first token sent, by kind."),
                labels: [("kind", kind)], buckets: Self.latencyBuckets)
        }
        timeToFirstToken = ttft
        var overhead: [String: DurationHistogram] = [:]
        for phase in OverheadMeter.Phase.allCases.map(\.rawValue) {
            overhead[phase] = registry.makeDurationHistogram(
                descriptor: Self.name("overhead", unit: "seconds",
                                      help: "The gateway's own time per request (proxy) or deliberation phase: wall time less upstream and web tool waits."),
                labels: [("phase", phase)], buckets: Self.overheadBuckets)
        }
        self.overhead = overhead
        var providers: [String: ProviderSeries] = [:]
        for provider in Set(providerNames + [MetricLabels.other]) {
            providers[provider] = ProviderSeries(
                timeToFirstToken: registry.makeDurationHistogram(
                    descriptor: Self.name("upstream_time_to_first_token", unit: "seconds",
                                          help: "From an upstream request to its first event, by provider (proxy and Fusion's inner calls)."),
                    labels: [("provider", provider)], buckets: Self.latencyBuckets),
                interToken: registry.makeDurationHistogram(
                    descriptor: Self.name("upstream_inter_token", unit: "seconds",
                                          help: "Gaps between upstream reads carrying events, per stream, by provider."),
                    labels: [("provider", provider)], buckets: Self.gapBuckets),
                retries: registry.makeCounter(
                    descriptor: Self.name("upstream_retries", unit: "total", help: "Upstream requests retried (429, 5xx, refused), by provider."),
                    labels: [("provider", provider)]),
                fallbacks: registry.makeCounter(
                    descriptor: Self.name("upstream_fallbacks", unit: "total",
                                          help: "Requests handed to the next model in `models` after this provider's model failed."),
                    labels: [("provider", provider)]))
        }
        self.providers = providers
        // Families whose label values are known exist from the start, at 0: `rate()` and alerts
        // on them work before their first event (Prometheus' advice for known label sets).
        for reason in MetricLabels.memberReasons { _ = memberFailures(reason: reason) }
        for tool in MetricLabels.webTools { for failed in [false, true] { _ = webToolCalls(name: tool, failed: failed) } }
        for outcome in Self.limitOutcomes { _ = limitDecisions(outcome: outcome) }
        for kind in LimitDecision.Kind.allCases { _ = rateLimited(kind: kind.rawValue) }
    }

    /// The series of `provider` (`other` for a name not configured).
    func provider(_ name: String) -> ProviderSeries {
        providers[name] ?? providers[MetricLabels.other]!
    }

    func providerLabel(_ name: String) -> String { providers[name] == nil ? MetricLabels.other : name }

    func countRequest(route: RecordRoute, kind: RecordKind, status: Int) {
        let series = RequestSeries(route: route, kind: kind, status: MetricLabels.status(status))
        let counter = requestCounters.withLock { counters in
            if let counter = counters[series] { return counter }
            let counter = registry.makeCounter(
                descriptor: Self.name("requests", unit: "total",
                                      help: "Completions answered, by route, kind (proxy, fusion, rejected) and HTTP status."),
                labels: [("route", route.rawValue), ("kind", kind.rawValue), ("status", series.status)])
            counters[series] = counter
            return counter
        }
        counter.increment()
    }

    /// `origin`: `gateway`, or `upstream` for an upstream's error passed on, whose code may be one
    /// of the gateway's own (an upstream's `invalid_api_key` is no bad gateway key: review 62D #7).
    func countError(code: String, origin: APIError.Origin = .gateway) {
        registry.makeCounter(descriptor: Self.name("errors", unit: "total", help: "Errors returned to clients, by code and origin (gateway, upstream)."),
                             labels: [("code", MetricLabels.errorCode(code)), ("origin", origin.rawValue)]).increment()
    }

    func countUpstreamError(provider: String, code: String) {
        registry.makeCounter(descriptor: Self.name("upstream_errors", unit: "total", help: "Failed upstream calls, by provider and error code."),
                             labels: [("provider", providerLabel(provider)), ("code", MetricLabels.errorCode(code))]).increment()
    }

    func countMemberFailure(reason: String) {
        memberFailures(reason: reason).increment()
    }

    private func memberFailures(reason: String) -> Counter {
        registry.makeCounter(
            descriptor: Self.name("fusion_member_failures", unit: "total",
                                  help: "Fusion panel members that produced no answer (failed, or cut when the request ended), by reason."),
            labels: [("reason", MetricLabels.memberReason(reason))])
    }

    func countWebTool(name: String, failed: Bool) {
        webToolCalls(name: name, failed: failed).increment()
    }

    private func webToolCalls(name: String, failed: Bool) -> Counter {
        registry.makeCounter(
            descriptor: Self.name("web_tool_calls", unit: "total", help: "Web tool calls run for Fusion's panel and judge, by tool and outcome."),
            labels: [("tool", MetricLabels.webTool(name)), ("outcome", failed ? "error" : "ok")])
    }

    func observeTimeToFirstToken(kind: RecordKind, milliseconds: Double) {
        timeToFirstToken[kind.rawValue]?.recordNanoseconds(Self.nanoseconds(milliseconds))
    }

    func observeOverhead(_ phase: OverheadMeter.Phase, milliseconds: Double) {
        overhead[phase.rawValue]?.recordNanoseconds(Self.nanoseconds(milliseconds))
    }

    /// In 128 bits: an upstream's cost is clamped to 1e9 dollars (`Usage`), 1e19 units, beyond
    /// Int64; in 64 bits one such report pinned the counter at its maximum for good, every later
    /// cost lost (review 59B #6). The sum saturates rather than wrap (1.7e28 dollars).
    func addSpend(micros: Int64, kind: RecordKind) {
        guard micros > 0 else { return }
        let units = Int128(micros) * 10_000
        spendUnits.withLock { spends in
            let (sum, overflow) = spends[kind.rawValue, default: 0].addingReportingOverflow(units)
            spends[kind.rawValue] = overflow ? .max : sum
        }
    }

    func addCost(_ cost: Double, kind: RecordKind) {
        let scaled = (Usage.roundedCost(cost) * 1e10).rounded()
        guard scaled.isFinite, scaled >= 1 else { return }
        let units = Int128(scaled)
        costUnits.withLock { costs in
            let (sum, overflow) = costs[kind.rawValue, default: 0].addingReportingOverflow(units)
            costs[kind.rawValue] = overflow ? .max : sum
        }
    }

    static func nanoseconds(_ milliseconds: Double) -> Int64 {
        guard milliseconds.isFinite, milliseconds > 0 else { return 0 }
        return milliseconds >= 9e12 ? Int64.max : Int64(milliseconds * 1e6)
    }

    /// `held`: each process-wide byte bound's name, what it holds now and its limit (read when
    /// scraped; review 75A #10: an operator could not see a bound fill, or leak).
    func render(held: [(bound: String, current: Int, limit: Int)] = []) -> [UInt8] {
        var out = registry.emitToBuffer()
        if !held.isEmpty {
            out.append(contentsOf: "# HELP fusion_gateway_held_bytes Bytes held now under each process-wide bound.\n# TYPE fusion_gateway_held_bytes gauge\n".utf8)
            for entry in held { out.append(contentsOf: "fusion_gateway_held_bytes{bound=\"\(entry.bound)\"} \(entry.current)\n".utf8) }
            out.append(contentsOf: "# HELP fusion_gateway_held_bytes_limit Each process-wide bound's limit, in bytes.\n# TYPE fusion_gateway_held_bytes_limit gauge\n".utf8)
            for entry in held { out.append(contentsOf: "fusion_gateway_held_bytes_limit{bound=\"\(entry.bound)\"} \(entry.limit)\n".utf8) }
        }
        // Costs as decimals from integer units: a float counter would print its summation error.
        let costs = costUnits.withLock { $0 }
        out.append(contentsOf: "# HELP fusion_gateway_cost_usd_total Upstream cost reported for completions, in US dollars (10 decimal places), by kind.\n# TYPE fusion_gateway_cost_usd_total counter\n".utf8)
        for kind in RecordKind.allCases.map(\.rawValue) {
            out.append(contentsOf: "fusion_gateway_cost_usd_total{kind=\"\(kind)\"} \(Self.decimal(costs[kind] ?? 0))\n".utf8)
        }
        let spends = spendUnits.withLock { $0 }
        out.append(contentsOf: "# HELP fusion_gateway_spend_usd_total What completions were charged to keys (spend_usd: usage at prices:, else the reported cost), in US dollars, by kind.\n# TYPE fusion_gateway_spend_usd_total counter\n".utf8)
        for kind in RecordKind.allCases.map(\.rawValue) {
            out.append(contentsOf: "fusion_gateway_spend_usd_total{kind=\"\(kind)\"} \(Self.decimal(spends[kind] ?? 0))\n".utf8)
        }
        return out
    }

    /// `units` of 1e-10 as a decimal (`6880000` → `0.000688`).
    static func decimal(_ units: Int128) -> String {
        let units = max(0, units)  // a counter: never below zero
        let whole = units / 10_000_000_000
        var fraction = String(units % 10_000_000_000)
        fraction = String(repeating: "0", count: 10 - fraction.count) + fraction
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return fraction.isEmpty ? String(whole) : "\(whole).\(fraction)"
    }
}
