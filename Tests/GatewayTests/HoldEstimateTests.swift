import Fusion
import GatewayCore
@testable import Gateway
import Providers
import Testing

/// What a request is held at and what it counts against tokens per minute.
@Suite struct HoldEstimateTests {
    static let prices: PriceBook = ["p/*": ModelPrice(inputPerMillion: 0, outputPerMillion: 1_000_000)]  // a dollar an output token

    /// Without an output limit, a request asking to reason is held at the default plus the
    /// thinking budget, what Anthropic's translation sends (review 48 limits #2).
    @Test func aRequestWithoutALimitIsHeldWithItsThinkingBudget() {
        var request = ModelRequest(model: "p/m", messages: [ModelMessage(role: .user, text: "q")])
        #expect(HoldEstimate.proxy(request, fallbacks: []).micros(prices: Self.prices) == 4_096 * 1_000_000)
        request.reasoning = ModelRequest.Reasoning(effort: "high")
        #expect(HoldEstimate.proxy(request, fallbacks: []).micros(prices: Self.prices) == (4_096 + 16_384) * 1_000_000)
        // A budget past any model's output: held within what a model writes (review 72B).
        request.reasoning = ModelRequest.Reasoning(maxTokens: Int64(Int32.max))
        #expect(HoldEstimate.proxy(request, fallbacks: []).micros(prices: Self.prices) == 131_072 * 1_000_000)
        request.maxOutputTokens = 100
        #expect(HoldEstimate.proxy(request, fallbacks: []).micros(prices: Self.prices) == 100 * 1_000_000, "a limit bounds it")
    }

    /// What a request holds of its key's tokens per minute: its prompt and its output limit, per
    /// choice, whatever the prices (review 64E #1).
    @Test func aPlansTokensAreItsPromptsAndOutputLimits() {
        var request = ModelRequest(model: "p/m", messages: [ModelMessage(role: .user, text: String(repeating: "word ", count: 80))])
        request.maxOutputTokens = 100
        let prompt = CostEstimate.tokens(request: request)
        #expect(prompt > 50)
        #expect(HoldEstimate.proxy(request, fallbacks: ["q/m"]).tokens == prompt + 100, "one call, whichever model runs it")
        request.extraFields["n"] = .int(3)
        #expect(HoldEstimate.proxy(request, fallbacks: []).tokens == prompt + 300)
        #expect(HoldEstimate.proxy(request, fallbacks: []).micros(prices: [:]) == 0, "no price: nothing to hold of a budget")
    }

    /// Tokens per minute are never charged less than prompt and completion, whatever total an
    /// upstream reported (review 48 limits #3).
    @Test func tokensPerMinuteCountWhatWasReadAndWritten() {
        #expect(GatewayServer.countedTokens(Usage(promptTokens: 100, completionTokens: 50, totalTokens: 0)) == 150)
        #expect(GatewayServer.countedTokens(Usage(promptTokens: 100, completionTokens: 50, totalTokens: 170)) == 170)
        #expect(GatewayServer.countedTokens(Usage(promptTokens: Usage.maxTokens, completionTokens: Usage.maxTokens, totalTokens: 0)) > 0)
        // A total beyond the counts is believed up to the request's plan, never below the counts.
        #expect(GatewayServer.countedTokens(Usage(promptTokens: 5, completionTokens: 1, totalTokens: 1 << 40), planned: 4_000) == 4_000)
        #expect(GatewayServer.countedTokens(Usage(promptTokens: 5, completionTokens: 1, totalTokens: 900), planned: 4_000) == 900)
        #expect(GatewayServer.countedTokens(Usage(promptTokens: 5_000, completionTokens: 1, totalTokens: 1 << 40), planned: 4_000) == 5_001)
    }

    /// A deliberation's outer turns without an output limit are held with the thinking budget
    /// too (review 49 #5: only a proxied request's were).
    @Test func aDeliberationsOuterTurnsAreHeldWithTheirThinkingBudget() throws {
        func hold(reasoning: ModelRequest.Reasoning?) throws -> Int64 {
            var request = ModelRequest(model: "sim/outer", messages: [ModelMessage(role: .user, text: "Q?")])
            request.tools = [.other(try JSONValue.parse(Array(#"{"type":"fusion","parameters":{"analysis_models":["sim/a"]}}"#.utf8)))]
            request.toolChoice = .required
            request.reasoning = reasoning
            guard case .fusion(let fusion) = try FusionPlan.make(request: request, settings: .simulated, depth: 0) else {
                throw APIError.invalidRequest("not fusion")
            }
            return HoldEstimate.fusion(fusion, settings: .simulated, fallbacks: []).micros(prices: ["sim/*": ModelPrice(inputPerMillion: 0, outputPerMillion: 1_000_000)])
        }
        let plain = try hold(reasoning: nil)
        // The final turn (fusion is forced: no first turn) may write 16,384 more tokens.
        #expect(try hold(reasoning: ModelRequest.Reasoning(effort: "high")) - plain >= 16_384 * 1_000_000)
    }
}
