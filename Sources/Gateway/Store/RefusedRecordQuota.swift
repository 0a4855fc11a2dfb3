/// How many records of refused requests (a 429 of the limits, a 400) each key may have written to
/// Redis a minute. Refusals are cheap for a client to cause and each record lives in the shared
/// Redis for hours: unbounded, one key hammering past its limit filled Redis, and a full Redis
/// switched every other key's limits off (review 43 state #1). Past its quota a key's refusals are
/// kept by the replica that refused them (its bounded ring, `GenerationStore`), and a lookup on
/// another replica finds nothing. Fixed one-minute windows; socket-free, loop-confined.
struct RefusedRecordQuota {
    static let perKeyPerMinute = 60
    /// Keys counted in one window; refusals of more keys than this in one minute stay local.
    static let maxKeysPerWindow = 10_000

    private var window: UInt64 = 0
    private var counts: [String: Int] = [:]

    /// Whether a refused request's record of `owner` (nil: no key) may go to Redis at `nowMilliseconds`.
    mutating func admit(owner: String?, nowMilliseconds: UInt64) -> Bool {
        let current = nowMilliseconds / 60_000
        if current != window {
            window = current
            counts.removeAll(keepingCapacity: true)
        }
        let key = owner ?? ""
        let count = counts[key] ?? 0
        guard count < Self.perKeyPerMinute, count > 0 || counts.count < Self.maxKeysPerWindow else { return false }
        counts[key] = count + 1
        return true
    }
}
