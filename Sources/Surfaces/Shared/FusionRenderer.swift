import Fusion
import GatewayCore
import Providers

/// What a finished Fusion session hands its renderer for the end of the response.
public struct FusionTotals: Sendable {
    /// Summed over every call.
    public var usage: Usage
    /// Per call, when a deliberation ran (nil: the outer model answered alone).
    public var calls: [MemberStats]?
    public var fusion: FusionResult?
    public var finishReason: FinishReason?
    public var sources: SourceList
    /// Some of `usage` is the gateway's estimate (a call cut or failed before its upstream said):
    /// the usage says so at its top level too, where a client reads it without a deliberation's
    /// per-call breakdown (review 68C #6).
    public var usageEstimated = false
    /// The model that wrote the answer when a fallback of the one asked did: a whole answer
    /// names it, as a proxied one does (a stream keeps the name its first event gave).
    public var answeringModel: String?

    public init(usage: Usage, calls: [MemberStats]?, fusion: FusionResult?, finishReason: FinishReason?, sources: SourceList) {
        self.usage = usage
        self.calls = calls
        self.fusion = fusion
        self.finishReason = finishReason
        self.sources = sources
    }

    /// OpenAI's usage object with the per-call breakdown under `fusion` when a deliberation ran;
    /// `calls_without_usage` says how many calls no upstream reported usage for (the totals leave
    /// them out rather than count them as 0), `calls_estimated` how many hold the gateway's
    /// estimate for a turn cut or failed before its usage (the totals include it, as the key is
    /// charged it).
    public var chatUsageJSON: JSONValue {
        guard case .object(var usage) = usage.json else { return .null }
        if let calls { usage["fusion"] = Self.breakdown(calls) }
        if usageEstimated { usage["estimated"] = .bool(true) }
        return .object(usage)
    }

    /// `chatUsageJSON`, serialized, written directly: the last thing a deliberation's stream
    /// carries before `[DONE]`.
    public func appendChatUsage(to out: inout [UInt8]) {
        func number(_ key: StaticString, _ value: Int64) {
            out.append(contentsOf: UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
            out.append(contentsOf: String(value).utf8)
        }
        number(#"{"completion_tokens":"#, usage.completionTokens)
        if usage.reasoningTokens > 0 {
            number(#","completion_tokens_details":{"reasoning_tokens":"#, usage.reasoningTokens)
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: #","cost":"#.utf8)
        JSONWriting.appendValue(.double(usage.cost), to: &out)
        if usageEstimated { out.append(contentsOf: #","estimated":true"#.utf8) }
        if let calls {
            out.append(contentsOf: #","fusion":{"calls":["#.utf8)
            for (index, call) in calls.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                call.appendJSON(to: &out)
            }
            out.append(UInt8(ascii: "]"))
            let estimated = calls.reduce(0) { $0 + ($1.usageEstimated ? 1 : 0) }
            if estimated > 0 { number(#","calls_estimated":"#, Int64(estimated)) }
            let unknown = calls.reduce(0) { $0 + ($1.usage == nil ? 1 : 0) }
            if unknown > 0 { number(#","calls_without_usage":"#, Int64(unknown)) }
            out.append(UInt8(ascii: "}"))
        }
        number(#","prompt_tokens":"#, usage.promptTokens)
        if usage.cachedTokens > 0 || usage.cacheWriteTokens > 0 {
            number(#","prompt_tokens_details":{"cached_tokens":"#, usage.cachedTokens)
            if usage.cacheWriteTokens > 0 { number(#","cache_write_tokens":"#, usage.cacheWriteTokens) }
            out.append(UInt8(ascii: "}"))
        }
        number(#","total_tokens":"#, usage.totalTokens)
        out.append(UInt8(ascii: "}"))
    }

    static func breakdown(_ calls: [MemberStats]) -> JSONValue {
        var fusion: [String: JSONValue] = ["calls": .array(calls.map(\.json))]
        let unknown = calls.filter { $0.usage == nil }.count
        if unknown > 0 { fusion["calls_without_usage"] = .int(Int64(unknown)) }
        let estimated = calls.filter(\.usageEstimated).count
        if estimated > 0 { fusion["calls_estimated"] = .int(Int64(estimated)) }
        return .object(fusion)
    }
}

/// A Fusion session's output in one client API (chat completions, Responses, Anthropic
/// Messages): the shell (`FusionSession`) feeds it the machine's outputs and writes the bytes.
public protocol FusionRenderer {
    var stream: Bool { get }
    /// Sent as the stream opens.
    mutating func renderStart(into out: inout [UInt8])
    /// What `output` shows the client (a non-streamed response only keeps state).
    mutating func render(_ output: FusionSessionMachine.Output, sources: SourceList, at milliseconds: Double, into out: inout [UInt8])
    /// The end of a streamed response.
    mutating func renderEnd(_ totals: FusionTotals, into out: inout [UInt8])
    /// A failure after the stream began, in the API's in-band form.
    mutating func renderError(_ error: APIError, totals: FusionTotals, into out: inout [UInt8])
    /// The whole non-streamed response body (an error: the answer cannot be expressed in this API).
    mutating func body(_ totals: FusionTotals) throws(APIError) -> [UInt8]
    /// Why the answer event in `output` cannot go to the client in this API (a tool call's
    /// fragment that can no longer be JSON, or that goes back to a call that ended), checked
    /// before it is rendered: the session fails with it instead, as a proxied answer does
    /// (review 71A #1). Nil: render it.
    mutating func refusal(of output: FusionSessionMachine.Output) -> APIError?
    /// Why the answer cannot end as it is (a call's arguments left unfinished or not JSON),
    /// checked before the end, streamed or whole; a call cut by the output limit (`length`) ends
    /// as the provider cut it.
    func refusalAtEnd(finish: FinishReason?) -> APIError?
    /// Whether the stream has yet to name its model: then the session names the outer turn's
    /// model that answers (`name(answeringModel:)`) before each answer event it renders.
    var namesModelLater: Bool { get }
    mutating func name(answeringModel: String)
}

extension FusionRenderer {
    /// Chat passes a model's tool calls through as it wrote them, proxied or not.
    public mutating func refusal(of output: FusionSessionMachine.Output) -> APIError? { nil }
    public func refusalAtEnd(finish: FinishReason?) -> APIError? { nil }
    /// Chat's and Responses' streams name the model as they open (and keep it).
    public var namesModelLater: Bool { false }
    public mutating func name(answeringModel: String) {}
}

extension FusionChatRenderer: FusionRenderer {
    public mutating func renderStart(into out: inout [UInt8]) {}

    public mutating func renderEnd(_ totals: FusionTotals, into out: inout [UInt8]) {
        renderEnd(sources: totals.sources, into: &out) { totals.appendChatUsage(to: &$0) }
    }

    public mutating func renderError(_ error: APIError, totals: FusionTotals, into out: inout [UInt8]) {
        renderError(error, into: &out) { totals.appendChatUsage(to: &$0) }
    }

    public mutating func body(_ totals: FusionTotals) throws(APIError) -> [UInt8] {
        completion(usage: totals.chatUsageJSON, fusion: totals.fusion, finishReason: totals.finishReason, sources: totals.sources,
                   model: totals.answeringModel)
    }
}

extension FusionMessagesRenderer: FusionRenderer {
    public mutating func renderStart(into out: inout [UInt8]) {}

    public mutating func render(_ output: FusionSessionMachine.Output, sources: SourceList, at milliseconds: Double,
                                into out: inout [UInt8]) {
        render(output, at: milliseconds, into: &out)
    }

    public mutating func renderEnd(_ totals: FusionTotals, into out: inout [UInt8]) {
        renderEnd(usage: totals.usage, estimated: totals.usageEstimated, fusion: totals.fusion, calls: totals.calls, into: &out)
    }

    public mutating func renderError(_ error: APIError, totals: FusionTotals, into out: inout [UInt8]) {
        renderError(error, into: &out)
    }

    public mutating func body(_ totals: FusionTotals) throws(APIError) -> [UInt8] {
        try message(usage: totals.usage, estimated: totals.usageEstimated, fusion: totals.fusion, calls: totals.calls, model: totals.answeringModel)
    }

    public mutating func refusal(of output: FusionSessionMachine.Output) -> APIError? {
        refusal(ofAnswer: output)
    }

    public func refusalAtEnd(finish: FinishReason?) -> APIError? {
        finish == .length ? nil : refusalAtEnd()
    }
}

extension ResponsesFusionRenderer: FusionRenderer {
    public var stream: Bool { writer.stream }

    public mutating func render(_ output: FusionSessionMachine.Output, sources: SourceList, at milliseconds: Double,
                                into out: inout [UInt8]) {
        render(output, sources: sources, into: &out)
    }

    public mutating func renderEnd(_ totals: FusionTotals, into out: inout [UInt8]) {
        renderEnd(usage: Self.usage(totals), sources: totals.sources,
                  completedAt: ResponsesTranslation.now(), into: &out)
    }

    public mutating func renderError(_ error: APIError, totals: FusionTotals, into out: inout [UInt8]) {
        renderError(error, usage: Self.usage(totals), into: &out)
    }

    public mutating func body(_ totals: FusionTotals) throws(APIError) -> [UInt8] {
        response(usage: Self.usage(totals), sources: totals.sources, completedAt: ResponsesTranslation.now(), model: totals.answeringModel)
    }

    public mutating func refusal(of output: FusionSessionMachine.Output) -> APIError? {
        guard case .answer(.toolCall(let fragment)) = output else { return nil }
        return ResponsesTranslation.refusal(ofToolCall: fragment, in: writer)
    }

    public func refusalAtEnd(finish: FinishReason?) -> APIError? {
        finish == .length ? nil : ResponsesTranslation.refusalAtEnd(of: writer)
    }

    static func usage(_ totals: FusionTotals) -> JSONValue {
        guard totals.usageEstimated, case .object(var usage) = usage(totals.usage, calls: totals.calls) else {
            return usage(totals.usage, calls: totals.calls)
        }
        usage["estimated"] = .bool(true)
        return .object(usage)
    }
}
