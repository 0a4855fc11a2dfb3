import Fusion
import GatewayCore
import Providers

/// What a request may cost, in micro-dollars, held against its key's budgets while it runs, and
/// what it may read and write, in tokens, held against its key's tokens per minute
/// (`RateLimitMath.hold`): each planned call's prompt (estimated from its text at four bytes a
/// token, as `CostEstimate` does: images and files are not counted) and its output limit at the
/// config's prices. A bound only where the request sets an output limit: one that sets none is
/// held at `defaultOutputTokens` plus the thinking budget its reasoning asks for (what
/// Anthropic's translation sends; another upstream may write more). A model without a price holds nothing: its cost is known only once its upstream reports
/// it. What no plan shows is not held: retries after a failure, a Fusion member's or judge's
/// web-tool turns.
enum HoldEstimate {
    static let defaultOutputTokens: Int64 = 4_096
    /// No model writes more in one answer (Claude's adaptive models ask at most 64,000 for a
    /// budget, Opus 4.6 takes 128K): what a limit-less request with a huge thinking budget is held
    /// for (review 72B: a 2^31 budget held 16.78M tokens, refusing a $50 key a $0.96 call).
    static let maxOutputTokensWithoutLimit: Int64 = 131_072

    /// A call's output without a limit of the client's: the default plus the thinking budget
    /// asked for (review 48 limits #2), within what any model writes.
    static func outputWithoutLimit(_ reasoning: ModelRequest.Reasoning?) -> Int64 {
        min(Usage.saturatingAdd(defaultOutputTokens, reasoning?.thinkingBudget ?? 0), maxOutputTokensWithoutLimit)
    }

    /// The calls a request plans, each with the models it may run on (its model, then its
    /// fallbacks: one runs at a time), its prompt and its output limit in tokens.
    struct Plan {
        struct Call {
            var models: [String]
            var input: Int64
            var output: Int64
        }

        var calls: [Call] = []

        /// What the calls may cost, in micro-dollars: each at the dearest of its models.
        func micros(prices: PriceBook) -> Int64 {
            guard !prices.isEmpty else { return 0 }
            return calls.reduce(0) { $0.addingSaturating(dearest($1.models, input: $1.input, output: $1.output, prices: prices)) }
        }

        /// What the calls may read and write, in tokens: what a key's tokens per minute holds
        /// for the request while it runs (review 64E #1).
        var tokens: Int64 { calls.reduce(0) { Usage.saturatingAdd($0, Usage.saturatingAdd($1.input, $1.output)) } }
    }

    /// A proxied request: one call at its model or its fallbacks, its output limit once per
    /// choice (`n`).
    static func proxy(_ request: ModelRequest, fallbacks: [String]) -> Plan {
        let prompt = CostEstimate.tokens(request: request)
        let choices = Int64(min(max(request.extraFields["n"]?.intValue ?? 1, 1), 128))
        // Without a limit: what Anthropic's translation asks for, the default plus the thinking
        // budget the request's reasoning asks for (review 48 limits #2: the budget, up to 64k
        // tokens, was left out of the hold).
        let limit = request.maxOutputTokens ?? outputWithoutLimit(request.reasoning)
        let (product, overflow) = max(0, limit).multipliedReportingOverflow(by: choices)
        let output = overflow ? Usage.maxTokens : min(product, Usage.maxTokens)
        return Plan(calls: [Plan.Call(models: [request.model] + fallbacks, input: prompt, output: output)])
    }

    /// A deliberation: every member and the judge at the deliberation's output limit, and the
    /// outer model's turns (the first, unless fusion is forced, and the final one, which reads
    /// the analysis and every member's answer) at the request's. Prompts as the session builds
    /// them (`FusionPrompts`: the fusion tool's definition, the members' and the judge's
    /// instructions), the question being the conversation's last user text.
    /// The outer turns at the outer model or its fallbacks.
    static func fusion(_ request: FusionRequest, settings: FusionSettings, fallbacks: [String]) -> Plan {
        // Without a limit, as `proxy`: the default plus the thinking budget asked for (review 49 #5).
        let inner = max(0, FusionPrompts.innerOutputLimit(request.parameters, defaultMaxTokens: settings.defaultMaxTokens)
            ?? outputWithoutLimit(request.parameters.reasoning))
        let outer = request.base.maxOutputTokens ?? outputWithoutLimit(request.base.reasoning)
        let panel = request.parameters.analysisModels
        let (product, overflow) = inner.multipliedReportingOverflow(by: Int64(panel.count))
        let answers = overflow ? Usage.maxTokens : min(product, Usage.maxTokens)
        let question = request.lastUserText
        let member = CostEstimate.tokens(FusionPrompts.panelMessages(request, question: question, context: settings.panelContext))
        let judge = Usage.saturatingAdd(CostEstimate.tokens(FusionPrompts.judgeMessages(question: question, answers: [],
                                                                                         neutral: settings.neutralLabels)), answers)
        var plan = Plan()
        for model in panel { plan.calls.append(Plan.Call(models: [model], input: member, output: inner)) }
        plan.calls.append(Plan.Call(models: [request.judgeModel], input: judge, output: inner))
        let outerModels = [request.outerModel] + fallbacks
        if !request.forced {
            plan.calls.append(Plan.Call(models: outerModels, input: CostEstimate.tokens(request: FusionPrompts.outerFirstRequest(request)),
                                        output: outer))
        }
        // The final turn reads the conversation, the outer model's call and the tool's result:
        // the analysis (at most the judge's output) and every member's answer, and the result's
        // framing (its fields, the call, each model's name about twice at 4 bytes a token; review
        // 55C #3: left out, ~70 tokens a deliberation).
        let names = panel.reduce(Int64(request.judgeModel.utf8.count)) { $0.addingSaturating(Int64($1.utf8.count)) }
        let framing = Int64(64 + 16 * panel.count).addingSaturating(names / 2)
        let final = Usage.saturatingAdd(Usage.saturatingAdd(CostEstimate.tokens(request: request.base), framing), Usage.saturatingAdd(answers, inner))
        plan.calls.append(Plan.Call(models: outerModels, input: final, output: outer))
        return plan
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
