import Synchronization

/// The bytes one deliberation's upstream responses may still bring in, spent by its inner calls
/// on whichever loops they run (hence atomic). An upstream that streams without end, or a panel
/// of them, cannot make one request consume unbounded bandwidth and CPU.
final class ByteBudget: Sendable {
    let limit: Int
    private let spent = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    /// Spends `bytes`; false once the total is over the limit.
    func spend(_ bytes: Int) -> Bool {
        // Relaxed: a counter; nothing else is published through it.
        spent.wrappingAdd(bytes, ordering: .relaxed).newValue <= limit
    }
}
