import Synchronization

/// Counters shared by every loop of a gateway (atomics: loops update them concurrently).
public final class GatewayStats: Sendable {
    /// Upstream transfers paused because a client stream's fan-in channel was full.
    public let backpressurePauses = Atomic<Int>(0)
    /// Requests answered, by any path.
    public let requests = Atomic<Int>(0)

    public init() {}

    // Relaxed throughout: independent counters, read for reporting only.
    func countPause() { backpressurePauses.add(1, ordering: .relaxed) }
    func countRequest() { requests.add(1, ordering: .relaxed) }
}
