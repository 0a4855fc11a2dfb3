import Fusion
import GatewayCore
import Providers

/// What a request may cost at most, in micro-dollars, held against its key's budgets while it
/// runs (`RateLimitMath.hold`): each planned call's prompt (estimated from its text, as
/// `CostEstimate` does) and its output limit at the config's prices. A call whose request sets
/// no output limit is held at `defaultOutputTokens` (Anthropic's translation sends the same when
/// none is given). A model without a price holds nothing: its cost is known only once its
/// upstream reports it. What no plan shows is not held: retries and fallbacks after a failure,
/// a Fusion member's or judge's web-tool turns, an outer model's turns in a client's tool loop.
enum HoldEstimate {
    static let defaultOutputTokens: Int64 = 4_096

    /// A proxied request: the dearest of its model and its fallbacks (one runs at a time).
    static func proxy(_ request: ModelRequest, fallbacks: [String], prices: [String: ModelPrice]) -> Int64 {
        guard !prices.isEmpty else { return 0 }
        let prompt = CostEstimate.tokens(request: request)
        let output = request.maxOutputTokens ?? defaultOutputTokens
        return ([request.model] + fallbacks).map { micros($0, input: prompt, output: output, prices: prices) }.max() ?? 0
    }

    /// A deliberation: every member and the judge at the deliberation's output limit, and the
    /// outer model's turns (the first, unless fusion is forced, and the final one, which reads
    /// the analysis and every member's answer) at the request's. Prompts as the session builds
    /// them (`FusionPrompts`: the fusion tool's definition, the members' and the judge's
    /// instructions), the question being the conversation's last user text.
    static func fusion(_ request: FusionRequest, settings: FusionSettings, prices: [String: ModelPrice]) -> Int64 {
        guard !prices.isEmpty else { return 0 }
        let inner = max(0, request.parameters.maxCompletionTokens ?? settings.defaultMaxTokens ?? defaultOutputTokens)
        let outer = request.base.maxOutputTokens ?? defaultOutputTokens
        let panel = request.parameters.analysisModels
        let (product, overflow) = inner.multipliedReportingOverflow(by: Int64(panel.count))
        let answers = overflow ? Usage.maxTokens : min(product, Usage.maxTokens)
        let question = request.lastUserText
        let member = CostEstimate.tokens(FusionPrompts.panelMessages(request, question: question, context: settings.panelContext))
        let judge = Usage.saturatingAdd(CostEstimate.tokens(FusionPrompts.judgeMessages(question: question, answers: [],
                                                                                         neutral: settings.neutralLabels)), answers)
        var total: Int64 = 0
        for model in panel { total = total.addingSaturating(micros(model, input: member, output: inner, prices: prices)) }
        total = total.addingSaturating(micros(request.judgeModel, input: judge, output: inner, prices: prices))
        if !request.forced {
            let first = CostEstimate.tokens(request: FusionPrompts.outerFirstRequest(request))
            total = total.addingSaturating(micros(request.outerModel, input: first, output: outer, prices: prices))
        }
        // The final turn reads the conversation, the outer model's call and the tool's result:
        // the analysis (at most the judge's output) and every member's answer.
        let final = Usage.saturatingAdd(CostEstimate.tokens(request: request.base), Usage.saturatingAdd(answers, inner))
        return total.addingSaturating(micros(request.outerModel, input: final, output: outer, prices: prices))
    }

    /// One call at `model`'s price, rounded up (`Spend`'s arithmetic, saturating); 0 without a price.
    static func micros(_ model: String, input: Int64, output: Int64, prices: [String: ModelPrice]) -> Int64 {
        guard ModelPrice.lookup(model, in: prices) != nil else { return 0 }
        return Spend.micros(model: model, usage: Usage(promptTokens: max(0, input), completionTokens: max(0, output)), prices: prices)
    }
}
