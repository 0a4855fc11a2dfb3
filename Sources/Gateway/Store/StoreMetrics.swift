import Prometheus

/// The shared store's and the limits' figures (labels from fixed sets only).
extension GatewayMetrics {
    /// `operation`: connect, admit, settle, record_put, record_get, record_dropped, settle_dropped;
    /// `error`: `RedisError.label`.
    func countStoreError(operation: String, error: String) {
        registry.makeCounter(
            descriptor: MetricNameDescriptor(namespace: "fusion_gateway", metricName: "store_errors", unitName: "total",
                                             helpText: "Failed operations on the shared store (Redis), by operation and error."),
            labels: [("operation", operation), ("error", error)]).increment()
    }

    /// `outcome`: allowed, limited, store_error_allowed, store_error_denied (admissions), and
    /// hold_refused (a spend hold refused after admission; a hold the store could not decide
    /// counts as a store error). Every outcome `countLimitDecision` is given.
    static let limitOutcomes = ["allowed", "limited", "store_error_allowed", "store_error_denied", "hold_refused", "tokens_refused"]

    func countLimitDecision(outcome: String) {
        limitDecisions(outcome: outcome).increment()
    }

    func limitDecisions(outcome: String) -> Counter {
        registry.makeCounter(
            descriptor: MetricNameDescriptor(namespace: "fusion_gateway", metricName: "limit_decisions", unitName: "total",
                                             helpText: "Admissions of requests from keys with limits, by outcome."),
            labels: [("outcome", outcome)])
    }

    /// `kind`: requests, tokens, budget-day, budget-month.
    func countRateLimited(kind: String) {
        rateLimited(kind: kind).increment()
    }

    func rateLimited(kind: String) -> Counter {
        registry.makeCounter(
            descriptor: MetricNameDescriptor(namespace: "fusion_gateway", metricName: "rate_limited", unitName: "total",
                                             helpText: "Requests refused by a key's limits, by the limit exceeded."),
            labels: [("kind", kind)])
    }
}
