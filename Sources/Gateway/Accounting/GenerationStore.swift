import Foundation
import Fusion
import Providers
import GatewayCore
import EventLoop

/// The most recent generation records, in memory and bounded (oldest evicted first); shared by
/// every loop, so behind a mutex (taken once per finished request and per lookup). Its interface
/// is `add` and `record` only: who may read a record is the route's business (`KeyFingerprint`),
/// and a record is a plain value with a JSON form (`storedJSON`) for a store kept elsewhere.
final class GenerationStore: Sendable {
    private struct State {
        var records: [String: GenerationRecord] = [:]
        /// The ids in arrival order, a ring of at most `capacity`: once full, `next` is the oldest,
        /// overwritten by the newest (memory stays flat; a list compacted now and then grew
        /// ~73 bytes a request between compactions).
        var ring: [String] = []
        var next = 0
    }

    private let state = Lock(State())
    let capacity: Int

    init(capacity: Int = 10_000) {
        precondition(capacity > 0, "a store holds at least one record")
        self.capacity = capacity
    }

    func add(_ record: GenerationRecord) {
        state.withLock { state in
            if state.ring.count < capacity {
                state.ring.append(record.id)
            } else {
                state.records[state.ring[state.next]] = nil
                state.ring[state.next] = record.id
                state.next = (state.next + 1) % capacity
            }
            state.records[record.id] = record
        }
    }

    /// Records held now.
    var count: Int { state.withLock { $0.records.count } }

    func record(_ id: String) -> GenerationRecord? { state.withLock { $0.records[id] } }

    /// A new id: `gen-` and 24 random hex digits (96 bits in one call: glibc's `arc4random_buf` is
    /// one `getrandom`, where the system generator's `next()` is a syscall per draw).
    static func newID() -> String {
        var words: (high: UInt64, low: UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &words) { arc4random_buf($0.baseAddress!, $0.count) }
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
}
