import EventLoop
import Foundation
import GatewayCore
import RedisClient

/// What one finished request used, added to its key's usage counters.
struct KeyUsage: Sendable, Equatable {
    var requests: Int64 = 0
    var promptTokens: Int64 = 0
    var completionTokens: Int64 = 0
    var costMicros: Int64 = 0
}

/// Per-key limits and usage counters, as one loop sees them: in this process, or in Redis
/// (shared by every replica). Used on its loop only; neither call ever blocks it.
protocol KeyLimiter: AnyObject {
    /// Decides on a request against `identity`'s limits, reserving `reservation` when it is let
    /// through; `completion` runs on the loop (possibly before `admit` returns). A failure means
    /// the decision could not be made (the store's error policy applies).
    func admit(_ identity: KeyIdentity, reservation: LimitReservation, completion: @escaping (Result<LimitDecision, RedisError>) -> Void)
    /// Settles a finished request: moves the buckets by what it really used, adds its spend and
    /// usage, then ends its hold (`release`, if it had one) once the spend has landed: a hold
    /// ended while its settlement waits would count the spend nowhere (review 43 state #3). In
    /// the background.
    func settle(_ identity: KeyIdentity, settlement: LimitSettlement, usage: KeyUsage, release: HeldSpend?)
    /// Holds `micros` against the key's budgets for a request about to run, once its models and
    /// output limits are known (`RateLimitMath.hold`); `completion` runs on the loop. `holdID`
    /// (the request's generation id) names the hold for its release.
    func hold(_ identity: KeyIdentity, micros: Int64, holdID: String, completion: @escaping (Result<HoldDecision, RedisError>) -> Void)
    /// Ends a hold, when its request settles or never starts. In the background: in Redis, a
    /// hold never released (its replica died, Redis was unreachable) lapses by itself after
    /// `RedisKeyLimiter.holdLifetimeMicros`.
    func release(_ identity: KeyIdentity, held: Int64, holdID: String)
}

/// A spend hold, as its release names it.
struct HeldSpend: Equatable {
    var micros: Int64
    var holdID: String
}

extension KeyLimiter {
    func settle(_ identity: KeyIdentity, settlement: LimitSettlement, usage: KeyUsage) {
        settle(identity, settlement: settlement, usage: usage, release: nil)
    }
}

/// The wall clock in microseconds, for limits kept in process and budget periods.
enum LimitClock {
    static func nowMicros() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1_000_000 + Int64(spec.tv_nsec) / 1_000
    }
}

/// Limits and usage in this process: one replica. Shared by every loop (one lock, held for the
/// arithmetic only).
final class InProcessKeyLimiter: KeyLimiter, Sendable {
    private struct State {
        var limits: [String: LimitState] = [:]
        var usage: [String: KeyUsage] = [:]
    }

    private let state = Lock(State())
    private let clock: @Sendable () -> Int64

    init(clock: @escaping @Sendable () -> Int64 = LimitClock.nowMicros) { self.clock = clock }

    func admit(_ identity: KeyIdentity, reservation: LimitReservation, completion: @escaping (Result<LimitDecision, RedisError>) -> Void) {
        let now = clock()
        let decision = state.withLock { state in
            RateLimitMath.admit(identity.limits, state: &state.limits[identity.id, default: LimitState()], now: now,
                                periods: BudgetPeriods(micros: now), reservation: reservation)
        }
        completion(.success(decision))
    }

    func settle(_ identity: KeyIdentity, settlement: LimitSettlement, usage: KeyUsage, release held: HeldSpend?) {
        defer { if let held { release(identity, held: held.micros, holdID: held.holdID) } }
        let now = clock()
        state.withLock { state in
            if !identity.limits.isEmpty {
                RateLimitMath.settle(identity.limits, state: &state.limits[identity.id, default: LimitState()], now: now,
                                     periods: BudgetPeriods(micros: now), settlement: settlement)
            }
            var total = state.usage[identity.id, default: KeyUsage()]
            total.add(usage)
            state.usage[identity.id] = total
        }
    }

    func hold(_ identity: KeyIdentity, micros: Int64, holdID: String, completion: @escaping (Result<HoldDecision, RedisError>) -> Void) {
        let now = clock()
        let decision = state.withLock { state in
            RateLimitMath.hold(identity.limits, state: &state.limits[identity.id, default: LimitState()], now: now,
                               periods: BudgetPeriods(micros: now), micros: micros)
        }
        completion(.success(decision))
    }

    func release(_ identity: KeyIdentity, held: Int64, holdID: String) {
        state.withLock { state in
            if state.limits[identity.id] != nil { RateLimitMath.release(state: &state.limits[identity.id]!, held: held) }
        }
    }

    /// A key's usage so far (tests).
    func usage(of id: String) -> KeyUsage { state.withLock { $0.usage[id] ?? KeyUsage() } }
}

extension KeyUsage {
    mutating func add(_ other: KeyUsage) {
        requests = requests.addingReportingOverflow(other.requests).overflow ? .max : requests + other.requests
        promptTokens = promptTokens.addingReportingOverflow(other.promptTokens).overflow ? .max : promptTokens + other.promptTokens
        completionTokens = completionTokens.addingReportingOverflow(other.completionTokens).overflow ? .max : completionTokens + other.completionTokens
        costMicros = costMicros.addingReportingOverflow(other.costMicros).overflow ? .max : costMicros + other.costMicros
    }
}
