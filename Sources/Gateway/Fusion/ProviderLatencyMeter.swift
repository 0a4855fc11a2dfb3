import EventLoop

/// One inner call's provider latency: each attempt's time to its first event and the gaps
/// between reads that carry events, into the provider's metric series (looked up once per
/// route, not per read: a dictionary lookup by provider name). Split out of `InnerCall`.
struct ProviderLatencyMeter {
    let metrics: GatewayMetrics?
    private var cached: (provider: String, series: GatewayMetrics.ProviderSeries)?
    /// When the current attempt started and the last read carrying events arrived (monotonic ns).
    private(set) var attemptAt: UInt64 = 0
    private var lastEventAt: UInt64 = 0

    init(metrics: GatewayMetrics?) { self.metrics = metrics }

    mutating func attemptStarted(at time: UInt64) {
        attemptAt = time
        lastEventAt = 0
    }

    /// A read from `provider` carried events.
    mutating func eventsArrived(from provider: String) {
        guard let metrics else { return }
        if cached?.provider != provider { cached = (provider, metrics.provider(provider)) }
        let now = EventLoop.monotonicNanoseconds()
        if lastEventAt == 0 {
            cached?.series.observeFirstEvent(afterNanoseconds: now - attemptAt)
        } else {
            cached?.series.observeGap(nanoseconds: now - lastEventAt)
        }
        lastEventAt = now
    }
}
