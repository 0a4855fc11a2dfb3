import EventLoop
import GatewayCore
import RedisClient

/// A filed record: its JSON (what `GET /api/v1/generation` returns, encoded once when the
/// request finished) and the identity of the key that made it (nil without gateway keys).
struct StoredGeneration: Sendable, Equatable {
    var json: [UInt8]
    var owner: String?
}

enum GenerationLookup: Equatable {
    case found(StoredGeneration)
    case notFound
    /// The shared store could not answer (the record may exist on another replica).
    case unavailable(RedisError)
}

/// Where generation records live, as one loop sees them: in this process only, or shared with
/// every replica through Redis. Used on its loop only; neither call ever blocks it.
protocol GenerationRecordStore: AnyObject {
    /// Files a finished record (a shared store writes it in the background).
    func put(id: String, _ stored: StoredGeneration)
    /// Looks a record up; `completion` runs on the loop, possibly before `get` returns.
    func get(id: String, completion: @escaping (GenerationLookup) -> Void)
}

/// The most recent records in memory, bounded (oldest evicted first) and shared by every loop,
/// so behind a lock (taken once per finished request and per lookup). With Redis it is also
/// this replica's own cache: its records stay readable here while Redis is away.
final class InMemoryGenerations: Sendable {
    private struct State {
        var records: [String: StoredGeneration] = [:]
        var order: [String] = []
        var oldest = 0
    }

    private let state = Lock(State())
    let capacity: Int

    init(capacity: Int = 10_000) { self.capacity = capacity }

    func add(id: String, _ stored: StoredGeneration) {
        state.withLock { state in
            if state.records[id] == nil, state.records.count >= capacity, state.oldest < state.order.count {
                state.records[state.order[state.oldest]] = nil
                state.oldest += 1
                if state.oldest > capacity {  // compact the id list now and then
                    state.order.removeFirst(state.oldest)
                    state.oldest = 0
                }
            }
            if state.records.updateValue(stored, forKey: id) == nil { state.order.append(id) }
        }
    }

    func record(_ id: String) -> StoredGeneration? { state.withLock { $0.records[id] } }
}

/// Records in this process only (no `store.redis`).
final class LocalGenerationRecordStore: GenerationRecordStore {
    let memory: InMemoryGenerations
    init(memory: InMemoryGenerations) { self.memory = memory }

    func put(id: String, _ stored: StoredGeneration) { memory.add(id: id, stored) }

    func get(id: String, completion: @escaping (GenerationLookup) -> Void) {
        completion(memory.record(id).map(GenerationLookup.found) ?? .notFound)
    }
}
