import EventLoop
import Synchronization

/// The bytes one deliberation's upstream responses may still bring in, spent by its inner calls
/// on whichever loops they run (hence atomic). An upstream that streams without end, or a panel
/// of them, cannot make one request consume unbounded bandwidth and CPU; and what they bring in
/// is held in the process-wide bound of every deliberation's bytes too (`shared`:
/// `fusion.max_bytes_in_flight`), so many deliberations at once cannot either (review 74B #1:
/// 45 at once held 3.3 GB).
final class ByteBudget: Sendable {
    let limit: Int
    private let spent = Atomic<Int>(0)
    private let shared: HeldBytes?
    /// The key's share of `shared` (`fusion.max_bytes_in_flight_per_key`), for a request that
    /// came with a key: one key cannot take every other key's deliberations (review 75A #2).
    private let keyed: (bound: HeldBytesByKey, key: String)?
    /// What this budget holds of `shared`, given back once (`releaseShared`, or at the latest
    /// when the last inner call lets go of it).
    private let heldShared = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
        shared = nil
        keyed = nil
    }

    /// A budget holding `holding` bytes of `shared` (and of `key`'s share of it) from the start
    /// (the deliberation's conversation times its calls); nil, and nothing held, when they do not fit.
    init?(limit: Int, shared: HeldBytes, keyed: (bound: HeldBytesByKey, key: String)?, holding: Int) {
        if let keyed, !keyed.bound.reserve(holding, key: keyed.key) { return nil }
        guard shared.reserve(holding) else {
            if let keyed { keyed.bound.release(holding, key: keyed.key) }
            return nil
        }
        self.limit = limit
        self.shared = shared
        self.keyed = keyed
        heldShared.store(holding, ordering: .relaxed)
    }

    /// Spends `bytes`; false once the total is over the limit, or the process-wide bound is full.
    func spend(_ bytes: Int) -> Bool {
        // Relaxed: counters; nothing else is published through them.
        guard spent.wrappingAdd(bytes, ordering: .relaxed).newValue <= limit else { return false }
        guard let shared else { return true }
        if let keyed, !keyed.bound.reserve(bytes, key: keyed.key) { return false }
        guard shared.reserve(bytes) else {
            if let keyed { keyed.bound.release(bytes, key: keyed.key) }
            return false
        }
        heldShared.wrappingAdd(bytes, ordering: .relaxed)
        return true
    }

    /// Whether the process-wide bound (or the key's share) is what refused (for the failure's message).
    var sharedIsFull: Bool { spent.load(ordering: .relaxed) <= limit && shared != nil }

    /// The deliberation ended: what it held of the process-wide bound is free again.
    func releaseShared() {
        let held = heldShared.exchange(0, ordering: .relaxed)
        shared?.release(held)
        if let keyed { keyed.bound.release(held, key: keyed.key) }
    }

    deinit { releaseShared() }
}
