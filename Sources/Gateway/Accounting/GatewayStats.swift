import Synchronization

/// Counters tests read directly (the Prometheus registry holds the rest): atomics, since every
/// loop updates them.
public final class GatewayStats: Sendable {
    /// Upstream transfers paused because a client stream's fan-in channel was full.
    public let backpressurePauses = Atomic<Int>(0)

    public init() {}

    // Relaxed: an independent counter, read for reporting only.
    func countPause() { backpressurePauses.add(1, ordering: .relaxed) }
}
