import Prometheus

/// The gateway's metrics in Prometheus' text format (`GET /metrics`), shared by every loop
/// (swift-prometheus' metrics are thread-safe).
public final class GatewayMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let activeStreams: Gauge
    let timeToFirstToken: DurationHistogram
    let interToken: DurationHistogram
    let backpressurePauses: Counter

    private static func name(_ metric: String, unit: String = "", help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "fusion_gateway", metricName: metric, unitName: unit, helpText: help)
    }

    init() {
        activeStreams = registry.makeGauge(descriptor: Self.name("active_streams", help: "Completions in progress (proxied and fusion)."))
        timeToFirstToken = registry.makeDurationHistogram(
            descriptor: Self.name("time_to_first_token", unit: "seconds", help: "From request to the first token sent to the client."),
            buckets: [.microseconds(500), .milliseconds(1), .milliseconds(5), .milliseconds(20), .milliseconds(100),
                      .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(30)])
        interToken = registry.makeDurationHistogram(
            descriptor: Self.name("inter_token", unit: "seconds", help: "Gaps between forwarded upstream reads carrying events, per stream."),
            buckets: [.microseconds(100), .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(20),
                      .milliseconds(50), .milliseconds(100), .milliseconds(500), .seconds(2)])
        backpressurePauses = registry.makeCounter(
            descriptor: Self.name("backpressure_pauses", unit: "total", help: "Upstream transfers paused because a client read slowly."))
    }

    func countRequest(kind: String, status: Int) {
        registry.makeCounter(
            descriptor: Self.name("requests", unit: "total", help: "Completions answered, by kind (proxy, fusion, rejected) and HTTP status."),
            labels: [("kind", kind), ("status", String(status))]).increment()
    }

    func countError(code: String) {
        registry.makeCounter(descriptor: Self.name("errors", unit: "total", help: "Errors returned to clients, by code."),
                             labels: [("code", code)]).increment()
    }

    func countUpstreamError(provider: String, code: String) {
        registry.makeCounter(descriptor: Self.name("upstream_errors", unit: "total", help: "Failed upstream calls, by provider and error code."),
                             labels: [("provider", provider), ("code", code)]).increment()
    }

    func countMemberFailure(reason: String) {
        registry.makeCounter(
            descriptor: Self.name("fusion_member_failures", unit: "total", help: "Fusion panel members that produced no answer, by reason."),
            labels: [("reason", reason)]).increment()
    }

    func countWebTool(name: String, failed: Bool) {
        registry.makeCounter(
            descriptor: Self.name("web_tool_calls", unit: "total", help: "Web tool calls run for Fusion's panel and judge, by tool and outcome."),
            labels: [("tool", name), ("outcome", failed ? "error" : "ok")]).increment()
    }

    func render() -> [UInt8] { registry.emitToBuffer() }
}
