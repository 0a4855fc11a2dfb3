import Fusion
import GatewayCore
import Providers

/// What a request may cost, in micro-dollars, held against its key's budgets while it runs
/// (`RateLimitMath.hold`): each planned call's prompt (estimated from its text at four bytes a
/// token, as `CostEstimate` does: images and files are not counted) and its output limit at the
/// config's prices. A bound only where the request sets an output limit: one that sets none is
/// held at `defaultOutputTokens` plus the thinking budget its reasoning asks for (what
/// Anthropic's translation sends; another upstream may write more). A model without a price holds nothing: its cost is known only once its upstream reports
/// it. What no plan shows is not held: retries after a failure, a Fusion member's or judge's
/// web-tool turns.
enum HoldEstimate {
    static let defaultOutputTokens: Int64 = 4_096

    /// A proxied request: the dearest of its model and its fallbacks (one runs at a time), its
    /// output limit once per choice (`n`).
    static func proxy(_ request: ModelRequest, fallbacks: [String], prices: PriceBook) -> Int64 {
        guard !prices.isEmpty else { return 0 }
        let prompt = CostEstimate.tokens(request: request)
        let choices = Int64(min(max(request.extraFields["n"]?.intValue ?? 1, 1), 128))
        // Without a limit: what Anthropic's translation asks for, the default plus the thinking
        // budget the request's reasoning asks for (review 48 limits #2: the budget, up to 64k
        // tokens, was left out of the hold).
        let limit = request.maxOutputTokens ?? Usage.saturatingAdd(defaultOutputTokens, request.reasoning?.thinkingBudget ?? 0)
        let (product, overflow) = max(0, limit).multipliedReportingOverflow(by: choices)
        let output = overflow ? Usage.maxTokens : min(product, Usage.maxTokens)
        return dearest([request.model] + fallbacks, input: prompt, output: output, prices: prices)
    }

    /// A deliberation: every member and the judge at the deliberation's output limit, and the
    /// outer model's turns (the first, unless fusion is forced, and the final one, which reads
    /// the analysis and every member's answer) at the request's. Prompts as the session builds
    /// them (`FusionPrompts`: the fusion tool's definition, the members' and the judge's
    /// instructions), the question being the conversation's last user text.
    /// The outer turns at the dearest of the outer model and its fallbacks.
    static func fusion(_ request: FusionRequest, settings: FusionSettings, fallbacks: [String], prices: PriceBook) -> Int64 {
        guard !prices.isEmpty else { return 0 }
        // Without a limit, as `proxy`: the default plus the thinking budget asked for (review 49 #5).
        let inner = max(0, FusionPrompts.innerOutputLimit(request.parameters, defaultMaxTokens: settings.defaultMaxTokens)
            ?? Usage.saturatingAdd(defaultOutputTokens, request.parameters.reasoning?.thinkingBudget ?? 0))
        let outer = request.base.maxOutputTokens ?? Usage.saturatingAdd(defaultOutputTokens, request.base.reasoning?.thinkingBudget ?? 0)
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
            total = total.addingSaturating(dearest([request.outerModel] + fallbacks, input: first, output: outer, prices: prices))
        }
        // The final turn reads the conversation, the outer model's call and the tool's result:
        // the analysis (at most the judge's output) and every member's answer, and the result's
        // framing (its fields, the call, each model's name about twice at 4 bytes a token; review
        // 55C #3: left out, ~70 tokens a deliberation).
        let names = panel.reduce(Int64(request.judgeModel.utf8.count)) { $0.addingSaturating(Int64($1.utf8.count)) }
        let framing = Int64(64 + 16 * panel.count).addingSaturating(names / 2)
        let final = Usage.saturatingAdd(Usage.saturatingAdd(CostEstimate.tokens(request: request.base), framing), Usage.saturatingAdd(answers, inner))
        return total.addingSaturating(dearest([request.outerModel] + fallbacks, input: final, output: outer, prices: prices))
    }

    static func dearest(_ models: [String], input: Int64, output: Int64, prices: PriceBook) -> Int64 {
        models.map { micros($0, input: input, output: output, prices: prices) }.max() ?? 0
    }

    /// One call at `model`'s price, rounded up (`Spend`'s arithmetic, saturating); 0 without a price.
    static func micros(_ model: String, input: Int64, output: Int64, prices: PriceBook) -> Int64 {
        guard prices.price(of: model) != nil else { return 0 }
        return Spend.micros(model: model, usage: Usage(promptTokens: max(0, input), completionTokens: max(0, output)), prices: prices)
    }
}
