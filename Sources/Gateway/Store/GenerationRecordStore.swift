import EventLoop
import GatewayCore
import RedisClient

/// A filed record as a lookup returns it: its JSON (what `GET /api/v1/generation` shows) and the
/// fingerprint of the key that made it (`GenerationRecord.owner`; nil without gateway keys).
struct StoredGeneration: Sendable, Equatable {
    var json: [UInt8]
    var owner: String?

    init(json: [UInt8], owner: String?) {
        self.json = json
        self.owner = owner
    }

    init(_ record: GenerationRecord) {
        self.init(json: record.apiJSON.serialized(), owner: record.owner)
    }
}

enum GenerationLookup: Equatable {
    case found(StoredGeneration)
    case notFound
    /// The shared store could not answer (the record may exist on another replica).
    case unavailable(RedisError)
    /// The shared store holds something under the id that is not a record this gateway wrote
    /// (written by hand, another program): asking again will not help (review 114 #5).
    case unreadable
}

/// Where generation records live, as one loop sees them: in this process only, or shared with
/// every replica through Redis. What a record holds is `GenerationRecord`'s business; this is
/// only where it is kept. Used on its loop only; neither call ever blocks it.
protocol GenerationRecordStore: AnyObject {
    /// A response has ended: its record is filed (`put`) within this loop iteration, and a lookup
    /// of `id` until then waits for it.
    func expect(_ id: String)
    /// Files a finished record (a shared store writes it in the background).
    func put(_ record: GenerationRecord)
    /// Looks a record up; `completion` runs on the loop, possibly before `get` returns. A record
    /// held here whose owner may not read it (`mayRead`: another key's) is looked for where an
    /// absent one would be, so its lookup costs what an unknown id's does.
    func get(id: String, mayRead: @escaping (_ owner: String?) -> Bool, completion: @escaping (GenerationLookup) -> Void)
}

/// Records in this process only (no `store.redis`): the shared in-memory `GenerationStore`.
final class LocalGenerationRecordStore: GenerationRecordStore {
    let memory: GenerationStore
    let loop: EventLoop
    init(memory: GenerationStore, loop: EventLoop) {
        self.memory = memory
        self.loop = loop
    }

    func expect(_ id: String) { memory.expect(id) }

    func put(_ record: GenerationRecord) { memory.add(record) }

    func get(id: String, mayRead: @escaping (_ owner: String?) -> Bool, completion: @escaping (GenerationLookup) -> Void) {
        // Another key's is answered as absent before it is serialized (review 82 #1: 379 µs
        // against an unknown id's 158).
        memory.lookup(id, on: loop) { record in
            guard let record, mayRead(record.owner) else { return completion(.notFound) }
            completion(.found(StoredGeneration(record)))
        }
    }
}
