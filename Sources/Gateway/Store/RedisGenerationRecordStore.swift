import EventLoop
import GatewayCore
import RedisClient

/// Records shared with every replica through Redis, as `SET <prefix>gen:<id> <value> EX <ttl>`,
/// the value `v1\n<owner>\n<json>`. Writes happen after the response, in the background; a
/// record that cannot be written now (Redis down or reconnecting) waits in a bounded queue and is
/// written when Redis is back. This replica's own records are also kept in memory (the shared
/// `GenerationStore`), so it can answer for them during an outage. Loop-confined.
final class RedisGenerationRecordStore: GenerationRecordStore {
    private let memory: GenerationStore
    private let client: RedisClient
    /// Records filed in this loop iteration, written on the next (see `put`).
    private var toEncode: [GenerationRecord] = []
    /// Records filed this loop turn, to be encoded and written on the next.
    var waitingToEncode: Int { toEncode.count }
    private let keyPrefix: String
    private let ttlSeconds: Int
    private let maxUnwritten: Int
    /// Called for every failed Redis operation (metrics, the rate-limited warning).
    private let onError: (String, RedisError) -> Void
    /// Called when a record starts waiting (the store retries what waits: `LoopStore`).
    var onQueued: (() -> Void)?
    /// Records waiting for Redis, oldest first; `refused`: a request refused before any work.
    private(set) var unwritten: [(id: String, value: [UInt8], refused: Bool)] = []
    /// Refused requests' records written a minute, per key, by the whole replica (the rest stay
    /// in this replica).
    private let refusedQuota: Lock<RefusedRecordQuota>
    /// A refused request's record lives an hour at most (a completion's, `ttlSeconds`).
    static let refusedTTLSeconds = 3_600

    /// Ids are ours (`gen-` + hex) or a client's query: anything longer is not a record.
    static let maxIDBytes = 128
    static let maxOwnerBytes = 128

    init(memory: GenerationStore, refusedQuota: Lock<RefusedRecordQuota>, client: RedisClient, keyPrefix: String, ttlSeconds: Int,
         maxUnwritten: Int, onError: @escaping (String, RedisError) -> Void) {
        self.memory = memory
        self.refusedQuota = refusedQuota
        self.client = client
        self.keyPrefix = keyPrefix
        self.ttlSeconds = ttlSeconds
        self.maxUnwritten = maxUnwritten
        self.onError = onError
    }

    func key(_ id: String) -> [UInt8] { Array((keyPrefix + "gen:" + id).utf8) }

    func put(_ record: GenerationRecord) {
        memory.add(record)
        // Encoded and sent on the next loop iteration, the records of one iteration together: the
        // JSON encoding must not delay another response's bytes in this iteration's flush
        // (store-bench measured it as +0.28 ms at the median when it ran before them).
        toEncode.append(record)
        guard toEncode.count == 1 else { return }
        client.loop.deferToNextIteration { [weak self] in
            guard let self else { return }
            let records = toEncode
            toEncode.removeAll(keepingCapacity: true)
            for record in records {
                let refused = record.kind == .rejected
                if refused, !refusedQuota.withLock({ $0.admit(owner: record.owner, nowMilliseconds: client.loop.nowMilliseconds) }) { continue }
                write(id: record.id, value: Self.encode(StoredGeneration(record)), refused: refused)
            }
        }
    }

    private func write(id: String, value: [UInt8], refused: Bool) {
        // One that could not be read back (a reply past the client's bound fails its connection,
        // and every command on it): kept in this replica only (review 46 #1).
        guard value.count + 1_024 <= client.settings.maxReplyBytes else {
            onError("record_put", .protocolViolation("a record of \(value.count) bytes is larger than replies are read"))
            return
        }
        let ttl = refused ? min(ttlSeconds, Self.refusedTTLSeconds) : ttlSeconds
        client.send([Array("SET".utf8), key(id), value, Array("EX".utf8), Array(String(ttl).utf8)]) { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(.status):
                // Redis answers again: write what still waits, a batch at a time.
                if !unwritten.isEmpty { flushUnwritten(batch: 256) }
            case .success:
                onError("record_put", .protocolViolation("unexpected reply to SET"))
            case .failure(let error):
                onError("record_put", error)
                // SET is idempotent: whatever happened to this attempt, writing it again is safe,
                // unless Redis refused it for good (a type error, not `OOM`: review 22 F3).
                if case .server = error, !error.wasNotAppliedButMayBeRetried { return }
                keepUnwritten(id: id, value: value, refused: refused, error: error)
            }
        }
    }

    /// Queued for when Redis is back; beyond `maxUnwritten` one is dropped, counted and logged
    /// (`record_dropped`), never silently: the oldest record of a refused request if any (a
    /// client sending malformed requests must not push out others' records: review 22 F4), else
    /// the oldest.
    private func keepUnwritten(id: String, value: [UInt8], refused: Bool, error: RedisError) {
        guard maxUnwritten > 0 else {
            onError("record_dropped", error)
            return
        }
        if unwritten.count >= maxUnwritten {
            if let index = unwritten.firstIndex(where: \.refused) { unwritten.remove(at: index) } else { unwritten.removeFirst() }
            onError("record_dropped", error)
        }
        unwritten.append((id, value, refused))
        onQueued?()
    }

    /// Redis is back: write what waited (at most `batch` now; each success sends more).
    func flushUnwritten(batch: Int = 1_024) {
        let waiting = unwritten.prefix(batch)
        unwritten.removeFirst(waiting.count)
        for (id, value, refused) in waiting { write(id: id, value: value, refused: refused) }
    }

    func expect(_ id: String) { memory.expect(id) }

    func get(id: String, mayRead: @escaping (_ owner: String?) -> Bool, completion: @escaping (GenerationLookup) -> Void) {
        memory.lookup(id, on: client.loop) { [weak self] local in
            // The owner checked before the record is serialized: another key's costs no more
            // here than an unknown id (review 81A #2: ~0.3 ms more, serializing it first).
            if let local, mayRead(local.owner) {
                completion(.found(StoredGeneration(local)))
            } else if let self {
                // Absent here, or another key's: asked of Redis either way, so another key's id
                // is neither faster nor answered differently when Redis is down than an unknown
                // one (review 72B #2: 404 in 0.5 ms against a 503, ~15 ms apart with Redis away).
                self.getShared(id: id, completion: completion)
            } else {
                completion(.notFound)
            }
        }
    }

    /// Another replica's record, from Redis.
    private func getShared(id: String, completion: @escaping (GenerationLookup) -> Void) {
        guard id.utf8.count <= Self.maxIDBytes else {
            completion(.notFound)
            return
        }
        // At most one byte more than any record this gateway writes (`put`): a larger value,
        // not ours, was a reply over the client's bound, which ends the connection and fails
        // every command waiting on it, other keys' too (review 114 #2). A missing key is "".
        let limit = client.settings.maxReplyBytes - 1_024
        client.send([Array("GETRANGE".utf8), key(id), Array("0".utf8), Array(String(limit).utf8)]) { [weak self] result in
            switch result {
            case .success(.null), .success(.bulk([])):
                completion(.notFound)
            case .success(.bulk(let value)):
                if value.count <= limit, let stored = Self.decode(value) {
                    completion(.found(stored))
                } else {
                    self?.unreadable(id, completion)
                }
            case .success:
                let error = RedisError.protocolViolation("unexpected reply to GETRANGE")
                self?.onError("record_get", error)
                completion(.unavailable(error))
            case .failure(.server(let message)) where message.hasPrefix("WRONGTYPE"):
                self?.unreadable(id, completion)  // a hash, a list: not ours either
            case .failure(let error):
                self?.onError("record_get", error)
                completion(.unavailable(error))
            }
        }
    }

    /// Something under the record's key that this gateway did not write: said to the operator
    /// with the key (an id of the gateway's own form; a client's other string is not logged), so
    /// it can be looked at or deleted.
    private func unreadable(_ id: String, _ completion: (GenerationLookup) -> Void) {
        let named = GenerationStore.isGatewayID(id) ? String(decoding: key(id), as: UTF8.self) : "a key under \(keyPrefix)gen:"
        onError("record_unreadable", .protocolViolation("\(named) holds no generation record this gateway wrote"))
        completion(.unreadable)
    }

    static func encode(_ stored: StoredGeneration) -> [UInt8] {
        Array("v1\n".utf8) + Array((stored.owner ?? "").utf8) + [0x0A] + stored.json
    }

    /// The stored value, checked as hostile: the version, an owner without control bytes, and a
    /// JSON object.
    static func decode(_ value: [UInt8]) -> StoredGeneration? {
        let version = Array("v1\n".utf8)
        guard value.starts(with: version) else { return nil }
        let rest = value[version.count...]
        guard let newline = rest.firstIndex(of: 0x0A) else { return nil }
        let owner = rest[..<newline]
        let json = Array(rest[(newline + 1)...])
        // Valid UTF-8 too: it is served as `application/json` (review 62A #5: the scanner takes
        // any bytes inside strings).
        guard owner.count <= maxOwnerBytes, owner.allSatisfy({ $0 > 0x20 && $0 < 0x7F }),
              json.first == UInt8(ascii: "{"), JSONScanner.isValid(json), String(validating: json, as: UTF8.self) != nil else { return nil }
        return StoredGeneration(json: json, owner: owner.isEmpty ? nil : String(decoding: owner, as: UTF8.self))
    }
}
