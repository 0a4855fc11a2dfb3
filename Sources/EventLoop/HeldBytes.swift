import Synchronization

/// Bytes this process holds at once for some purpose, across requests and loops (hence atomic),
/// within a bound: the gateway's whole upstream answers (each collected before it is converted:
/// without it N concurrent large answers would hold N times `upstream.max_response_bytes`) and
/// the request bodies its server is still receiving (`HTTPServer.heldBodies`). A request that
/// would pass it fails with a 503; the others go on.
public final class HeldBytes: Sendable {
    public let limit: Int
    private let held = Atomic<Int>(0)

    public init(limit: Int) { self.limit = limit }

    /// Takes `bytes` from the bound; false (and nothing taken) when they do not fit. Compared
    /// and exchanged, so the total never passes the bound, even for a moment.
    public func reserve(_ bytes: Int) -> Bool {
        var current = held.load(ordering: .relaxed)
        while true {
            // Relaxed: a counter; nothing else is published through it.
            guard bytes <= limit - current else { return false }
            let (exchanged, original) = held.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    public func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        held.wrappingSubtract(bytes, ordering: .relaxed)
    }

    /// Held now (tests, metrics).
    public var current: Int { held.load(ordering: .relaxed) }
}
