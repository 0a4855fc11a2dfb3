import GatewayCore

/// What a model's response says, one piece at a time, whatever the provider's wire format: the
/// vocabulary every provider decodes into and every client surface renders from.
public enum ModelEvent: Sendable, Equatable {
    /// Visible answer text.
    case text(String)
    /// Reasoning ("thinking") text: not part of the answer.
    case reasoning(String)
    /// The model declined, in its words (OpenAI's `refusal`): the answer, shown apart from text.
    case refusal(String)
    /// The signature that ends a reasoning block (Anthropic's `signature_delta`): opaque, and what
    /// lets a client send the block back on its next turn (extended thinking with tools).
    case reasoningSignature(String)
    /// A reasoning block the provider returns encrypted (Anthropic's `redacted_thinking` `data`),
    /// for the client to send back as it came.
    case redactedReasoning(String)
    /// The upstream's own stop reason, when it says more than the finish that follows it
    /// (Anthropic's `pause_turn`, `stop_sequence` with the sequence that matched,
    /// `model_context_window_exceeded`): for clients of the same API.
    case stopDetail(reason: String, sequence: String?)
    /// Members of an Anthropic message the neutral types do not model, for clients of the same
    /// API (`AnthropicMessageExtras`): `stop_details` (a refusal's category), `container` (code
    /// execution's, to reuse), and usage's `server_tool_use`, `cache_creation`, `service_tier`.
    /// The last one reported holds.
    case messageExtras(AnthropicMessageExtras)
    /// A fragment of a tool call; fragments with the same index concatenate.
    case toolCall(ToolCallFragment)
    /// A part of an Anthropic content block the neutral types do not model (a server tool's
    /// `server_tool_use` and its result blocks, citations on text), for Anthropic clients, who
    /// send such blocks back on their next turn; other clients' APIs have no place for them.
    case providerBlock(ProviderBlockPart)
    case usage(Usage)
    case finish(FinishReason)
    /// The upstream reported an error inside its stream (its message already redacted).
    case error(APIError)
}

/// A part of an unmodelled content block, in its provider's JSON: the block as it starts, a delta
/// of the open block (also a `citations_delta` on a text block), the block's end.
public enum ProviderBlockPart: Sendable, Equatable {
    case start(JSONValue)
    case delta(JSONValue)
    case stop

    /// The block as it started, with the `input` its `input_json_delta`s gave (a server tool's
    /// call streams its input as Anthropic's own tool calls do); as it started when they gave
    /// none or no JSON.
    public static func block(_ start: JSONValue, input: String?) -> JSONValue {
        guard let input, !input.isEmpty, case .object(var fields) = start, let value = try? JSONValue.parse(Array(input.utf8)) else { return start }
        fields["input"] = value
        return .object(fields)
    }
}

/// Why a model stopped, in OpenAI's vocabulary (what chat clients expect).
public struct FinishReason: RawRepresentable, Sendable, Equatable, Hashable {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let stop = FinishReason(rawValue: "stop")
    public static let length = FinishReason(rawValue: "length")
    public static let toolCalls = FinishReason(rawValue: "tool_calls")
    public static let contentFilter = FinishReason(rawValue: "content_filter")
    public static let error = FinishReason(rawValue: "error")
}

/// Token counts and cost of one upstream call.
///
/// Numbers come from upstreams, so they are untrusted: each count is clamped to
/// `0...maxTokens` when read and sums saturate, so no usage report can trap the gateway.
public struct Usage: Sendable, Equatable {
    public var promptTokens: Int64 = 0
    public var completionTokens: Int64 = 0
    public var totalTokens: Int64 = 0
    /// Of `completionTokens`, those spent reasoning.
    public var reasoningTokens: Int64 = 0
    /// Of `promptTokens`, those read from a prompt cache.
    public var cachedTokens: Int64 = 0
    /// Of `promptTokens`, those written to a prompt cache (Anthropic's
    /// `cache_creation_input_tokens`, priced apart from other input).
    public var cacheWriteTokens: Int64 = 0
    /// In US dollars, as the upstream reported it (OpenRouter's `cost`), rounded to
    /// `costDecimalPlaces` (see `roundedCost`); 0 when unknown.
    public var cost: Double = 0

    /// The gateway's estimate of a call whose upstream never reported its usage: `prompt` (the
    /// upstream's own count of the prompt, said first, or one by its size) and at least
    /// `completionTokens` (a token per forwarded event, a lower bound).
    public static func estimate(prompt: Usage, completionTokens: Int64) -> Usage {
        var estimate = prompt
        estimate.completionTokens = max(estimate.completionTokens, completionTokens)
        estimate.totalTokens = saturatingAdd(estimate.promptTokens, estimate.completionTokens)
        return estimate
    }

    /// A trillion tokens: far beyond any real call, small enough that sums of many never overflow.
    public static let maxTokens: Int64 = 1 << 40
    /// What one call is priced and charged for at most, whatever its upstream reports: above any
    /// model's context (10M tokens today) and output (128K). The spend (`Spend`) and the cost
    /// the gateway states from `prices:` (`costed(at:)`) use the same bounds, so a hostile count
    /// never shows a $19.8M call whose spend said $81.79 (review 119 #4).
    public static let maxPricedPromptTokens: Int64 = 1 << 24
    public static let maxPricedCompletionTokens: Int64 = 1 << 21
    /// Beyond this a reported cost is nonsense.
    public static let maxCost = 1e9
    /// Costs are kept to this many decimal places of a dollar wherever the gateway states one
    /// (usage objects, records, metrics, logs), so a sum of costs prints as the decimal sum of
    /// what was printed for its parts, never as `0.0006879999999999999`.
    public static let costDecimalPlaces = 10
    private static let costScale = 1e10

    /// `value` clamped to `0...maxCost` (0 for NaN and negatives) and rounded to
    /// `costDecimalPlaces`: the nearest double to a decimal of at most 10 places, which JSON
    /// writers print as that decimal (a JSON number, sometimes in exponent form: `1.5e-05`).
    public static func roundedCost(_ value: Double) -> Double {
        let clamped = clampCost(value)
        // Below 1e5 dollars the scaled value is an exact integer in a double (< 2^53).
        return clamped < 1e5 ? (clamped * costScale).rounded() / costScale : clamped
    }

    public init(promptTokens: Int64 = 0, completionTokens: Int64 = 0, totalTokens: Int64 = 0, reasoningTokens: Int64 = 0,
                cachedTokens: Int64 = 0, cacheWriteTokens: Int64 = 0, cost: Double = 0) {
        self.promptTokens = Self.clamp(promptTokens)
        self.completionTokens = Self.clamp(completionTokens)
        self.totalTokens = Self.clamp(totalTokens)
        self.reasoningTokens = Self.clamp(reasoningTokens)
        self.cachedTokens = Self.clamp(cachedTokens)
        self.cacheWriteTokens = Self.clamp(cacheWriteTokens)
        self.cost = Self.roundedCost(cost)
    }

    /// OpenAI's `usage` object (with OpenRouter's `cost` and the `*_details` breakdowns); nil
    /// when it has no token count that is a number (`{}`, counts of `"12"`, or `1e400`, read as
    /// null): an upstream that said nothing usable said nothing, and the call is estimated, not
    /// recorded as a measured zero (review 21 F2). The total is at least the prompt and
    /// completion it sums (counts clamped one by one could leave a reported total below the
    /// completion: review 52A #9), as Anthropic's and Gemini's totals are.
    public init?(openAI json: JSONValue?) {
        guard let json, case .object = json, Self.hasCount(json) else { return nil }
        let prompt = Self.count(json["prompt_tokens"])
        let completion = Self.count(json["completion_tokens"])
        self.init(promptTokens: prompt, completionTokens: completion,
                  totalTokens: max(Self.count(json["total_tokens"]), Self.saturatingAdd(prompt, completion)),
                  reasoningTokens: Self.count(json["completion_tokens_details"]?["reasoning_tokens"]),
                  cachedTokens: Self.count(json["prompt_tokens_details"]?["cached_tokens"]),
                  cacheWriteTokens: Self.count(json["prompt_tokens_details"]?["cache_write_tokens"]),
                  cost: json["cost"]?.doubleValue ?? 0)
    }

    public static func + (lhs: Usage, rhs: Usage) -> Usage {
        Usage(promptTokens: saturatingAdd(lhs.promptTokens, rhs.promptTokens),
              completionTokens: saturatingAdd(lhs.completionTokens, rhs.completionTokens),
              totalTokens: saturatingAdd(lhs.totalTokens, rhs.totalTokens),
              reasoningTokens: saturatingAdd(lhs.reasoningTokens, rhs.reasoningTokens),
              cachedTokens: saturatingAdd(lhs.cachedTokens, rhs.cachedTokens),
              cacheWriteTokens: saturatingAdd(lhs.cacheWriteTokens, rhs.cacheWriteTokens),
              cost: lhs.cost + rhs.cost)
    }

    /// OpenAI's shape, with `cost` and the details objects only where they say something.
    public var json: JSONValue {
        var object: [String: JSONValue] = [
            "prompt_tokens": .int(promptTokens), "completion_tokens": .int(completionTokens),
            "total_tokens": .int(totalTokens), "cost": .double(cost),
        ]
        if reasoningTokens > 0 { object["completion_tokens_details"] = .object(["reasoning_tokens": .int(reasoningTokens)]) }
        if cachedTokens > 0 || cacheWriteTokens > 0 {
            var details: [String: JSONValue] = ["cached_tokens": .int(cachedTokens)]
            if cacheWriteTokens > 0 { details["cache_write_tokens"] = .int(cacheWriteTokens) }
            object["prompt_tokens_details"] = .object(details)
        }
        return .object(object)
    }

    /// Whether an OpenAI `usage` object has a token count that is a number.
    public static func hasCount(_ json: JSONValue) -> Bool {
        ["prompt_tokens", "completion_tokens", "total_tokens"].contains { json[$0]?.doubleValue != nil }
    }

    /// An upstream's token count, clamped to `0...maxTokens` (NaN, negatives and non-numbers: 0).
    public static func count(_ value: JSONValue?) -> Int64 {
        guard let number = value?.doubleValue, !number.isNaN, number > 0 else { return 0 }
        // A fraction is no count an upstream should send: rounded up, so 0.9 is not a free call
        // (review 119 #3).
        return number >= Double(maxTokens) ? maxTokens : Int64(number.rounded(.up))
    }

    static func clamp(_ value: Int64) -> Int64 { min(max(value, 0), maxTokens) }

    public static func clampCost(_ value: Double) -> Double { value.isFinite && value > 0 ? min(value, maxCost) : 0 }

    /// The report a stream's accounting keeps when `new` comes after `old`: the new one, as
    /// vLLM's continuous stats grow, unless it counts fewer tokens on either side, or as many for
    /// a lower cost (review 117 #3, 120 #3: a later 1 + 1 after 100 + 100 was charged 1 + 1).
    public static func kept(_ old: Usage?, _ new: Usage) -> Usage {
        guard let old else { return new }
        return shrinks(from: (old.promptTokens, old.completionTokens, old.cost), to: (new.promptTokens, new.completionTokens, new.cost)) ? old : new
    }

    /// Whether a later report (prompt, completion, cost) says less than an earlier one.
    public static func shrinks(from old: (Int64, Int64, Double), to new: (Int64, Int64, Double)) -> Bool {
        new.0 < old.0 || new.1 < old.1 || (new.0 == old.0 && new.1 == old.1 && new.2 < old.2)
    }

    /// `a + b`, at most `maxTokens` (and never trapping): for token counts.
    public static func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : min(sum, maxTokens)
    }
}

/// One fragment of a streamed tool call (`delta.tool_calls[i]` in OpenAI's format).
public struct ToolCallFragment: Sendable, Equatable {
    public var index: Int
    public var id: String?
    public var name: String?
    public var arguments: String?

    public init(index: Int, id: String? = nil, name: String? = nil, arguments: String? = nil) {
        self.index = index
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

/// A tool call assembled from its fragments.
public struct ToolCall: Sendable, Equatable {
    public var index: Int
    public var id: String
    public var name: String
    public var arguments: String
    /// A call of one of OpenAI's custom tools (free-form input, in `arguments`): only an
    /// OpenAI-compatible upstream has them (review 50 #3: re-encoded, one became a function call
    /// with no name and no input).
    public var isCustom: Bool

    public init(index: Int, id: String, name: String, arguments: String, isCustom: Bool = false) {
        self.index = index
        self.id = id
        self.name = name
        self.arguments = arguments
        self.isCustom = isCustom
    }

    /// OpenAI's `tool_calls[]` entry.
    public var json: JSONValue {
        if isCustom {
            return .object(["id": .string(id), "type": .string("custom"),
                            "custom": .object(["name": .string(name), "input": .string(arguments)])])
        }
        return .object(["id": .string(id), "type": .string("function"),
                        "function": .object(["name": .string(name), "arguments": .string(arguments)])])
    }
}

/// Concatenates streamed tool-call fragments by index, the way OpenAI clients do.
public struct ToolCallAccumulator: Sendable, Equatable {
    public private(set) var calls: [ToolCall] = []

    public init() {}

    public mutating func add(_ fragment: ToolCallFragment) {
        if let position = calls.firstIndex(where: { $0.index == fragment.index }) {
            if let id = fragment.id, calls[position].id.isEmpty { calls[position].id = id }
            if let name = fragment.name, calls[position].name.isEmpty { calls[position].name = name }
            calls[position].arguments += fragment.arguments ?? ""
        } else {
            calls.append(ToolCall(index: fragment.index, id: fragment.id ?? "", name: fragment.name ?? "",
                                  arguments: fragment.arguments ?? ""))
        }
    }

    /// The name of the call at `index`, once its first fragment has arrived.
    public func name(at index: Int) -> String? {
        calls.first { $0.index == index }?.name
    }
}

/// What an Anthropic message says beyond the neutral events (`ModelEvent.messageExtras`), kept as
/// the upstream wrote it: the members of the message (`stop_details`, `container`) and of its
/// usage (`server_tool_use`, `cache_creation`, `service_tier`).
public struct AnthropicMessageExtras: Sendable, Equatable {
    public static let messageMembers = ["stop_details", "container"]
    public static let usageMembers = ["server_tool_use", "cache_creation", "service_tier"]

    public var message: [String: JSONValue] = [:]
    public var usage: [String: JSONValue] = [:]

    public init(message: [String: JSONValue] = [:], usage: [String: JSONValue] = [:]) {
        self.message = message
        self.usage = usage
    }

    /// Those of `object`'s members (a message, a `message_delta`'s delta) and of `usage` that are
    /// not null; nil when there are none.
    public static func from(_ object: JSONValue?, usage: JSONValue?) -> AnthropicMessageExtras? {
        var extras = AnthropicMessageExtras()
        for name in messageMembers { if let value = object?[name], value != .null { extras.message[name] = value } }
        for name in usageMembers { if let value = usage?[name], value != .null { extras.usage[name] = value } }
        return extras.message.isEmpty && extras.usage.isEmpty ? nil : extras
    }

    /// `newer`'s members over these.
    public func merging(_ newer: AnthropicMessageExtras) -> AnthropicMessageExtras {
        AnthropicMessageExtras(message: message.merging(newer.message) { $1 }, usage: usage.merging(newer.usage) { $1 })
    }
}

extension ModelEvent {
    /// The output of a whole answer that reported no usage, in tokens at about four bytes each
    /// (text, reasoning, refusals and tool calls); nil when it wrote nothing. The record charges
    /// it, and a client that asked for usage is told the same estimate.
    public static func estimatedOutputTokens(_ events: [ModelEvent]) -> Int64? {
        var bytes = 0
        for event in events {
            switch event {
            case .text(let text), .reasoning(let text), .refusal(let text): bytes += text.utf8.count
            case .toolCall(let call): bytes += (call.name?.utf8.count ?? 0) + (call.arguments?.utf8.count ?? 0)
            default: break
            }
        }
        return bytes == 0 ? nil : tokens(outputBytes: bytes)
    }

    /// Output of `bytes` (text, reasoning, tool calls) at about four bytes a token: the
    /// gateway's estimate of an answer whose upstream did not count it.
    public static func tokens(outputBytes bytes: Int) -> Int64 { Int64(bytes / 4 + 1) }
}
