import GatewayCore
import Providers

/// A model's price in US dollars per million tokens, from the config.
public struct ModelPrice: Sendable, Equatable {
    public var inputPerMillion: Double
    public var outputPerMillion: Double

    public init(inputPerMillion: Double, outputPerMillion: Double) {
        self.inputPerMillion = inputPerMillion
        self.outputPerMillion = outputPerMillion
    }

    public func cost(input: Int64, output: Int64) -> Double {
        (Double(max(0, input)) * inputPerMillion + Double(max(0, output)) * outputPerMillion) / 1_000_000
    }
}

extension Usage {
    /// This usage with its `cost` at `price` when its upstream reported none (Anthropic's and
    /// Gemini's APIs never do; many OpenAI-compatible servers do not): the client's `usage.cost`
    /// is then what the record's spend charges, not a 0 that reads as free (review 49 SDK F5).
    /// A reported cost stays; without a price, so does the 0 (unknown).
    public func costed(at price: ModelPrice?) -> Usage {
        guard cost == 0, let price else { return self }
        var costed = self
        costed.cost = Usage.roundedCost(price.cost(input: min(promptTokens, Usage.maxPricedPromptTokens),
                                                   output: min(completionTokens, Usage.maxPricedCompletionTokens)))
        return costed
    }
}

extension ModelEvent {
    /// A usage event costed at `price` (see `Usage.costed(at:)`); any other event as it is.
    public func costed(at price: ModelPrice?) -> ModelEvent {
        guard price != nil, case .usage(let usage) = self else { return self }
        return .usage(usage.costed(at: price))
    }
}

/// What a deliberation (the panel and the judge) will cost, as a range, before any call starts:
/// each call's prompt tokens (estimated from its text) at the input price, and between none and
/// the call's output limit at the output price. The judge's prompt holds the answers, so its
/// input grows by the panel's outputs at most. Retries, fallbacks and web tool turns are not in
/// the range (they happen only on failures or when a model searches): the record's actual says
/// what they cost.
public struct CostEstimate: Sendable, Equatable {
    public struct Call: Sendable, Equatable {
        /// "panel" or "judge".
        public var role: String
        public var model: String
        public var inputTokens: Int64
        /// nil: no output limit, so no upper bound.
        public var maxOutputTokens: Int64?
        public var minimum: Double
        public var maximum: Double?
    }

    public var calls: [Call]
    /// Models with no price in the config: left out of the range.
    public var unpriced: [String]

    public var minimum: Double { calls.map(\.minimum).reduce(0, +) }
    /// nil when some call has no output limit.
    public var maximum: Double? {
        calls.reduce(Double?(0)) { sum, call in
            guard let sum, let maximum = call.maximum else { return nil }
            return sum + maximum
        }
    }

    /// Tokens in a prompt, estimated from its bytes (≈4 per token in English, the common rule
    /// of thumb) plus a few per message for the chat framing.
    /// A request's prompt, roughly: its messages and its tools' definitions (sent with every
    /// call that has tools: the web tools of a panel member or a judge).
    public static func tokens(request: ModelRequest) -> Int64 {
        Usage.saturatingAdd(tokens(request.messages), tokens(tools: request.tools))
    }

    /// Tool definitions, a token per four bytes of their names, descriptions and schemas.
    public static func tokens(tools: [ToolDefinition]) -> Int64 {
        var bytes = 0
        for tool in tools {
            switch tool {
            case .function(let name, let description, let parameters, _, _):
                bytes += name.utf8.count + (description?.utf8.count ?? 0) + (parameters?.serialized().count ?? 0) + 16
            case .other(let json):
                bytes += json.serialized().count
            }
        }
        return Int64((bytes + 3) / 4)
    }

    /// The bytes a request's conversation and tools take, roughly, every part counted (an
    /// image's URL, an audio or file part, a provider's block): what each call of a deliberation
    /// carries (review 74B #2: the text alone was counted, a 14 MiB image went to every member).
    /// Not a token estimate: a model reads an image as far fewer tokens than its bytes.
    public static func bytes(request: ModelRequest) -> Int64 {
        var bytes = Int64(tokens(tools: request.tools)) * 4
        for message in request.messages {
            bytes += 16
            for part in message.content {
                switch part {
                case .text(let text): bytes += Int64(text.utf8.count)
                case .image(let url, _): bytes += Int64(url.utf8.count) + 32
                case .other(let json), .providerBlock(let json): bytes += Int64(json.serialized().count)
                case .cacheBreakpoint: break
                }
            }
            for call in message.toolCalls { bytes += Int64(call.name.utf8.count + call.arguments.utf8.count + 16) }
        }
        return bytes
    }

    public static func tokens(_ messages: [ModelMessage]) -> Int64 {
        var bytes = 0
        for message in messages {
            bytes += message.text.utf8.count + 16
            for call in message.toolCalls { bytes += call.name.utf8.count + call.arguments.utf8.count + 16 }
        }
        return Int64((bytes + 3) / 4)
    }

    /// nil when no model of the deliberation has a price.
    /// `panelTools` and `judgeTools`: the tools sent with those calls (their definitions are
    /// part of each prompt).
    public static func make(panel: [(model: String, messages: [ModelMessage])], judge: String, judgeMessages: [ModelMessage],
                            panelTools: [ToolDefinition] = [], judgeTools: [ToolDefinition] = [],
                            maxOutputTokens: Int64?, prices: PriceBook) -> CostEstimate? {
        guard !prices.isEmpty else { return nil }
        var calls: [Call] = []
        var unpriced: [String] = []
        func add(_ role: String, _ model: String, input: Int64, extraInput: Int64?) {
            guard let price = prices.price(of: model) else {
                if !unpriced.contains(model) { unpriced.append(model) }
                return
            }
            let maximum = maxOutputTokens.flatMap { limit in
                extraInput.map { price.cost(input: Usage.saturatingAdd(input, $0), output: limit) }
            }
            calls.append(Call(role: role, model: model, inputTokens: input, maxOutputTokens: maxOutputTokens,
                              minimum: price.cost(input: input, output: 0), maximum: maximum))
        }
        let panelToolTokens = tokens(tools: panelTools)
        for member in panel { add("panel", member.model, input: Usage.saturatingAdd(tokens(member.messages), panelToolTokens), extraInput: 0) }
        // The judge reads every answer: at most each member's output limit more.
        add("judge", judge, input: Usage.saturatingAdd(tokens(judgeMessages), tokens(tools: judgeTools)), extraInput: maxOutputTokens.map { limit in
            let (product, overflow) = limit.multipliedReportingOverflow(by: Int64(panel.count))
            return overflow ? Usage.maxTokens : min(product, Usage.maxTokens)
        })
        guard !calls.isEmpty else { return nil }
        return CostEstimate(calls: calls, unpriced: unpriced)
    }

    /// What a call actually cost at the config's prices (nil: unpriced, or no usage reported).
    public static func actual(_ stats: MemberStats, prices: PriceBook) -> Double? {
        guard let usage = stats.usage, let price = prices.price(of: stats.model) else { return nil }
        return price.cost(input: usage.promptTokens, output: usage.completionTokens)
    }

    /// For the generation record: the range, and per call of the deliberation its estimate and
    /// what it cost at the same prices.
    public func report(calls made: [MemberStats], prices: PriceBook) -> JSONValue {
        var rows: [JSONValue] = []
        var actualTotal = 0.0
        var unknown = 0
        // Each planned call's estimate goes to one call: a judge's retry is outside the range,
        // as the README says, not a second copy of its estimate (review 62C #8).
        var unused = Array(calls.indices)
        for call in made where call.role == "panel" || call.role == "judge" {
            var row: [String: JSONValue] = ["role": .string(call.role), "model": .string(call.model), "status": .string(call.status)]
            if let position = unused.firstIndex(where: { calls[$0].role == call.role && calls[$0].model == call.model }) {
                let estimate = calls[unused.remove(at: position)]
                row["estimate_min"] = Self.money(estimate.minimum)
                row["estimate_max"] = estimate.maximum.map(Self.money) ?? .null
            }
            if let actual = Self.actual(call, prices: prices) {
                row["actual"] = Self.money(actual)
                if call.usageEstimated { row["estimated"] = .bool(true) }  // a turn cut before its usage
                actualTotal += actual
            } else {
                row["actual"] = .null
                unknown += 1
            }
            rows.append(.object(row))
        }
        var object: [String: JSONValue] = [
            "estimate_min": Self.money(minimum), "estimate_max": maximum.map(Self.money) ?? .null,
            "actual": Self.money(actualTotal), "calls": .array(rows),
        ]
        if unknown > 0 { object["calls_without_actual"] = .int(Int64(unknown)) }
        if !unpriced.isEmpty { object["unpriced_models"] = .array(unpriced.map(JSONValue.string)) }
        return .object(object)
    }

    /// Dollars to the micro-dollar: float sums print as 0.0006879999999999999 otherwise.
    static func money(_ value: Double) -> JSONValue {
        .double((value * 1_000_000).rounded() / 1_000_000)
    }
}
