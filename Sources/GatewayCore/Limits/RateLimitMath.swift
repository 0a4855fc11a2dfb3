/// The arithmetic of per-key limits, without clocks or sockets: the in-process limiter runs it
/// directly, and the Redis limiter's Lua script (`RedisLimitScripts`) runs the same formulas in
/// the same order of double operations (tests hold the two to the same decisions).
///
/// Rates (requests and tokens per minute) are token buckets: a bucket holds up to `limit`
/// units, refills continuously at `limit` per minute, and a request takes its cost from it. A
/// full bucket lets `limit` units through at once, then refills smoothly, so there is no window
/// edge where twice the limit gets through. Settling after a response may take the level below
/// zero (a debt the refill pays back). State per bucket: its level and when it was computed.
/// Budgets are plain spend counters per UTC day and month.
///
/// Times are microseconds since the epoch (exact in a double until the year 2255).
public enum RateLimitMath {
    public static let periodMicros: Double = 60_000_000

    public struct Bucket: Sendable, Equatable {
        public var level: Double
        public var updatedMicros: Int64
        public init(level: Double, updatedMicros: Int64) {
            self.level = level
            self.updatedMicros = updatedMicros
        }
    }

    /// The deepest a bucket's debt goes: a day of its refill. What settles comes from upstreams
    /// (hostile counts, each at most 2^40 tokens); unbounded, their sum made waits past what an
    /// Int64 holds (a trap in the 429's arithmetic) and levels Redis could not return (review 43
    /// state #4).
    public static func deepestLevel(limit: Int64) -> Double { -Double(limit) * 1440 }

    /// The largest wait or reset reported, in µs (2^53, exact in a double: ~285 years), so that
    /// Redis' integer replies and ours agree whatever the arithmetic gave.
    public static let maxReportedMicros: Int64 = 1 << 53

    /// The level of `bucket` at `now` (a bucket never seen is full).
    public static func level(_ bucket: Bucket?, now: Int64, limit: Int64) -> Double {
        guard let bucket else { return Double(limit) }
        let elapsed = Double(max(0, now.subtractingSaturating(bucket.updatedMicros)))
        return max(deepestLevel(limit: limit), min(Double(limit), bucket.level + elapsed * Double(limit) / periodMicros))
    }

    public struct RateOutcome: Sendable, Equatable {
        public var allowed: Bool
        /// The bucket after this request (taken from only when allowed).
        public var bucket: Bucket
        /// Whole units still available right after this request.
        public var remaining: Int64
        /// Until the bucket is full again.
        public var resetMicros: Int64
        /// Until this request would fit (0 when allowed).
        public var retryAfterMicros: Int64
    }

    /// Decides whether `cost` units fit.
    public static func rate(_ bucket: Bucket?, now: Int64, cost: Int64, limit: Int64) -> RateOutcome {
        var level = level(bucket, now: now, limit: limit)
        let allowed = level >= Double(cost)
        if allowed { level -= Double(cost) }
        let perUnit = periodMicros / Double(limit)
        return RateOutcome(
            allowed: allowed, bucket: Bucket(level: level, updatedMicros: now),
            remaining: clamp((max(0, level)).rounded(.down)),
            resetMicros: clamp(((Double(limit) - level) * perUnit).rounded(.up)),
            retryAfterMicros: allowed ? 0 : clamp(((Double(cost) - level) * perUnit).rounded(.up)))
    }

    /// Takes `delta` more units after the fact (settling an estimate; negative gives back).
    public static func adjust(_ bucket: Bucket?, now: Int64, delta: Int64, limit: Int64) -> Bucket {
        Bucket(level: max(deepestLevel(limit: limit), level(bucket, now: now, limit: limit) - Double(delta)), updatedMicros: now)
    }

    /// A double (already rounded) as an integer within ±`maxReportedMicros`; NaN is 0.
    static func clamp(_ value: Double) -> Int64 {
        guard !value.isNaN else { return 0 }
        let bound = Double(maxReportedMicros)
        return Int64(min(bound, max(-bound, value)))
    }

    public struct BudgetOutcome: Sendable, Equatable {
        public var exceeded: Bool
        public var remainingMicros: Int64
        public var resetMicros: Int64
    }

    /// A budget refuses once `spent` has reached `limit` (a request's cost is known only after it
    /// ran, so the last admitted request may overshoot it).
    public static func budget(spent: Int64, limit: Int64, resetMicros: Int64) -> BudgetOutcome {
        BudgetOutcome(exceeded: spent >= limit, remainingMicros: max(0, limit.subtractingSaturating(spent)), resetMicros: max(0, resetMicros))
    }
}

/// The state of one key's limits, as the in-process limiter keeps it.
public struct LimitState: Sendable, Equatable {
    public var requests: RateLimitMath.Bucket?
    public var tokens: RateLimitMath.Bucket?
    public var day = BudgetPeriods.Period(id: "", endMicros: 0)
    public var daySpentMicros: Int64 = 0
    public var month = BudgetPeriods.Period(id: "", endMicros: 0)
    public var monthSpentMicros: Int64 = 0
    /// Spend held by requests in flight (`RateLimitMath.hold`): counted against both budgets
    /// until each request settles; not per period (a request may end in the next one).
    public var heldMicros: Int64 = 0
    public init() {}
}

extension RateLimitMath {
    /// One admission over every limit a key has, all or nothing: if any dimension refuses, the
    /// state is unchanged.
    public static func admit(_ limits: KeyLimits, state: inout LimitState, now: Int64, periods: BudgetPeriods,
                             reservation: LimitReservation) -> LimitDecision {
        var dimensions: [LimitDecision.Dimension] = []
        var requestOutcome: RateOutcome?
        var tokenOutcome: RateOutcome?
        if let limit = limits.requestsPerMinute {
            let outcome = rate(state.requests, now: now, cost: reservation.requests, limit: limit)
            requestOutcome = outcome
            dimensions.append(.init(kind: .requests, limit: limit, remaining: outcome.remaining, resetMicros: outcome.resetMicros,
                                    exceeded: !outcome.allowed, retryAfterMicros: outcome.retryAfterMicros))
        }
        if let limit = limits.tokensPerMinute {
            let outcome = rate(state.tokens, now: now, cost: reservation.tokens, limit: limit)
            tokenOutcome = outcome
            dimensions.append(.init(kind: .tokens, limit: limit, remaining: outcome.remaining, resetMicros: outcome.resetMicros,
                                    exceeded: !outcome.allowed, retryAfterMicros: outcome.retryAfterMicros))
        }
        state.rollOver(periods)
        if let limit = limits.dailyBudgetMicros {
            let outcome = budget(spent: state.daySpentMicros, limit: limit, resetMicros: periods.day.endMicros.subtractingSaturating(now))
            dimensions.append(.init(kind: .dailyBudget, limit: limit, remaining: outcome.remainingMicros, resetMicros: outcome.resetMicros,
                                    exceeded: outcome.exceeded, retryAfterMicros: outcome.exceeded ? outcome.resetMicros : 0))
        }
        if let limit = limits.monthlyBudgetMicros {
            let outcome = budget(spent: state.monthSpentMicros, limit: limit, resetMicros: periods.month.endMicros.subtractingSaturating(now))
            dimensions.append(.init(kind: .monthlyBudget, limit: limit, remaining: outcome.remainingMicros, resetMicros: outcome.resetMicros,
                                    exceeded: outcome.exceeded, retryAfterMicros: outcome.exceeded ? outcome.resetMicros : 0))
        }
        let decision = LimitDecision(dimensions: dimensions)
        if decision.allowed {
            if let requestOutcome { state.requests = requestOutcome.bucket }
            if let tokenOutcome { state.tokens = tokenOutcome.bucket }
        }
        return decision
    }

    /// Settles a finished request: its extra requests and token difference move the buckets,
    /// its spend is added to the day and the month.
    public static func settle(_ limits: KeyLimits, state: inout LimitState, now: Int64, periods: BudgetPeriods,
                              settlement: LimitSettlement) {
        if let limit = limits.requestsPerMinute, settlement.extraRequests != 0 {
            state.requests = adjust(state.requests, now: now, delta: settlement.extraRequests, limit: limit)
        }
        if let limit = limits.tokensPerMinute, settlement.tokenDelta != 0 {
            state.tokens = adjust(state.tokens, now: now, delta: settlement.tokenDelta, limit: limit)
        }
        state.rollOver(periods)
        state.daySpentMicros = state.daySpentMicros.addingSaturating(max(0, settlement.spendMicros))
        state.monthSpentMicros = state.monthSpentMicros.addingSaturating(max(0, settlement.spendMicros))
    }
}

extension RateLimitMath {
    /// Holds `micros` (at least 1) against a key's budgets for a request about to run: what it
    /// may cost at most. Refused when the spend so far, the holds of requests in flight and this
    /// one would pass a budget, so requests running at once cannot together overshoot it by more
    /// than what their holds leave out (retries, tool loops). A key without budgets holds nothing.
    public static func hold(_ limits: KeyLimits, state: inout LimitState, now: Int64, periods: BudgetPeriods,
                            micros: Int64) -> HoldDecision {
        guard limits.dailyBudgetMicros != nil || limits.monthlyBudgetMicros != nil else { return HoldDecision(held: 0, refusal: nil) }
        state.rollOver(periods)
        let amount = SpendHold.amount(micros)
        var refusals: [HoldDecision.Refusal] = []
        for (kind, limit, spent, end) in [(LimitDecision.Kind.monthlyBudget, limits.monthlyBudgetMicros, state.monthSpentMicros, periods.month.endMicros),
                                          (.dailyBudget, limits.dailyBudgetMicros, state.daySpentMicros, periods.day.endMicros)] {
            guard let limit else { continue }
            if spent.addingSaturating(state.heldMicros).addingSaturating(amount) > limit {
                refusals.append(.init(kind: kind, limit: limit, spentMicros: spent, heldMicros: state.heldMicros,
                                      resetMicros: max(0, end.subtractingSaturating(now))))
            }
        }
        // Reported: a budget the request would not fit with nothing in flight (retrying soon
        // cannot help), else the other; the month before the day (its wait is the longer one).
        let refusal = refusals.first { $0.spentMicros.addingSaturating(amount) > $0.limit } ?? refusals.first
        if let refusal { return HoldDecision(held: 0, refusal: refusal) }
        state.heldMicros = state.heldMicros.addingSaturating(amount)
        return HoldDecision(held: amount, refusal: nil)
    }

    /// Ends a hold (its request settled, or never started).
    public static func release(state: inout LimitState, held: Int64) {
        state.heldMicros = max(0, state.heldMicros.subtractingSaturating(max(0, held)))
    }
}

/// The decision on a spend hold.
public struct HoldDecision: Sendable, Equatable {
    public struct Refusal: Sendable, Equatable {
        public var kind: LimitDecision.Kind
        public var limit: Int64
        public var spentMicros: Int64
        public var heldMicros: Int64
        /// Until the budget's period ends.
        public var resetMicros: Int64
        public init(kind: LimitDecision.Kind, limit: Int64, spentMicros: Int64, heldMicros: Int64, resetMicros: Int64) {
            self.kind = kind
            self.limit = limit
            self.spentMicros = spentMicros
            self.heldMicros = heldMicros
            self.resetMicros = resetMicros
        }
    }

    /// What was held (0 when refused, or the key has no budget): the amount to release.
    public var held: Int64
    public var refusal: Refusal?
    public init(held: Int64, refusal: Refusal?) {
        self.held = held
        self.refusal = refusal
    }

    public var allowed: Bool { refusal == nil }
}

/// How much a request holds: its bound in micro-dollars, at least 1 and at most
/// `KeyLimits.maxValue` + 1 (more than any budget, so never granted; exact in Lua's doubles).
public enum SpendHold {
    public static func amount(_ micros: Int64) -> Int64 { min(max(1, micros), KeyLimits.maxValue + 1) }
}

extension LimitState {
    /// A new day or month starts its spend at zero.
    mutating func rollOver(_ periods: BudgetPeriods) {
        if day.id != periods.day.id {
            day = periods.day
            daySpentMicros = 0
        }
        if month.id != periods.month.id {
            month = periods.month
            monthSpentMicros = 0
        }
    }
}

/// The decision on one request over every limit its key has.
public struct LimitDecision: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case requests, tokens
        case dailyBudget = "budget-day"
        case monthlyBudget = "budget-month"
    }

    public struct Dimension: Sendable, Equatable {
        public var kind: Kind
        public var limit: Int64
        public var remaining: Int64
        public var resetMicros: Int64
        public var exceeded: Bool
        public var retryAfterMicros: Int64
        public init(kind: Kind, limit: Int64, remaining: Int64, resetMicros: Int64, exceeded: Bool, retryAfterMicros: Int64) {
            self.kind = kind
            self.limit = limit
            self.remaining = remaining
            self.resetMicros = resetMicros
            self.exceeded = exceeded
            self.retryAfterMicros = retryAfterMicros
        }
    }

    public var dimensions: [Dimension]
    public init(dimensions: [Dimension]) { self.dimensions = dimensions }

    public var allowed: Bool { !dimensions.contains(where: \.exceeded) }
    /// Until every exceeded dimension would let the request through.
    public var retryAfterMicros: Int64 { dimensions.filter(\.exceeded).map(\.retryAfterMicros).max() ?? 0 }
}

extension Int64 {
    public func addingSaturating(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    func subtractingSaturating(_ other: Int64) -> Int64 {
        let (difference, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other < 0 ? .max : .min) : difference
    }
}
