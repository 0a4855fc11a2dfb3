import GatewayCore
import PropertyBased
import Testing

/// The limit arithmetic without clocks or sockets: buckets, budgets, periods, and how decisions
/// show on the wire.
@Suite struct RateLimitMathTests {
    static let t0: Int64 = 1_764_547_200_000_000  // 2025-12-01T00:00:00Z

    @Test func aFullBucketTakesTheLimitAtOnceThenRefusesWithTheWait() {
        var bucket: RateLimitMath.Bucket?
        for index in 0..<7 {
            let outcome = RateLimitMath.rate(bucket, now: Self.t0, cost: 1, limit: 7)
            #expect(outcome.allowed, "request \(index + 1) of 7")
            #expect(outcome.remaining == Int64(6 - index))
            bucket = outcome.bucket
        }
        let refused = RateLimitMath.rate(bucket, now: Self.t0, cost: 1, limit: 7)
        #expect(!refused.allowed)
        #expect(refused.remaining == 0)
        #expect(refused.retryAfterMicros == 8_571_429, "one seventh of a minute, rounded up")
        #expect(refused.resetMicros == 60_000_000)
        // It refills smoothly: one request's worth after 60/7 s, not a whole window.
        #expect(!RateLimitMath.rate(bucket, now: Self.t0 + 8_571_000, cost: 1, limit: 7).allowed)
        #expect(RateLimitMath.rate(bucket, now: Self.t0 + 8_571_429, cost: 1, limit: 7).allowed)
        #expect(RateLimitMath.rate(bucket, now: Self.t0 + 60_000_000, cost: 7, limit: 7).allowed)
    }

    @Test func noWindowEdgeLetsTwiceTheLimitThrough() {
        // However requests are spread, no minute-long span lets more than the limit plus what
        // refilled during it through.
        var bucket: RateLimitMath.Bucket?
        var allowedAt: [Int64] = []
        var now = Self.t0
        for _ in 0..<2_000 {
            let outcome = RateLimitMath.rate(bucket, now: now, cost: 1, limit: 10)
            if outcome.allowed {
                bucket = outcome.bucket
                allowedAt.append(now)
            }
            now += 97_000  // ~0.1 s apart, for ~3 minutes
        }
        for start in allowedAt {
            let inMinute = allowedAt.filter { $0 >= start && $0 < start + 60_000_000 }.count
            #expect(inMinute <= 20, "at most a full bucket plus one minute of refill")
        }
        #expect(allowedAt.count >= 30 && allowedAt.count <= 42, "about 10 a minute plus the first full bucket: \(allowedAt.count)")
    }

    @Test func settlingMovesTheBucketBothWays() {
        let start = RateLimitMath.rate(nil, now: Self.t0, cost: 500, limit: 1_000).bucket
        // The response used 900 tokens, not 500: 400 more are taken (into debt if need be).
        let taken = RateLimitMath.adjust(start, now: Self.t0, delta: 400, limit: 1_000)
        #expect(taken.level == 100)
        let debt = RateLimitMath.adjust(taken, now: Self.t0, delta: 300, limit: 1_000)
        #expect(debt.level == -200)
        let refused = RateLimitMath.rate(debt, now: Self.t0, cost: 1, limit: 1_000)
        #expect(!refused.allowed)
        #expect(refused.retryAfterMicros == 12_060_000, "201 tokens at 1000 a minute")
        // Giving back restores capacity, never beyond the limit.
        let back = RateLimitMath.adjust(debt, now: Self.t0, delta: -5_000, limit: 1_000)
        #expect(RateLimitMath.level(back, now: Self.t0 + 1, limit: 1_000) == 1_000)
    }

    /// Settled usage is an upstream's word (each count at most 2^40): however much of it piles
    /// up, the bucket's debt stops at a day of refill and every refusal's 429 is computed, its
    /// waits bounded (review 43 state #4: a debt of 1e15 tokens made the wait Int64.max, and the
    /// 429's rounding trapped).
    @Test func hostileUsageLeavesABoundedDebtAndAComputable429() async {
        await propertyCheck(count: 300, input: Gen.int(in: 1...1_000_000), Gen.int(in: 0...(1 << 40)).array(of: 1...40),
                            Gen.int(in: 1...(1 << 40))) { limit, settlements, cost in
            let limits = KeyLimits(requestsPerMinute: Int64(limit), tokensPerMinute: Int64(limit))
            let periods = BudgetPeriods(micros: Self.t0)
            var state = LimitState()
            for tokens in settlements {
                RateLimitMath.settle(limits, state: &state, now: Self.t0, periods: periods,
                                     settlement: .init(extraRequests: Int64(tokens), tokenDelta: Int64(tokens), spendMicros: 0))
            }
            #expect(RateLimitMath.level(state.tokens, now: Self.t0, limit: Int64(limit)) >= RateLimitMath.deepestLevel(limit: Int64(limit)))
            let decision = RateLimitMath.admit(limits, state: &state, now: Self.t0, periods: periods,
                                               reservation: .init(requests: Int64(cost), tokens: Int64(cost)))
            guard !decision.allowed else { return }
            let error = RateLimitResponse.error(decision, keyName: "k")
            #expect(error.status == 429)
            let retry = error.headers.first { $0.0 == "Retry-After" }.flatMap { Int64($0.1) }
            #expect(retry.map { $0 >= 1 && $0 <= RateLimitMath.maxReportedMicros / 1_000_000 + 1 } == true, "\(error.headers)")
        }
        // The worst case, by hand: a day of debt and a cost of 2^40 at a limit of one a minute.
        var bucket = RateLimitMath.adjust(nil, now: Self.t0, delta: 1 << 62, limit: 1)
        #expect(bucket.level == -1_440)
        bucket = RateLimitMath.adjust(bucket, now: Self.t0, delta: 1 << 40, limit: 1)
        #expect(bucket.level == -1_440)
        let refused = RateLimitMath.rate(bucket, now: Self.t0, cost: 1 << 40, limit: 1)
        #expect(!refused.allowed && refused.retryAfterMicros == RateLimitMath.maxReportedMicros && refused.resetMicros == 1_441 * 60_000_000)
    }

    @Test func budgetsRefuseOnceSpentAndResetWithTheirPeriod() {
        #expect(!RateLimitMath.budget(spent: 4_999_999, limit: 5_000_000, resetMicros: 10).exceeded)
        let spent = RateLimitMath.budget(spent: 5_000_001, limit: 5_000_000, resetMicros: 10)
        #expect(spent.exceeded && spent.remainingMicros == 0 && spent.resetMicros == 10)

        let limits = KeyLimits(dailyBudgetMicros: 1_000_000)
        var state = LimitState()
        let day1 = BudgetPeriods(micros: Self.t0 + 3_600_000_000)
        #expect(RateLimitMath.admit(limits, state: &state, now: Self.t0, periods: day1, reservation: .init(requests: 1, tokens: 1)).allowed)
        RateLimitMath.settle(limits, state: &state, now: Self.t0, periods: day1, settlement: .init(extraRequests: 0, tokenDelta: 0, spendMicros: 1_200_000))
        let refused = RateLimitMath.admit(limits, state: &state, now: Self.t0, periods: day1, reservation: .init(requests: 1, tokens: 1))
        #expect(!refused.allowed)
        #expect(refused.dimensions.first?.kind == .dailyBudget)
        let day2 = BudgetPeriods(micros: Self.t0 + 86_400_000_000)
        #expect(RateLimitMath.admit(limits, state: &state, now: Self.t0 + 86_400_000_000, periods: day2, reservation: .init(requests: 1, tokens: 1)).allowed)
    }

    @Test func aHoldCountsWhatRequestsInFlightMaySpend() {
        let limits = KeyLimits(dailyBudgetMicros: 200)
        var state = LimitState()
        let periods = BudgetPeriods(micros: Self.t0)
        // Two fit, the third would pass the budget while they run.
        #expect(RateLimitMath.hold(limits, state: &state, now: Self.t0, periods: periods, micros: 67) == HoldDecision(held: 67, refusal: nil))
        #expect(RateLimitMath.hold(limits, state: &state, now: Self.t0, periods: periods, micros: 67).allowed)
        let refused = RateLimitMath.hold(limits, state: &state, now: Self.t0, periods: periods, micros: 67)
        #expect(refused.held == 0 && state.heldMicros == 134, "a refusal holds nothing")
        #expect(refused.refusal == .init(kind: .dailyBudget, limit: 200, spentMicros: 0, heldMicros: 134,
                                         resetMicros: periods.day.endMicros - Self.t0))
        // One settles, spending less than it held: its hold ends, its spend counts.
        RateLimitMath.release(state: &state, held: 67)
        RateLimitMath.settle(limits, state: &state, now: Self.t0, periods: periods, settlement: .init(extraRequests: 0, tokenDelta: 0, spendMicros: 20))
        #expect(state.heldMicros == 67 && state.daySpentMicros == 20)
        #expect(RateLimitMath.hold(limits, state: &state, now: Self.t0, periods: periods, micros: 113).allowed, "20 + 67 + 113 = 200")
        #expect(!RateLimitMath.hold(limits, state: &state, now: Self.t0, periods: periods, micros: 0).allowed, "the budget is fully held: even a 0 holds 1")
        // Releasing more than is held never goes below zero.
        RateLimitMath.release(state: &state, held: .max)
        #expect(state.heldMicros == 0)
        // Holds outlive a period's end (their requests settle into the new one); the spend resets.
        let tomorrow = BudgetPeriods(micros: Self.t0 + 86_400_000_000)
        #expect(RateLimitMath.hold(limits, state: &state, now: Self.t0, periods: periods, micros: 150).allowed)
        #expect(RateLimitMath.hold(limits, state: &state, now: Self.t0 + 86_400_000_000, periods: tomorrow, micros: 50).allowed)
        #expect(state.daySpentMicros == 0 && state.heldMicros == 200)
        #expect(!RateLimitMath.hold(limits, state: &state, now: Self.t0 + 86_400_000_000, periods: tomorrow, micros: 1).allowed)
    }

    @Test func aHoldNamesTheMonthWhenBothBudgetsRefuseAndAKeyWithoutBudgetsHoldsNothing() {
        var state = LimitState()
        let periods = BudgetPeriods(micros: Self.t0)
        let both = KeyLimits(dailyBudgetMicros: 100, monthlyBudgetMicros: 150)
        #expect(RateLimitMath.hold(both, state: &state, now: Self.t0, periods: periods, micros: 90).allowed)
        #expect(RateLimitMath.hold(both, state: &state, now: Self.t0, periods: periods, micros: 70).refusal?.kind == .monthlyBudget)
        #expect(RateLimitMath.hold(both, state: &state, now: Self.t0, periods: periods, micros: 20).refusal?.kind == .dailyBudget)
        // Both refuse: the one it would not fit with nothing in flight is reported (retrying soon
        // cannot help there), though the month comes first otherwise.
        var spentDay = LimitState()
        RateLimitMath.settle(both, state: &spentDay, now: Self.t0, periods: periods, settlement: .init(extraRequests: 0, tokenDelta: 0, spendMicros: 60))
        spentDay.monthSpentMicros += 40  // spent on earlier days
        #expect(RateLimitMath.hold(both, state: &spentDay, now: Self.t0, periods: periods, micros: 30).allowed)
        #expect(RateLimitMath.hold(both, state: &spentDay, now: Self.t0, periods: periods, micros: 45).refusal?.kind == .dailyBudget,
                "month: 100 + 30 + 45 > 150 only with the hold in flight; day: 60 + 45 > 100 however long it waits")
        var untouched = LimitState()
        #expect(RateLimitMath.hold(KeyLimits(requestsPerMinute: 5), state: &untouched, now: Self.t0, periods: periods, micros: .max)
                == HoldDecision(held: 0, refusal: nil))
        #expect(untouched == LimitState())
        // Hostile amounts saturate: a hold beyond any budget is refused, never trapping.
        var hostile = LimitState()
        hostile.daySpentMicros = .max
        hostile.heldMicros = .max
        #expect(!RateLimitMath.hold(KeyLimits(dailyBudgetMicros: KeyLimits.maxValue), state: &hostile, now: .max, periods: periods, micros: .max).allowed)
        #expect(SpendHold.amount(.min) == 1 && SpendHold.amount(.max) == KeyLimits.maxValue + 1)
    }

    /// However holds, releases and settlements interleave, what is held and spent never passes
    /// the budget by more than the spend its requests reported beyond their holds.
    @Test func holdsNeverLetTheBudgetBeOvershotByRequestsInFlight() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let limit = Int64.random(in: 1...10_000, using: &generator)
            let limits = KeyLimits(dailyBudgetMicros: limit)
            var state = LimitState()
            let periods = BudgetPeriods(micros: Self.t0)
            var inFlight: [Int64] = []
            for _ in 0..<100 {
                if Bool.random(using: &generator) || inFlight.isEmpty {
                    let decision = RateLimitMath.hold(limits, state: &state, now: Self.t0, periods: periods,
                                                      micros: Int64.random(in: -5...3_000, using: &generator))
                    if decision.allowed { inFlight.append(decision.held) }
                } else {
                    // A request ends, spending at most what it held.
                    let held = inFlight.remove(at: Int.random(in: 0..<inFlight.count, using: &generator))
                    RateLimitMath.release(state: &state, held: held)
                    RateLimitMath.settle(limits, state: &state, now: Self.t0, periods: periods,
                                         settlement: .init(extraRequests: 0, tokenDelta: 0, spendMicros: Int64.random(in: 0...held, using: &generator)))
                }
                #expect(state.heldMicros == inFlight.reduce(0, +))
                #expect(state.daySpentMicros + state.heldMicros <= limit, "limit \(limit)")
            }
        }
    }

    @Test func aRefusedHoldSaysWhatItMayCostAndWhetherRetryingHelps() {
        let busy = HoldDecision.Refusal(kind: .dailyBudget, limit: 2_000_000, spentMicros: 500_000, heldMicros: 1_200_000, resetMicros: 3_600_000_000)
        let wait = RateLimitResponse.holdRefused(busy, hold: 400_000, keyName: "team")
        #expect(wait.status == 429 && wait.code == "insufficient_quota")
        #expect(wait.message.contains("$0.4") && wait.message.contains("daily budget of $2") && wait.message.contains("$1.5")
                && wait.message.contains("$1.2 of it held by requests in flight"), "\(wait.message)")
        #expect(wait.headers.contains { $0 == ("Retry-After", "1") } && !wait.headers.contains { $0.0 == "x-should-retry" })
        #expect(wait.headers.contains { $0 == ("x-ratelimit-remaining-budget-day", "0.3") })
        let never = RateLimitResponse.holdRefused(.init(kind: .monthlyBudget, limit: 2_000_000, spentMicros: 500_000, heldMicros: 0, resetMicros: 7_200_000_000),
                                                  hold: 1_600_000, keyName: "team")
        #expect(never.headers.contains { $0 == ("x-should-retry", "false") } && never.headers.contains { $0 == ("Retry-After", "7200") })
        #expect(never.message.contains("monthly") && never.message.contains("max_tokens") && !never.message.contains("in flight"), "\(never.message)")
        let whole = RateLimitResponse.holdRefused(.init(kind: .dailyBudget, limit: 2_000_000, spentMicros: 0, heldMicros: 0, resetMicros: 60_000_000),
                                                  hold: 2_000_001, keyName: "team")
        #expect(whole.message.contains("whole daily budget of $2") && !whole.message.contains("wait"), "\(whole.message)")
        #expect(whole.headers.contains { $0 == ("x-should-retry", "false") })
        // A deliberation is told the limit that lowers its cost: its calls', not the request's own.
        let deliberation = RateLimitResponse.holdRefused(busy, hold: 2_000_001, keyName: "team",
                                                         outputLimit: OutputLimit.deliberation(parameterPath: "tools[0].parameters", responses: false))
        #expect(deliberation.message.contains("'tools[0].parameters.max_completion_tokens'") && deliberation.message.contains("(max_tokens) for the outer"),
                "\(deliberation.message)")
        #expect(OutputLimit.deliberation(parameterPath: "fusion", responses: true).contains(#"plugins: [{"id": "fusion", "max_completion_tokens""#))
        #expect(OutputLimit.deliberation(parameterPath: "fusion", responses: true).contains("max_output_tokens"))
        #expect(OutputLimit.request(responses: true).contains("max_output_tokens"))
    }

    @Test func admissionIsAllOrNothing() {
        let limits = KeyLimits(requestsPerMinute: 100, tokensPerMinute: 50)
        var state = LimitState()
        let periods = BudgetPeriods(micros: Self.t0)
        let refused = RateLimitMath.admit(limits, state: &state, now: Self.t0, periods: periods, reservation: .init(requests: 1, tokens: 60))
        #expect(!refused.allowed)
        #expect(refused.dimensions.map(\.kind) == [.requests, .tokens])
        #expect(refused.dimensions.map(\.exceeded) == [false, true])
        #expect(state.requests == nil, "the request bucket is untouched when the token bucket refuses")
    }

    @Test func reservationsEstimateAndCapTokens() {
        #expect(KeyLimits().reservation(bodyBytes: 400) == .init(requests: 1, tokens: 101))
        #expect(KeyLimits(tokensPerMinute: 50).reservation(bodyBytes: 4_000) == .init(requests: 1, tokens: 50))
        #expect(KeyLimits().reservation(bodyBytes: Int.max).tokens > 0)
    }

    @Test func hostileMagnitudesSaturate() {
        let outcome = RateLimitMath.rate(RateLimitMath.Bucket(level: -.greatestFiniteMagnitude, updatedMicros: .min), now: .max, cost: .max, limit: 1)
        #expect(!outcome.allowed)
        #expect(RateLimitMath.rate(RateLimitMath.Bucket(level: .nan, updatedMicros: 0), now: Self.t0, cost: 1, limit: 10).remaining >= 0)
        #expect(RateLimitMath.budget(spent: .min, limit: .max, resetMicros: -5).remainingMicros == .max)
        _ = RateLimitMath.adjust(nil, now: .min, delta: .min, limit: 1_000_000_000)
    }

    @Test(arguments: [
        (Int64(1_764_547_200_000_000), "20251201", "202512", Int64(1_764_633_600_000_000), Int64(1_767_225_600_000_000)),
        (Int64(1_767_225_599_999_999), "20251231", "202512", Int64(1_767_225_600_000_000), Int64(1_767_225_600_000_000)),
        (Int64(1_709_164_800_000_000), "20240229", "202402", Int64(1_709_251_200_000_000), Int64(1_709_251_200_000_000)),
        (Int64(0), "19700101", "197001", Int64(86_400_000_000), Int64(2_678_400_000_000)),
    ])
    func utcDaysAndMonths(micros: Int64, day: String, month: String, dayEnd: Int64, monthEnd: Int64) {
        let periods = BudgetPeriods(micros: micros)
        #expect(periods.day == .init(id: day, endMicros: dayEnd))
        #expect(periods.month == .init(id: month, endMicros: monthEnd))
    }

    @Test func headersAndTheRefusal() {
        let decision = LimitDecision(dimensions: [
            .init(kind: .requests, limit: 5, remaining: 0, resetMicros: 60_000_000, exceeded: true, retryAfterMicros: 12_000_000),
            .init(kind: .dailyBudget, limit: 2_500_000, remaining: 1_250_000, resetMicros: 3_600_000_000, exceeded: false, retryAfterMicros: 0),
        ])
        let headers = Dictionary(uniqueKeysWithValues: RateLimitResponse.headers(decision))
        #expect(headers["x-ratelimit-limit-requests"] == "5")
        #expect(headers["x-ratelimit-remaining-requests"] == "0")
        #expect(headers["x-ratelimit-reset-requests"] == "1m0s")
        #expect(headers["x-ratelimit-limit-budget-day"] == "2.5")
        #expect(headers["x-ratelimit-remaining-budget-day"] == "1.25")
        #expect(headers["x-ratelimit-reset-budget-day"] == "1h0m0s")
        let error = RateLimitResponse.error(decision, keyName: "team-a")
        #expect(error.status == 429 && error.code == "rate_limit_exceeded" && error.type == "requests")
        let errorHeaders = Dictionary(uniqueKeysWithValues: error.headers)
        #expect(errorHeaders["Retry-After"] == "12")
        #expect(errorHeaders["retry-after-ms"] == "12000")
        #expect(error.message.contains("team-a") && error.message.contains("12s"))

        let budget = RateLimitResponse.error(LimitDecision(dimensions: [
            .init(kind: .monthlyBudget, limit: 100_000_000, remaining: 0, resetMicros: 86_400_000_000, exceeded: true, retryAfterMicros: 86_400_000_000),
        ]), keyName: "team-b")
        #expect(budget.code == "insufficient_quota" && budget.status == 429)
        #expect(Dictionary(uniqueKeysWithValues: budget.headers)["x-should-retry"] == "false")

        // Both a per-minute limit and a spent budget: the budget's refusal (its wait applies, and
        // retrying before it cannot help), not the per-minute one with the budget's wait.
        let both = RateLimitResponse.error(LimitDecision(dimensions: [
            .init(kind: .requests, limit: 5, remaining: 0, resetMicros: 12_000_000, exceeded: true, retryAfterMicros: 12_000_000),
            .init(kind: .dailyBudget, limit: 4_000, remaining: 0, resetMicros: 76_355_000_000, exceeded: true, retryAfterMicros: 76_355_000_000),
        ]), keyName: "team-c")
        #expect(both.code == "insufficient_quota" && both.message.contains("daily budget"), "\(both.message)")
        #expect(Dictionary(uniqueKeysWithValues: both.headers)["x-should-retry"] == "false")
        // The metric counts the refusal once, under the limit the 429 names.
        let twoExceeded = LimitDecision(dimensions: [
            .init(kind: .tokens, limit: 5, remaining: 0, resetMicros: 12_000_000, exceeded: true, retryAfterMicros: 12_000_000),
            .init(kind: .dailyBudget, limit: 4_000, remaining: 0, resetMicros: 76_355_000_000, exceeded: true, retryAfterMicros: 76_355_000_000),
        ])
        #expect(RateLimitResponse.reportedDimension(twoExceeded)?.kind == .dailyBudget)
        #expect(RateLimitResponse.reportedDimension(decision)?.kind == .requests)
        #expect(RateLimitResponse.reportedDimension(LimitDecision(dimensions: [])) == nil)
    }

    @Test(arguments: [(Int64(0), "0ms"), (1, "1ms"), (250_000, "250ms"), (1_500_000, "1.5s"), (59_999_000, "59.999s"),
                      (60_000_000, "1m0s"), (7_384_000_000, "2h3m4s"), (1_000_001, "1.001s"), (-5, "0ms"),
                      (Int64.max, "2562047788h0m55s")])  // the largest: rounded up without overflowing
    func durations(micros: Int64, text: String) {
        #expect(RateLimitResponse.duration(micros: micros) == text)
    }

    @Test func dollars() {
        #expect(RateLimitResponse.dollars(0) == "0")
        #expect(RateLimitResponse.dollars(5_000_000) == "5")
        #expect(RateLimitResponse.dollars(1_234) == "0.001234")
        #expect(RateLimitResponse.dollars(-1_500_000) == "-1.5")
        #expect(!RateLimitResponse.dollars(.min).isEmpty)
    }

    /// FIPS 180-4 test vectors.
    @Test func sha256() {
        #expect(SHA256.hex(Array("".utf8)) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))
            == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func constantTimeMatchFindsWhichKey() {
        #expect(ConstantTime.matchIndex("b", ["a", "b", "c"]) == 1)
        #expect(ConstantTime.matchIndex("x", ["a", "b"]) == nil)
        #expect(ConstantTime.matchIndex("a", ["a", "a"]) == 0)
        #expect(ConstantTime.matchIndex("", []) == nil)
    }
}
