import Synchronization

/// Whether an inner call's upstream holds its prompt: set by the call on its loop, read by its
/// session on another, when it cuts the call and again when it files the record. The call's
/// records say the same (`InnerCallRecord.accepted`, `requestSent`, `refused`), but a record can
/// wait behind a client that reads nothing (in the session's ring, then in the call's outbox once
/// the ring is full) and is dropped with the session: a call cut then was charged nothing for a
/// prompt its upstream had (review 94 #3). Two flags, a few stores per call, off the token path.
final class PromptLedger: Sendable {
    private let tookIt = Atomic<Bool>(false)
    private let hasIt = Atomic<Bool>(false)

    /// The upstream answered 2xx: it took the prompt, whatever comes after.
    func accepted() { tookIt.store(true, ordering: .releasing) }

    /// The current attempt's request went out whole (its last byte written to the connection).
    func requestSent() { hasIt.store(true, ordering: .releasing) }

    /// The current attempt was refused (a status not 2xx): nothing owed for what it sent. A
    /// retry's `requestSent` sets it again.
    func refused() { hasIt.store(false, ordering: .releasing) }

    /// A call cut before any answer owes its prompt: its upstream took it, or has it and has
    /// not refused it.
    var owesPrompt: Bool { tookIt.load(ordering: .acquiring) || hasIt.load(ordering: .acquiring) }
}
