import EventLoop
import Providers
import Synchronization

/// What an inner call owes, as far as its upstream has gone: set by the call on its loop, read by
/// its session on another, when it cuts the call and again when it files the record. The call's
/// records say the same (`InnerCallRecord.accepted`, `requestSent`, `refused`, its output and
/// usage events), but a record can wait behind a client that reads nothing (in the session's
/// ring, then in the call's outbox once the ring is full) and is dropped with the session: a call
/// cut then was charged nothing for a prompt its upstream had, nor for output read but not yet
/// read by the session (review 94 #3). Stores per call, one relaxed add per piece of output.
final class CallLedger: Sendable {
    private let tookIt = Atomic<Bool>(false)
    private let hasIt = Atomic<Bool>(false)
    private let pieces = Atomic<Int64>(0)
    private let reported = Lock<(usage: Usage, piecesBefore: Int64)?>(nil)

    /// The upstream answered 2xx: it took the prompt, whatever comes after.
    func accepted() { tookIt.store(true, ordering: .releasing) }

    /// The current attempt's request went out whole (its last byte written to the connection).
    func requestSent() { hasIt.store(true, ordering: .releasing) }

    /// The current attempt was refused (a status not 2xx): nothing owed for what it sent. A
    /// retry's `requestSent` sets it again.
    func refused() { hasIt.store(false, ordering: .releasing) }

    /// A piece of output (text, reasoning, a refusal, a tool call's fragment) of `bytes` passed
    /// to the session: what `InnerCallLog` counts when it estimates, a token a piece or one per
    /// four bytes of a large one (review 101 #1: 20 KB in one delta was one token).
    func outputPiece(bytes: Int = 1) { pieces.add(Int64(max(1, bytes / 4)), ordering: .relaxed) }

    /// The upstream's usage report (the last is the call's total if the call runs to its end;
    /// output after it, of a call cut before then, is not in it).
    func usage(_ usage: Usage) {
        let pieces = outputPieces
        reported.withLock { $0 = (usage, pieces) }
    }

    /// A call cut before any answer owes its prompt: its upstream took it, or has it and has
    /// not refused it.
    var owesPrompt: Bool { tookIt.load(ordering: .acquiring) || hasIt.load(ordering: .acquiring) }

    var outputPieces: Int64 { pieces.load(ordering: .relaxed) }

    /// The last usage report, and the pieces of output read before it.
    var lastReport: (usage: Usage, piecesBefore: Int64)? { reported.withLock { $0 } }
}
