import Synchronization

/// The bytes of whole (non-streamed) upstream answers this process holds at once, across
/// requests and loops (hence atomic). Each such answer is collected before it is converted, so
/// without this bound N concurrent large answers would hold N times `upstream.max_response_bytes`
/// (and about twice that while converted): a few slow clients of a large answer could exhaust
/// the gateway's memory. A request that would pass it fails with a 503; the others go on.
final class HeldBytes: Sendable {
    let limit: Int
    private let held = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    /// Takes `bytes` from the bound; false (and nothing taken) when they do not fit. Compared
    /// and exchanged, so the total never passes the bound, even for a moment.
    func reserve(_ bytes: Int) -> Bool {
        var current = held.load(ordering: .relaxed)
        while true {
            // Relaxed: a counter; nothing else is published through it.
            guard bytes <= limit - current else { return false }
            let (exchanged, original) = held.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        held.wrappingSubtract(bytes, ordering: .relaxed)
    }

    /// Held now (tests, metrics).
    var current: Int { held.load(ordering: .relaxed) }
}
