import GatewayCore

/// The parts of Anthropic's responses the stream and the whole message share.
enum AnthropicResponse {
    /// `stop_reason` in OpenAI's vocabulary. `pause_turn` (a server tool's loop paused) and
    /// values yet to come read as `stop`; running out of context reads as running out of tokens.
    /// `tool_use` with no call made is `stop` (review 98 #7: chat said `tool_calls` with none,
    /// Messages `end_turn`).
    static func finishReason(_ stopReason: String, sawToolCalls: Bool) -> FinishReason {
        switch stopReason {
        case "max_tokens", "model_context_window_exceeded": .length
        case "tool_use": sawToolCalls ? .toolCalls : .stop
        case "refusal": .contentFilter
        default: .stop  // end_turn, stop_sequence, pause_turn, …
        }
    }

    /// The upstream's own stop reason, for Anthropic clients, when the finish loses it (all but
    /// the four that map back exactly), with the sequence that matched. Only a short identifier
    /// (an upstream's bytes, written back out): anything else is left to the finish.
    static func stopDetail(_ stopReason: String, sequence: JSONValue?) -> ModelEvent? {
        guard !["end_turn", "max_tokens", "tool_use", "refusal"].contains(stopReason), (1...64).contains(stopReason.utf8.count),
              stopReason.utf8.allSatisfy({ (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || $0 == UInt8(ascii: "_") }) else { return nil }
        return .stopDetail(reason: stopReason, sequence: sequence?.stringValue.flatMap(stopSequence))
    }

    /// A block's or delta's type the gateway passes on without knowing it (a server tool's, a
    /// new kind): an identifier as Anthropic's are (`server_tool_use`, `citations_delta`), so a
    /// client never keeps a block of type `""` or `123` it cannot send back (review 119 #1).
    static func isPassableType(_ value: JSONValue?) -> Bool {
        guard let type = value?.stringValue, (1...64).contains(type.utf8.count) else { return false }
        return type.utf8.allSatisfy { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "_") }
    }

    /// The sequence that matched, passed on as the client's: one of its own stop sequences, so
    /// short, printable text (whitespace allowed); anything else (100 KB, a bidi override, an
    /// escape) is not one and is left out (review 100 #3).
    static func stopSequence(_ text: String) -> String? {
        guard (1...256).contains(text.unicodeScalars.count), !text.unicodeScalars.contains(where: UpstreamErrors.isUnsafeInText) else { return nil }
        return text
    }

    /// Usage as Anthropic reports it: `message_start` carries the input side, each
    /// `message_delta` cumulative totals that overwrite what they carry (absent fields keep the
    /// earlier value). `input_tokens` excludes cache reads and writes: the prompt is their sum.
    struct UsageCounts {
        private var input: Int64?
        private var cacheCreation: Int64?
        private var cacheRead: Int64?
        private var output: Int64?
        private var thinking: Int64?

        /// A count of the prompt came (`input_tokens` or a cache count): without one the prompt
        /// is not measured, and a usage would say 0 for it (review 99 #2).
        var promptSeen: Bool { input != nil || cacheRead != nil || cacheCreation != nil }
        /// The prompt's side alone: what `message_start` says of the prompt before the answer
        /// (its output count is a placeholder, not an estimate of the answer: review 100 #2).
        var promptUsage: Usage {
            var prompt = usage
            prompt.completionTokens = 0
            prompt.reasoningTokens = 0
            prompt.totalTokens = prompt.promptTokens
            return prompt
        }
        /// Both sides counted: a usage that is a measurement.
        var whole: Bool { promptSeen && output != nil }

        mutating func update(_ usage: JSONValue?) {
            guard let usage, case .object = usage else { return }
            // A count that is not a number, or is negative, is no count: the call is estimated,
            // not recorded as a measured 0 (review 98 #6).
            func read(_ value: JSONValue?) -> Int64? { value.flatMap { ($0.doubleValue ?? -1) >= 0 ? Usage.count($0) : nil } }
            input = read(usage["input_tokens"]) ?? input
            cacheCreation = read(usage["cache_creation_input_tokens"]) ?? cacheCreation
            cacheRead = read(usage["cache_read_input_tokens"]) ?? cacheRead
            output = read(usage["output_tokens"]) ?? output
            thinking = read(usage["output_tokens_details"]?["thinking_tokens"]) ?? thinking
        }

        var usage: Usage {
            let prompt = Usage.saturatingAdd(Usage.saturatingAdd(input ?? 0, cacheCreation ?? 0), cacheRead ?? 0)
            return Usage(promptTokens: prompt, completionTokens: output ?? 0,
                         totalTokens: Usage.saturatingAdd(prompt, output ?? 0), reasoningTokens: thinking ?? 0,
                         cachedTokens: cacheRead ?? 0, cacheWriteTokens: cacheCreation ?? 0)
        }
    }

    /// A whole (non-streamed) `message` as the events its stream would have carried.
    static func events(_ message: JSONValue, redactor: Redactor) -> [ModelEvent] {
        if message["type"]?.stringValue == "error" { return [.error(AnthropicErrors.streamError(message, redactor: redactor))] }
        // A message is its content blocks: one without them is no answer, not an empty one.
        guard let content = message["content"]?.arrayValue else {
            return [.error(.upstreamProtocol("the upstream's message has no content array"))]
        }
        // As many blocks as a stream may carry (`AnthropicEventReader.maxToolCalls`) and no more.
        guard content.count <= 4 * AnthropicEventReader.maxToolCalls else {
            return [.error(.upstreamProtocol("the upstream's message has more than \(4 * AnthropicEventReader.maxToolCalls) blocks"))]
        }
        var events: [ModelEvent] = []
        var calls = 0
        var ids = UniqueToolCallIDs()
        for block in content {
            switch block["type"]?.stringValue {
            case "text"?:
                if let text = block["text"]?.stringValue, !text.isEmpty { events.append(.text(text)) }
                for citation in block["citations"]?.arrayValue ?? [] {
                    events.append(.providerBlock(.delta(.object(["type": .string("citations_delta"), "citation": citation]))))
                }
                events.append(.providerBlock(.stop))  // the next text block is another, with its own citations
            case "thinking"?:
                if let text = block["thinking"]?.stringValue, !text.isEmpty { events.append(.reasoning(text)) }
                if let signature = block["signature"]?.stringValue, !signature.isEmpty { events.append(.reasoningSignature(signature)) }
            case "redacted_thinking"?:
                if let data = block["data"]?.stringValue, !data.isEmpty { events.append(.redactedReasoning(data)) }
            case "tool_use"? where calls >= AnthropicEventReader.maxToolCalls:
                return [.error(.upstreamProtocol("the upstream sent more than \(AnthropicEventReader.maxToolCalls) tool calls"))]
            case "tool_use"?:
                // The API's `input` is an object; anything else no client's API can carry as a call.
                let given = block["input"] ?? .null
                let object: JSONValue = given == .null ? .object([:]) : given
                guard object.objectValue != nil else {
                    return [.error(.upstreamProtocol("the upstream sent a tool_use whose input is not an object"))]
                }
                // No client can run or answer a call without a name (review 71C #9), as Gemini's reader has it.
                guard block["name"]?.stringValue?.isEmpty == false else {
                    return [.error(.upstreamProtocol("the upstream sent a tool_use without a name"))]
                }
                let input = JSONWriting.compact(object)
                events.append(.toolCall(ToolCallFragment(index: calls, id: ids.claim(block["id"]?.stringValue ?? ""),
                                                         name: block["name"]?.stringValue ?? "", arguments: input)))
                calls += 1
            default:
                // Server tools and their results: nothing for the client to run, but an
                // Anthropic client sends them back on its next turn.
                if case .object = block, Self.isPassableType(block["type"]) { events += [.providerBlock(.start(block)), .providerBlock(.stop)] }
            }
        }
        // No stop reason named (null): it still ended, as its stream's `message_stop` says.
        if let reason = message["stop_reason"]?.stringValue, let detail = stopDetail(reason, sequence: message["stop_sequence"]) {
            events.append(detail)
        }
        if let extras = AnthropicMessageExtras.from(message, usage: message["usage"]) { events.append(.messageExtras(extras)) }
        events.append(.finish(message["stop_reason"]?.stringValue.map { finishReason($0, sawToolCalls: calls > 0) } ?? (calls > 0 ? .toolCalls : .stop)))
        var counts = UsageCounts()
        counts.update(message["usage"])
        if counts.whole { events.append(.usage(counts.usage)) }  // else estimated, not a measured 0
        return events
    }
}
