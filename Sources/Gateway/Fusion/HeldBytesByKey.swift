import Synchronization

/// Bytes held per key, each key at most `limit`, across loops: a key's share of a process-wide
/// bound (`fusion.max_bytes_in_flight_per_key`). Locked: taken when a deliberation starts and
/// as its members' responses arrive (per read, not per token), from whichever loop.
final class HeldBytesByKey: Sendable {
    let limit: Int
    private let held = Mutex<[String: Int]>([:])

    init(limit: Int) { self.limit = limit }

    /// Takes `bytes` of `key`'s share; false (and nothing taken) when they do not fit.
    func reserve(_ bytes: Int, key: String) -> Bool {
        held.withLock { held in
            let current = held[key, default: 0]
            guard bytes <= limit - current else { return false }
            held[key] = current + bytes
            return true
        }
    }

    func release(_ bytes: Int, key: String) {
        guard bytes > 0 else { return }
        held.withLock { held in
            let left = held[key, default: 0] - bytes
            held[key] = left > 0 ? left : nil  // a key holding nothing takes no room
        }
    }

    /// What `key` holds now (tests).
    func current(_ key: String) -> Int { held.withLock { $0[key, default: 0] } }
}
