import GatewayCore
import RedisClient

/// Limits and usage in Redis, shared by every replica: one `EVAL` per admission (all of a key's
/// limits decided atomically, see `RedisLimitScripts`) and one per settlement, after the
/// response; one per spend hold and one per release. Key names: `<prefix>{<key id>}:requests`,
/// `:tokens`, `:spend:d:<yyyymmdd>`, `:spend:m:<yyyymm>`, `:usage`, `:holds`, `:held` (the braces
/// keep one key's names in one Redis Cluster slot).
/// Loop-confined.
final class RedisKeyLimiter: KeyLimiter {
    private let client: RedisClient
    private let keyPrefix: String
    private let onError: (String, RedisError) -> Void
    /// Settlements that could not be sent (Redis unreachable, refusing while full), sent when it
    /// is back; one per key and period: a key's settlements add up while they wait, so an
    /// outage's requests, however many, cannot push another key's out (review 22 F4). One whose
    /// reply was lost (a timeout, a dropped connection) waits too, on its own: each settlement
    /// is applied once (its marker), so sending it again cannot count it twice (review 62A #1: a
    /// Redis stall dropped the settlements in flight, and most had never run).
    private(set) var unsent: [PendingSettlement] = []
    /// Hold releases that failed, sent again with the settlements.
    private(set) var unreleased: [PendingRelease] = []
    private let maxUnsent: Int
    /// Called when a settlement starts waiting (the store retries what waits: `LoopStore`).
    var onQueued: (() -> Void)?
    /// A test's clock in place of Redis' (`TIME`); nil in production.
    var testClock: (() -> Int64)?
    private let wallClock: () -> Int64

    init(client: RedisClient, keyPrefix: String, maxUnsent: Int = 10_000, wallClock: @escaping () -> Int64 = LimitClock.nowMicros,
         onError: @escaping (String, RedisError) -> Void) {
        self.client = client
        self.keyPrefix = keyPrefix
        self.maxUnsent = maxUnsent
        self.wallClock = wallClock
        self.onError = onError
    }

    func keys(_ id: String, periods: BudgetPeriods) -> [String] {
        let base = "\(keyPrefix){\(id)}:"
        return [base + "requests", base + "tokens", base + "spend:d:" + periods.day.id, base + "spend:m:" + periods.month.id, base + "usage"]
    }

    private var nowArgument: String { testClock.map { String($0()) } ?? "" }

    /// A settlement's id, for its marker: 64 random bits in hex.
    static func settlementID() -> String {
        String(UInt64.random(in: 0...UInt64.max), radix: 16)
    }

    func admit(_ identity: KeyIdentity, reservation: LimitReservation, completion: @escaping (Result<LimitDecision, RedisError>) -> Void) {
        let now = testClock?() ?? wallClock()
        let periods = BudgetPeriods(micros: now)
        let limits = identity.limits
        let arguments = ["EVAL", RedisLimitScripts.admit, "4"] + keys(identity.id, periods: periods).prefix(4) + [
            nowArgument, String(limits.requestsPerMinute ?? 0), String(limits.tokensPerMinute ?? 0),
            String(reservation.requests), String(reservation.tokens),
            String(limits.dailyBudgetMicros ?? 0), String(limits.monthlyBudgetMicros ?? 0),
            String(periods.day.endMicros - now), String(periods.month.endMicros - now),
        ]
        evaluate(arguments, operation: "admit", parse: { Self.decision($0, limits: limits) }, completion: completion)
    }

    /// Runs a script whose reply `parse` checks; a failure, or a reply it refuses, is reported
    /// under `operation`.
    private func evaluate<Decision>(_ arguments: [String], operation: String, parse: @escaping (RedisValue) -> Decision?,
                                    completion: @escaping (Result<Decision, RedisError>) -> Void) {
        client.send(arguments) { [weak self] result in
            let outcome = result.flatMap { reply in
                parse(reply).map(Result.success) ?? .failure(.protocolViolation("unexpected reply to the \(operation) script"))
            }
            if case .failure(let error) = outcome { self?.onError(operation, error) }
            completion(outcome)
        }
    }

    /// How long a hold counts when nothing releases it (its replica died, or Redis missed the
    /// release): longer than any request should run, short enough that a lost one does not
    /// block a key's budget for long. A request still running then is no longer held.
    static let holdLifetimeMicros: Int64 = 15 * 60 * 1_000_000

    private func holdsKeys(_ id: String) -> [String] { ["\(keyPrefix){\(id)}:holds", "\(keyPrefix){\(id)}:held"] }

    func hold(_ identity: KeyIdentity, micros: Int64, holdID: String, completion: @escaping (Result<HoldDecision, RedisError>) -> Void) {
        let now = testClock?() ?? wallClock()
        let periods = BudgetPeriods(micros: now)
        let limits = identity.limits
        let keys = keys(identity.id, periods: periods)
        let amount = SpendHold.amount(micros)
        let arguments = ["EVAL", RedisLimitScripts.hold, "4", keys[2], keys[3]] + holdsKeys(identity.id) + [
                         nowArgument, String(limits.dailyBudgetMicros ?? 0), String(limits.monthlyBudgetMicros ?? 0),
                         String(amount), holdID, String(Self.holdLifetimeMicros),
                         String(periods.day.endMicros - now), String(periods.month.endMicros - now)]
        evaluate(arguments, operation: "hold", parse: { Self.holdDecision($0, limits: limits, amount: amount) }, completion: completion)
    }

    func release(_ identity: KeyIdentity, held: Int64, holdID: String) {
        guard held > 0 else { return }
        sendRelease(PendingRelease(keys: holdsKeys(identity.id), member: "\(holdID) \(held)", amount: held))
    }

    /// Releases are idempotent (`RedisLimitScripts.release`), so any that failed, even one
    /// that may have been applied, waits to be sent again (at most `maxUnsent`; beyond that,
    /// its hold lapses by itself).
    private func sendRelease(_ pending: PendingRelease) {
        client.send(["EVAL", RedisLimitScripts.release, "2"] + pending.keys + [pending.member, String(pending.amount)]) { [weak self] result in
            guard let self, case .failure(let error) = result else { return }
            onError("release", error)
            guard maxUnsent > 0 else { return }
            if unreleased.count >= maxUnsent { unreleased.removeFirst() }
            unreleased.append(pending)
            onQueued?()
        }
    }

    /// The hold script's reply: seven integers, checked (a grant holds the `amount` asked, which
    /// names its member for the release; a refusal names a configured budget).
    static func holdDecision(_ reply: RedisValue, limits: KeyLimits, amount: Int64) -> HoldDecision? {
        guard let items = reply.array, items.count == 7 else { return nil }
        var numbers: [Int64] = []
        for item in items {
            guard let number = item.integer else { return nil }
            numbers.append(number)
        }
        switch numbers[0] {
        case 1:
            guard numbers[1] == amount else { return nil }
            return HoldDecision(held: numbers[1], refusal: nil)
        case 0:
            let kind: LimitDecision.Kind
            switch numbers[2] {
            case 1 where limits.dailyBudgetMicros == numbers[3]: kind = .dailyBudget
            case 2 where limits.monthlyBudgetMicros == numbers[3]: kind = .monthlyBudget
            default: return nil
            }
            guard numbers[4] >= 0, numbers[5] >= 0, numbers[6] >= 0 else { return nil }
            return HoldDecision(held: 0, refusal: .init(kind: kind, limit: numbers[3], spentMicros: numbers[4], heldMicros: numbers[5],
                                                        resetMicros: numbers[6]))
        default:
            return nil
        }
    }

    func settle(_ identity: KeyIdentity, settlement: LimitSettlement, usage: KeyUsage, release held: HeldSpend?) {
        let now = testClock?() ?? wallClock()
        let periods = BudgetPeriods(micros: now)
        // Spend counters outlive their period by an hour (a late settlement still lands).
        send(PendingSettlement(keys: keys(identity.id, periods: periods), marker: "\(keyPrefix){\(identity.id)}:settled:" + Self.settlementID(),
                               limits: identity.limits, now: nowArgument,
                               settlement: settlement, usage: usage,
                               daySeconds: (periods.day.endMicros - now) / 1_000_000 + 3_600,
                               monthSeconds: (periods.month.endMicros - now) / 1_000_000 + 3_600,
                               releases: held.map { [PendingRelease(keys: holdsKeys(identity.id), member: "\($0.holdID) \($0.micros)", amount: $0.micros)] } ?? []))
    }

    private func send(_ pending: PendingSettlement) {
        client.send(pending.command) { [weak self] result in
            guard let self else { return }
            guard case .failure(let error) = result else {
                // The spend is in, and its holds ended with it (the settle script ends them).
                // Redis answers again: send what still waits, a batch at a time.
                if !unsent.isEmpty || !unreleased.isEmpty { flushUnsent(batch: 256) }
                return
            }
            onError("settle", error)
            // Sent again when Redis answers: one refused for a passing state (`OOM`, review 22
            // F3), and one whose reply was lost (its marker keeps it from counting twice). Its
            // holds wait with it: ended now, neither would count the spend (review 43 state #3).
            // One Redis could not read (a protocol violation) is dropped, its holds ended.
            let unanswered: Bool = switch error {
            case .timeout, .connectionLost: true
            default: false
            }
            guard error.wasNotAppliedButMayBeRetried || unanswered, maxUnsent > 0 else {
                for release in pending.releases { sendRelease(release) }
                return
            }
            var waiting = pending
            waiting.mayHaveApplied = waiting.mayHaveApplied || unanswered
            // Added up only with one never applied (each keeps its own marker otherwise).
            if !waiting.mayHaveApplied, let index = unsent.firstIndex(where: { $0.keys == pending.keys && !$0.mayHaveApplied }) {
                unsent[index].add(waiting)
            } else {
                if unsent.count >= maxUnsent {
                    unsent.removeFirst()
                    onError("settle_dropped", error)
                }
                unsent.append(waiting)
            }
            onQueued?()
        }
    }

    /// Redis is back: send the settlements that waited (at most `batch` now; each success sends more).
    func flushUnsent(batch: Int = 1_024) {
        let waiting = unsent.prefix(batch)
        unsent.removeFirst(waiting.count)
        for pending in waiting { send(pending) }
        let releases = unreleased.prefix(batch)
        unreleased.removeFirst(releases.count)
        for pending in releases { sendRelease(pending) }
    }

    /// The admission script's reply, checked field by field: `{allowed, now}` then six integers
    /// per dimension. Anything else (a type, a count, a negative limit) is refused.
    static func decision(_ reply: RedisValue, limits: KeyLimits) -> LimitDecision? {
        guard let items = reply.array, items.count == 2 + 4 * 6 else { return nil }
        var numbers: [Int64] = []
        for item in items {
            guard let number = item.integer else { return nil }
            numbers.append(number)
        }
        guard numbers[0] == 0 || numbers[0] == 1 else { return nil }
        var dimensions: [LimitDecision.Dimension] = []
        let kinds: [(LimitDecision.Kind, Int64?)] = [(.requests, limits.requestsPerMinute), (.tokens, limits.tokensPerMinute),
                                                      (.dailyBudget, limits.dailyBudgetMicros), (.monthlyBudget, limits.monthlyBudgetMicros)]
        for (index, (kind, configured)) in kinds.enumerated() {
            let field = Array(numbers[(2 + index * 6)..<(8 + index * 6)])
            let present = field[0] == 1
            guard present == (configured != nil) else { return nil }
            guard present else { continue }
            guard field[1] == configured, field[2] >= 0, field[3] >= 0, field[4] == 0 || field[4] == 1, field[5] >= 0 else { return nil }
            dimensions.append(.init(kind: kind, limit: field[1], remaining: min(field[2], field[1]), resetMicros: field[3],
                                    exceeded: field[4] == 1, retryAfterMicros: field[5]))
        }
        let decision = LimitDecision(dimensions: dimensions)
        guard decision.allowed == (numbers[0] == 1) else { return nil }
        return decision
    }
}

/// A hold's release on its way to Redis: the key's holds and their total, the hold's member.
struct PendingRelease: Equatable {
    let keys: [String]
    let member: String
    let amount: Int64
}

/// A settlement on its way to Redis: what the settle script adds to one key's counters in one
/// day and month. Two for the same key and period add up to one (saturating).
struct PendingSettlement: Equatable {
    /// The script's keys: the key's buckets, its day's and month's spend, its usage.
    let keys: [String]
    /// The key Redis sets when it applies this settlement (its id): sent again, it counts once.
    /// Settlements added up keep the first's: none of them was applied.
    let marker: String
    let limits: KeyLimits
    /// A test's clock, or "" (Redis' own `TIME`).
    let now: String
    var settlement: LimitSettlement
    var usage: KeyUsage
    var daySeconds: Int64
    var monthSeconds: Int64
    /// Holds to end as this lands (all of this key's, so all with the same keys).
    var releases: [PendingRelease] = []
    /// Sent, and its reply lost: it may have been applied, so it is sent again as it is (its
    /// marker, the last key, keeps it from counting twice) and never added to another.
    var mayHaveApplied = false
    /// How long a settlement's marker lives: a settlement whose reply was lost is sent again
    /// within seconds of Redis answering again; a stall longer than this could count one twice.
    /// (One key per request for this long: ~100 bytes each, 3 MB at 100 requests a second.)
    static let markerSeconds = 300

    mutating func add(_ other: PendingSettlement) {
        // At most 1,024 holds wait with one key's settlement; older ones lapse by themselves.
        releases = Array((releases + other.releases).suffix(1_024))
        func sum(_ a: Int64, _ b: Int64) -> Int64 { let (total, overflow) = a.addingReportingOverflow(b); return overflow ? (a < 0 ? .min : .max) : total }
        settlement.extraRequests = sum(settlement.extraRequests, other.settlement.extraRequests)
        settlement.tokenDelta = sum(settlement.tokenDelta, other.settlement.tokenDelta)
        settlement.spendMicros = sum(max(0, settlement.spendMicros), max(0, other.settlement.spendMicros))
        usage.requests = sum(usage.requests, other.usage.requests)
        usage.promptTokens = sum(usage.promptTokens, other.usage.promptTokens)
        usage.completionTokens = sum(usage.completionTokens, other.usage.completionTokens)
        usage.costMicros = sum(usage.costMicros, other.usage.costMicros)
        daySeconds = max(daySeconds, other.daySeconds)
        monthSeconds = max(monthSeconds, other.monthSeconds)
    }

    var command: [[UInt8]] {
        // The holds end in the script, with the spend (all of one key's: they share its keys).
        let holds = releases.first?.keys ?? []
        return (["EVAL", RedisLimitScripts.settle, String(keys.count + 1 + holds.count)] + keys + [marker] + holds + [
            now, String(limits.requestsPerMinute ?? 0), String(limits.tokensPerMinute ?? 0),
            // Spend at most 2^40 µ$, beyond any budget (`KeyLimits.maxValue`): the script's Lua
            // prints a number of 10^14 or more in exponent form, which `INCRBY` refuses.
            String(settlement.extraRequests), String(settlement.tokenDelta), String(min(max(0, settlement.spendMicros), KeyLimits.maxValue)),
            String(daySeconds), String(monthSeconds),
            String(usage.requests), String(usage.promptTokens), String(usage.completionTokens),
            String(Self.markerSeconds),
        ] + releases.flatMap { [$0.member, String($0.amount)] }).map { Array($0.utf8) }
    }
}
