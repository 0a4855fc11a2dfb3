import Foundation
import Fusion
import Providers
import GatewayCore
import EventLoop

/// The most recent generation records, in memory and bounded (oldest evicted first); shared by
/// every loop, so behind a mutex (taken once per finished request and per lookup). Its interface
/// is `expect`, `add` and `lookup`: who may read a record is the route's business
/// (`KeyFingerprint`), and a record is a plain value with a JSON form (`storedJSON`) for a store
/// kept elsewhere.
///
/// A record is filed just after its response's last bytes are written (`EventLoop.afterWrites`),
/// so a client on another loop could ask for it in between: its id is `expect`ed as the response
/// ends, and a lookup of an expected id waits for the record instead of missing it.
final class GenerationStore: Sendable {
    /// A lookup waiting for an expected record, answered on its own loop.
    private struct Waiter {
        let loop: EventLoop
        let completion: @Sendable (GenerationRecord) -> Void
    }

    /// Ids in arrival order, at most `capacity`: once full, `next` is the oldest, overwritten by
    /// the newest (memory stays flat; a list compacted now and then grew ~73 bytes a request
    /// between compactions).
    private struct Ring {
        let capacity: Int
        var ids: [String] = []
        var next = 0

        /// Adds `id`; returns the id it pushed out, if the ring was full.
        mutating func insert(_ id: String) -> String? {
            guard ids.count == capacity else {
                ids.append(id)
                return nil
            }
            let evicted = ids[next]
            ids[next] = id
            next = (next + 1) % capacity
            return evicted
        }
    }

    private struct State {
        var records: [String: GenerationRecord] = [:]
        /// Ids whose response has ended and whose record is being filed, with the lookups
        /// waiting for each (at most as many ids as responses ending in one loop iteration).
        var expected: [String: [Waiter]] = [:]
        /// Completions that ran (proxied or deliberated, whatever their ending).
        var ring: Ring
        /// Requests refused before any upstream work (`RecordKind.rejected`): their own ring, so
        /// a flood of cheap refusals (an unknown model, bad JSON) cannot push out the records of
        /// completions other clients paid for.
        var rejected: Ring
    }

    private let state: Lock<State>
    let capacity: Int

    /// `capacity` records of completions that ran, and a tenth of it (at least one) of refusals.
    init(capacity: Int = 10_000) {
        precondition(capacity > 0, "a store holds at least one record")
        self.capacity = capacity
        state = Lock(State(ring: Ring(capacity: capacity), rejected: Ring(capacity: max(1, capacity / 10))))
    }

    /// `id`'s response has ended; its record follows within this loop iteration (`add`).
    func expect(_ id: String) {
        state.withLock { state in
            if state.expected[id] == nil { state.expected[id] = [] }
        }
    }

    func add(_ record: GenerationRecord) {
        let waiters = state.withLock { state in
            let evicted = record.kind == .rejected ? state.rejected.insert(record.id) : state.ring.insert(record.id)
            if let evicted { state.records[evicted] = nil }
            state.records[record.id] = record
            return state.expected.removeValue(forKey: record.id)
        }
        for waiter in waiters ?? [] {
            let completion = waiter.completion
            waiter.loop.execute { completion(record) }
        }
    }

    /// The record with `id`, or nil; for an expected id, once it is filed. `completion` runs on
    /// `loop` (the caller's), possibly before this returns.
    func lookup(_ id: String, on loop: EventLoop, _ completion: @escaping (GenerationRecord?) -> Void) {
        enum Found { case now(GenerationRecord?), later }
        nonisolated(unsafe) let completion = completion  // called on `loop` alone, whoever files
        let found = state.withLock { state -> Found in
            if let record = state.records[id] { return .now(record) }
            guard state.expected[id] != nil else { return .now(nil) }
            state.expected[id]?.append(Waiter(loop: loop) { completion($0) })
            return .later
        }
        if case .now(let record) = found { completion(record) }
    }

    /// Records held now.
    var count: Int { state.withLock { $0.records.count } }

    func record(_ id: String) -> GenerationRecord? { state.withLock { $0.records[id] } }

    /// A new id: `gen-` and 24 random hex digits (96 bits), drawn from `random` (a loop's pool:
    /// one `getrandom` per 256 ids, where glibc's `arc4random_buf` is one per call), or from
    /// `arc4random_buf` without one.
    static func newID(from random: RandomPool? = nil) -> String {
        var words: (high: UInt64, low: UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &words) { buffer in
            if let random { random.fill(buffer) } else { arc4random_buf(buffer.baseAddress!, buffer.count) }
        }
        let (high, low) = words
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: 28) { buffer in
            for (index, byte) in "gen-".utf8.enumerated() { buffer[index] = byte }
            for index in 0..<24 {
                let nibble = index < 16 ? (high >> UInt64(60 - 4 * index)) & 0xF : (low >> UInt64(60 - 4 * (index - 16))) & 0xF
                buffer[4 + index] = digits.utf8Start[Int(nibble)]
            }
            return 28
        }
    }

    /// `gen-` and 24 lower-case hex digits (`newID`).
    static func isGatewayID(_ id: String) -> Bool {
        id.utf8.count == 28 && id.hasPrefix("gen-") && id.utf8.dropFirst(4).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}
