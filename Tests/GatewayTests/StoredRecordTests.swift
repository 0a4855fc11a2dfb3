@testable import Gateway
import Fusion
import GatewayCore
import Providers
import RedisClient
import Testing

/// Records read back from Redis are hostile bytes: the value format is checked before anything
/// of it reaches a client, and the admission script's reply is checked field by field.
@Suite struct StoredRecordTests {
    @Test func recordsRoundTripAndGarbageIsRefused() {
        let stored = StoredGeneration(json: Array(#"{"data":{"id":"gen-1"}}"#.utf8), owner: "team-a")
        #expect(RedisGenerationRecordStore.decode(RedisGenerationRecordStore.encode(stored)) == stored)
        let unowned = StoredGeneration(json: Array("{}".utf8), owner: nil)
        #expect(RedisGenerationRecordStore.decode(RedisGenerationRecordStore.encode(unowned)) == unowned)
        for value in ["", "v1", "v1\n", "v2\nteam\n{}", "v1\nteam\n", "v1\nteam\n[1]", "v1\nteam\n{\"a\":", "v1\nte am\n{}",
                      "v1\nteam\u{1b}\n{}", "v1\n" + String(repeating: "o", count: 200) + "\n{}", "v1\nteam\n{}garbage"] {
            #expect(RedisGenerationRecordStore.decode(Array(value.utf8)) == nil, "\(value)")
        }
        #expect(RedisGenerationRecordStore.decode([0xFF, 0xFE, 0x0A]) == nil)
        // A tampered record that is not UTF-8 is not served as JSON (review 62A #5).
        #expect(RedisGenerationRecordStore.decode(Array("v1\nsha256:ab\n{\"a\":\"".utf8) + [0xFF, 0xFE] + Array("\"}".utf8)) == nil)
    }

    @Test func theAdmissionReplyIsCheckedFieldByField() {
        let limits = KeyLimits(requestsPerMinute: 60)
        func reply(_ numbers: [Int64]) -> RedisValue { .array(numbers.map(RedisValue.integer)) }
        let zeros = [Int64](repeating: 0, count: 18)
        let good = reply([1, 1_700_000_000_000_000, 1, 60, 59, 1_000_000, 0, 0] + zeros)
        #expect(RedisKeyLimiter.decision(good, limits: limits)?.dimensions.first?.remaining == 59)
        // Wrong count, wrong types, a limit not the configured one, a dimension the key does not
        // have, a verdict that contradicts its dimensions, negative figures: all refused.
        #expect(RedisKeyLimiter.decision(reply([1, 0]), limits: limits) == nil)
        #expect(RedisKeyLimiter.decision(.array([.bulk([]), .integer(0)] + Array(repeating: .integer(0), count: 24)), limits: limits) == nil)
        #expect(RedisKeyLimiter.decision(reply([1, 0, 1, 61, 59, 1, 0, 0] + zeros), limits: limits) == nil)
        #expect(RedisKeyLimiter.decision(reply([1, 0, 1, 60, 59, 1, 0, 0, 1, 5, 5, 1, 0, 0] + zeros.prefix(12)), limits: limits) == nil)
        #expect(RedisKeyLimiter.decision(reply([1, 0, 1, 60, 0, 1, 1, 5] + zeros), limits: limits) == nil)
        #expect(RedisKeyLimiter.decision(reply([1, 0, 1, 60, -1, 1, 0, 0] + zeros), limits: limits) == nil)
        #expect(RedisKeyLimiter.decision(reply([2, 0, 1, 60, 1, 1, 0, 0] + zeros), limits: limits) == nil)
        #expect(RedisKeyLimiter.decision(.status("OK"), limits: limits) == nil)
        // A remaining count above the limit is clamped, not trusted.
        #expect(RedisKeyLimiter.decision(reply([1, 0, 1, 60, 1_000, 1, 0, 0] + zeros), limits: limits)?.dimensions.first?.remaining == 60)
    }

    @Test func theHoldReplyIsCheckedFieldByField() {
        let limits = KeyLimits(dailyBudgetMicros: 1_000)
        func reply(_ numbers: [Int64]) -> RedisValue { .array(numbers.map(RedisValue.integer)) }
        #expect(RedisKeyLimiter.holdDecision(reply([1, 67, 0, 0, 0, 134, 0]), limits: limits, amount: 67) == HoldDecision(held: 67, refusal: nil))
        #expect(RedisKeyLimiter.holdDecision(reply([0, 0, 1, 1_000, 900, 50, 5_000]), limits: limits, amount: 67)
                == HoldDecision(held: 0, refusal: .init(kind: .dailyBudget, limit: 1_000, spentMicros: 900, heldMicros: 50, resetMicros: 5_000)))
        // Wrong count, types or verdict, a grant of another amount than asked, a budget the key does not
        // have or not its configured limit, negative figures: all refused.
        for bad in [reply([1, 67]), reply([1, 0, 0, 0, 0, 0, 0]), reply([1, 68, 0, 0, 0, 0, 0]), reply([2, 67, 0, 0, 0, 0, 0]), reply([0, 0, 2, 1_000, 0, 0, 0]),
                    reply([0, 0, 1, 999, 0, 0, 0]), reply([0, 0, 3, 1_000, 0, 0, 0]), reply([0, 0, 1, 1_000, -1, 0, 0]),
                    reply([0, 0, 1, 1_000, 0, -5, 0]), reply([0, 0, 1, 1_000, 0, 0, -1]),
                    .array([.bulk(Array("1".utf8))] + Array(repeating: .integer(0), count: 6)), .status("OK")] {
            #expect(RedisKeyLimiter.holdDecision(bad, limits: limits, amount: 67) == nil, "\(bad)")
        }
    }

    @Test func spendPricesCallsOrTakesTheReportedCost() throws {
        var record = GenerationRecord(id: "gen-1", route: .chatCompletions, kind: .proxy, requestedModel: "p/m:opt=1", streamed: false,
                                      created: 0, owner: nil)
        record.usage = .init(promptTokens: 1_000, completionTokens: 500, totalTokens: 1_500, cost: 0.5)
        #expect(Spend.micros(of: record, prices: [:]) == 500_000, "the upstream's cost when the model has no price")
        let prices: PriceBook = ["p/m": ModelPrice(inputPerMillion: 2, outputPerMillion: 10)]
        #expect(Spend.micros(of: record, prices: prices) == 7_000, "1000 × $2/M + 500 × $10/M")
        // The exact slug first, then the bare slug, then its provider's wildcard.
        #expect(Spend.micros(of: record, prices: ["p/*": ModelPrice(inputPerMillion: 1, outputPerMillion: 1), "p/m": prices["p/m"]!]) == 7_000)
        #expect(Spend.micros(of: record, prices: ["p/*": ModelPrice(inputPerMillion: 1, outputPerMillion: 1)]) == 1_500)
        #expect(Spend.micros(of: record, prices: ["p/*": ModelPrice(inputPerMillion: 0.0000001, outputPerMillion: 0)]) == 1, "rounded up")
        record.usage = .init(promptTokens: Usage.maxTokens, completionTokens: Usage.maxTokens, totalTokens: Usage.maxTokens, cost: 0)
        #expect(Spend.micros(of: record, prices: ["p/m": ModelPrice(inputPerMillion: 100_000, outputPerMillion: 100_000)]) > 0, "no trap at the largest counts and prices")
        // A reported cost below a micro-dollar is charged one, as a priced one is (review 22 F7).
        record.usage = .init(promptTokens: 10, completionTokens: 5, totalTokens: 15, cost: 0.0000004)
        #expect(Spend.micros(of: record, prices: [:]) == 1)
    }

    /// An upstream's absurd counts are charged up to a call's bounds, not as given: `1e20`
    /// tokens (read as 2^40) on a short answer charged $3.3M and locked its key out for the
    /// month (review 83B #2). Within the bounds, counts are charged as given; so is each call of
    /// a deliberation.
    @Test func absurdCountsAreChargedUpToACallsBounds() {
        var record = GenerationRecord(id: "gen-1", route: .chatCompletions, kind: .proxy, requestedModel: "p/m", streamed: false,
                                      created: 0, owner: nil)
        let prices: PriceBook = ["p/m": ModelPrice(inputPerMillion: 1, outputPerMillion: 2)]
        let bounded = Spend.maxChargedPromptTokens * 1 + Spend.maxChargedCompletionTokens * 2
        record.usage = .init(promptTokens: Usage.maxTokens, completionTokens: Usage.maxTokens, totalTokens: Usage.maxTokens, cost: 0)
        #expect(Spend.micros(of: record, prices: prices) == bounded)
        // The cost the client and the record state agrees with the charge (review 119 #4: a
        // $19.8M `total_cost` beside a spend of $81.79).
        let stated = record.usage.costed(at: prices["p/m"]).cost
        #expect(Int64((stated * 1_000_000).rounded()) == bounded, "\(stated)")
        record.usage = .init(promptTokens: 10_000_000, completionTokens: 128_000, totalTokens: 10_128_000, cost: 0)
        #expect(Spend.micros(of: record, prices: prices) == 10_000_000 + 256_000, "the largest contexts and outputs charged whole")
        record.usage = .init(promptTokens: -5, completionTokens: Usage.maxTokens, totalTokens: 0, cost: 0)
        #expect(Spend.micros(of: record, prices: prices) == Spend.maxChargedCompletionTokens * 2)
        var call = CallRecord(role: "panel", model: "p/m", provider: "p")
        call.usage = .init(promptTokens: Usage.maxTokens, completionTokens: Usage.maxTokens, totalTokens: Usage.maxTokens, cost: 0)
        record.innerCalls = [call, call]
        #expect(Spend.micros(of: record, prices: prices) == 2 * bounded)
    }

    /// A cost an unpriced model's upstream reports is charged up to $1,000 per million tokens
    /// plus $1 a call, and the rate learned from it is bounded the same way (review 117 #1: one
    /// 8-token answer reporting `"cost": 1e9` charged its key $1e9, and every other key's cut call
    /// of the model at 1.25e14 µ$ a token). A true cost, even a request fee on a short answer, is
    /// charged whole.
    @Test func aReportedCostIsChargedUpToABound() {
        let rates = ReportedRates()
        var record = GenerationRecord(id: "gen-1", route: .chatCompletions, kind: .proxy, requestedModel: "p/m", streamed: true,
                                      created: 0, owner: nil)
        record.usage = .init(promptTokens: 5, completionTokens: 3, totalTokens: 8, cost: 1e9)
        #expect(Spend.micros(of: record, prices: [:], rates: rates) == 8 * 1_000 + 1_000_000)
        record.usage = .init(promptTokens: 5, completionTokens: 3, totalTokens: 8, cost: 0.02)
        #expect(Spend.micros(of: record, prices: [:]) == 20_000, "a request fee on a short answer, whole")
        record.usage = .init(promptTokens: 100_000, completionTokens: 32_000, totalTokens: 132_000, cost: 20.7)
        #expect(Spend.micros(of: record, prices: [:]) == 20_700_000, "an expensive model's long answer, whole")
        record.usage = .init(promptTokens: Usage.maxTokens, completionTokens: Usage.maxTokens, totalTokens: Usage.maxTokens, cost: Usage.maxCost)
        #expect(Spend.micros(of: record, prices: [:]) == (Spend.maxChargedPromptTokens + Spend.maxChargedCompletionTokens) * 1_000 + 1_000_000)
        // Another key's call of the model, cut before its usage: at the bounded rate.
        var cut = record
        cut.usage = .init(promptTokens: 27, completionTokens: 1, totalTokens: 28)
        cut.usageEstimated = true
        #expect(Spend.micros(of: cut, prices: [:], rates: rates) == 28 * 1_000)
    }

    /// Settlements waiting for Redis add up per key and period, saturating; the spend sent is at
    /// most 2^40 µ$ (the script's Lua would print more in exponent form, which INCRBY refuses).
    @Test func waitingSettlementsAddUp() {
        var first = PendingSettlement(keys: ["a", "b", "c", "d", "e"], marker: "m", limits: KeyLimits(requestsPerMinute: 10), now: "",
                                      settlement: LimitSettlement(extraRequests: 1, tokenDelta: -5, spendMicros: 7),
                                      usage: KeyUsage(requests: 1, promptTokens: 10, completionTokens: 20, costMicros: 7),
                                      daySeconds: 100, monthSeconds: 1_000)
        var second = first
        second.daySeconds = 200
        first.add(second)
        #expect(first.settlement == LimitSettlement(extraRequests: 2, tokenDelta: -10, spendMicros: 14))
        #expect(first.usage == KeyUsage(requests: 2, promptTokens: 20, completionTokens: 40, costMicros: 14) && first.daySeconds == 200)
        second.settlement = LimitSettlement(extraRequests: .max, tokenDelta: .min, spendMicros: .max)
        first.add(second)
        #expect(first.settlement.extraRequests == .max && first.settlement.tokenDelta == .min && first.settlement.spendMicros == .max)
        #expect(String(decoding: first.command[14], as: UTF8.self) == String(KeyLimits.maxValue), "the spend argument")
        #expect(String(decoding: first.command[2], as: UTF8.self) == "6" && String(decoding: first.command[8], as: UTF8.self) == "m", "the marker, the sixth key")
    }

    /// An unpriced model's call cut before its usage (so no cost came) is charged at the rate its
    /// model's reported costs showed, not nothing (review 22: a client hanging up before the last
    /// chunk paid $0); without any reported cost yet, nothing is known to charge.
    @Test func anEstimateOfAnUnpricedModelIsChargedAtItsReportedRate() {
        let rates = ReportedRates()
        var cut = GenerationRecord(id: "gen-2", route: .chatCompletions, kind: .proxy, requestedModel: "p/m", streamed: true,
                                   created: 0, owner: nil)
        cut.model = "p/m:opt=1"
        cut.usage = .init(promptTokens: 100, completionTokens: 400, totalTokens: 500)
        cut.usageEstimated = true
        #expect(Spend.micros(of: cut, prices: [:], rates: rates) == 0, "no rate learned yet")
        var whole = cut
        whole.usageEstimated = false
        whole.usage = .init(promptTokens: 1_000, completionTokens: 1_000, totalTokens: 2_000, cost: 0.002)  // 1 µ$ a token
        #expect(Spend.micros(of: whole, prices: [:], rates: rates) == 2_000)
        #expect(Spend.micros(of: cut, prices: [:], rates: rates) == 500, "500 estimated tokens at 1 µ$ each")
        #expect(Spend.micros(of: cut, prices: ["p/*": ModelPrice(inputPerMillion: 2, outputPerMillion: 2)], rates: rates) == 1_000,
                "a price, when there is one, not the rate")
        for index in 0..<(ReportedRates.maxModels + 10) {
            rates.learn(model: "q/\(index)", usage: .init(promptTokens: 1, completionTokens: 1, totalTokens: 2, cost: 0.001))
        }
        #expect(rates.micros(perToken: "q/\(ReportedRates.maxModels + 9)") == 500)
    }

    /// The rate is the median of the model's recent reports, the model without its options:
    /// one report (an absurd cost, a short call's search fee, a call all prompt) does not set
    /// every key's cut calls' cost (reviews 118 #1, 120 #1, #2).
    @Test func oneReportDoesNotSetTheRateOfEveryCutCall() {
        let rates = ReportedRates()
        let honest = Usage(promptTokens: 1_000, completionTokens: 1_000, totalTokens: 2_000, cost: 0.002)  // 1 µ$ a token
        rates.learn(model: "p/m", usage: honest)
        rates.learn(model: "p/m", usage: Usage(promptTokens: 5, completionTokens: 3, totalTokens: 8, cost: 1e9))
        #expect(rates.micros(perToken: "p/m") == 1, "the lower of two")
        rates.learn(model: "p/m:online", usage: Usage(promptTokens: 5, completionTokens: 3, totalTokens: 8, cost: 0.02))
        #expect(rates.micros(perToken: "p/m:x1") == 1_000, "two high of three: options share the model's rate, a new suffix too")
        rates.learn(model: "p/m", usage: honest)
        rates.learn(model: "p/m", usage: Usage(promptTokens: 100_000, completionTokens: 0, totalTokens: 100_000, cost: 0.000001))  // all prompt
        #expect(rates.micros(perToken: "p/m") == 1, "one low report moves it no more than one high")
        for _ in 0..<ReportedRates.window { rates.learn(model: "p/m", usage: Usage(promptTokens: 1, completionTokens: 1, totalTokens: 2, cost: 0.00001)) }
        #expect(rates.micros(perToken: "p/m") == 5, "the window moves on")
    }
}
