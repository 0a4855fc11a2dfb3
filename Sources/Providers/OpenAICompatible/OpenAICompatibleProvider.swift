import Foundation
import GatewayCore

/// Any server speaking OpenAI's chat completions API: OpenAI, OpenRouter, vLLM, llama.cpp,
/// Ollama, the simulated models.
public struct OpenAICompatibleProvider: Provider {
    public init() {}

    public var wireFormat: WireFormat { .openAIChat }

    /// An Anthropic client's server tools (`web_search_20250305`, …) run on Anthropic's servers
    /// only: sent here they would be refused in the upstream's words, or ignored (review 20 B8).
    public func validate(_ request: ModelRequest) throws(APIError) {
        guard request.extraFieldsFormat == .anthropicMessages else { return }
        try NativeRequestRules.refuseAnthropicOnlyInput(request.messages, api: "an OpenAI-compatible API")
        for (index, tool) in request.tools.enumerated() {
            guard case .other(let json) = tool else { continue }
            throw .invalidRequest("The tool '\(json["type"]?.stringValue ?? "?")' is one of Anthropic's server tools, which only Anthropic's API runs; "
                                  + "this model is on an OpenAI-compatible API.", param: "tools.\(index)")
        }
    }

    public func httpRequest(for request: ModelRequest, endpoint: ProviderEndpoint, extraHeaders: [(String, String)]) -> ProviderHTTPRequest {
        ProviderHTTPRequest(url: endpoint.baseURL + "/chat/completions",
                            headers: Self.headers(endpoint: endpoint, stream: request.stream, extra: extraHeaders),
                            body: OpenAIRequestEncoder.body(request, maxTokensField: endpoint.maxTokensField,
                                                            reasoningField: endpoint.reasoningField,
                                                            streamUsage: endpoint.asksForStreamUsage))
    }

    /// The headers of every request to `endpoint` (also used when a client's body is relayed as is).
    public static func headers(endpoint: ProviderEndpoint, stream: Bool, extra: [(String, String)]) -> [(String, String)] {
        var headers: [(String, String)] = [
            ("Content-Type", "application/json"),
            ("Accept", stream ? "text/event-stream" : "application/json"),
        ]
        if let key = endpoint.apiKey { headers.append(("Authorization", "Bearer \(key)")) }
        for (name, value) in endpoint.headers.sorted(by: { $0.key < $1.key }) { headers.append((name, value)) }
        return headers + extra
    }

    public func streamDecoder(maxEventBytes: Int, redactor: Redactor) -> any ModelStreamDecoder {
        OpenAIStreamDecoder(maxEventBytes: maxEventBytes, redactor: redactor)
    }

    public func decodeResponse(_ body: [UInt8], redactor: Redactor) throws(StreamDecodingError) -> [ModelEvent] {
        guard let json = try? JSONValue.parse(body), case .object = json else {
            throw StreamDecodingError("the upstream's response is not a JSON object")
        }
        if let error = json["error"], error != .null {
            return [.error(OpenAIErrors.streamError(error, redactor: redactor))]
        }
        // A completion is its choice: a 200 without one (OpenRouter's `:free` providers send
        // `{"id":…,"provider":…}`) is no answer, and is retried or falls back like a 502 (review
        // 52A #3), as Anthropic's message without content is.
        let choices = json["choices"]?.arrayValue ?? []
        guard let choice = choices.first(where: { $0["index"]?.intValue == 0 }) ?? choices.first else {
            return [.error(.upstreamProtocol("the upstream's response has no choices"))]
        }
        var events: [ModelEvent] = []
        if let error = OpenAIErrors.choiceError(error: choice["error"], finishReason: choice["finish_reason"]?.stringValue) {
            return [.error(OpenAIErrors.streamError(error, redactor: redactor))]
        }
        let message = choice["message"]
        let signed = message?["reasoning_details"]?.arrayValue?.contains { $0["format"]?.stringValue == ReasoningDetail.format } == true
        if signed, let details = message?["reasoning_details"] {
            // Each block's own text before its signature (`reasoning` joins every block's text).
            var state = OpenAIChunk.StreamState()
            OpenAIChunk.signedReasoning(details, state: &state) { events.append($0) }
        } else if let reasoning = (message?["reasoning"] ?? message?["reasoning_content"])?.stringValue, !reasoning.isEmpty {
            events.append(.reasoning(reasoning))
        }
        if let content = message?["content"] {
            if let text = content.stringValue, !text.isEmpty { events.append(.text(text)) } else { OpenAIChunk.contentParts(content) { events.append($0) } }
        }
        if let refusal = message?["refusal"]?.stringValue, !refusal.isEmpty { events.append(.refusal(refusal)) }
        // A whole message's calls are whole: each is its own call, whatever index it carries,
        // under an id of its own.
        let calls = message?["tool_calls"]?.arrayValue ?? []
        guard calls.count <= OpenAIChunk.maxToolCallIndex + 1 else {
            return [.error(.upstreamProtocol("The upstream sent more than \(OpenAIChunk.maxToolCallIndex + 1) tool calls."))]
        }
        var ids = UniqueToolCallIDs()
        for (position, call) in calls.enumerated() {
            var fragment = OpenAIChunk.fragment(call, position: position)
            fragment.index = position
            fragment.id = fragment.id.map { ids.claim($0) }
            events.append(.toolCall(fragment))
        }
        // A whole answer is complete only with its finish reason, as a streamed one (review 71C
        // #2: `finish_reason: null` passed as complete; Gemini's whole answers were fixed in 64D).
        guard let reason = choice["finish_reason"]?.stringValue, !reason.isEmpty else { return [.error(.upstreamTruncated(whole: true))] }
        events.append(.finish(FinishReason(rawValue: reason)))
        if let usage = Usage(openAI: json["usage"]) { events.append(.usage(usage)) }
        return events
    }

    public func error(status: Int, body: [UInt8], headers: [(String, String)], provider: String, redactor: Redactor) -> APIError {
        OpenAIErrors.map(status: status, body: body, headers: headers, provider: provider, redactor: redactor)
    }

    public func meaningOfStatus(_ status: Int, body: [UInt8]) -> Int { OpenAIErrors.meaningOfStatus(status, body: body) }

    /// An `error` object an upstream put inside its stream, as the error our client sees
    /// (trimmed, redacted).
    public static func streamError(_ error: JSONValue, redactor: Redactor) -> APIError {
        OpenAIErrors.streamError(error, redactor: redactor)
    }

    /// The error of an event named `error` (llama.cpp's `error:` line is one: `SSEDecoder`).
    public static func namedEventError(_ data: UnsafeRawBufferPointer) -> JSONValue { OpenAIErrors.namedEventError(data) }

    /// A choice's own failure (`OpenAIErrors.choiceError`).
    public static func choiceError(error: JSONValue?, finishReason: String?) -> JSONValue? {
        OpenAIErrors.choiceError(error: error, finishReason: finishReason)
    }

    /// Whether a choice's `finish_reason` says its answer failed (the rule `choiceError` applies).
    public static func finishIsFailure(_ reason: String) -> Bool { OpenAIErrors.finishIsFailure(reason) }
}

/// What one `chat.completion.chunk` carries, as events.
enum OpenAIChunk {
    /// OpenRouter's `reasoning_details` in Anthropic's format (Claude's thinking through it): a
    /// signature ends the thinking block the `reasoning` text streamed, an encrypted entry is a
    /// redacted block, so a Responses or Messages client gets them to send back, as from
    /// Anthropic's own API (review 52A #1: dropped, a tool loop lost them). Entries of other
    /// formats (Gemini's, OpenAI's) have no neutral form yet and are left out. Read only when
    /// present (reasoning models' chunks, not every token).
    static func signedReasoning(_ details: JSONValue, state: inout StreamState, emit: (ModelEvent) -> Void) {
        guard case .array(let entries) = details else { return }
        for entry in entries where entry["format"]?.stringValue == ReasoningDetail.format {
            switch entry["type"]?.stringValue {
            case "reasoning.text"?:
                // A block's text comes as `reasoning` too (OpenRouter sends both; this gateway's
                // chat output repeats it whole beside the signature): then it is not read twice.
                if !state.blockTextFromField, let text = entry["text"]?.stringValue, !text.isEmpty { emit(.reasoning(text)) }
                if let signature = entry["signature"]?.stringValue, !signature.isEmpty {
                    emit(.reasoningSignature(signature))
                    state.blockTextFromField = false
                }
            case "reasoning.encrypted"?:
                if let data = entry["data"]?.stringValue, !data.isEmpty { emit(.redactedReasoning(data)) }
                state.blockTextFromField = false
            default:
                break
            }
        }
    }

    /// What one stream's chunks leave for the next.
    struct StreamState {
        /// Choice 0 has shown up (see `events`).
        var sawChoiceZero = false
        /// The thinking block being streamed got its text from `reasoning` fields, not from its
        /// `reasoning_details` entries (see `signedReasoning`).
        var blockTextFromField = false
    }

    /// The events of one chunk, in the order a client would show them. Read through a
    /// `JSONView`: runs on every token of every inner call, and only these few members matter.
    ///
    /// The answer is choice 0, as for a client that asked for one (review 52A #8: a server
    /// sending another merged it into the text). A choice numbered otherwise is read only until
    /// choice 0 has shown up (`sawChoiceZero`, kept by the stream), so a server that numbers
    /// its only choice 1 is still read.
    static func events(_ chunk: JSONView, redactor: Redactor, state: inout StreamState, emit: (ModelEvent) -> Void) {
        // One pass per object; for duplicate keys the last wins, as in a parsed tree.
        var error: Range<Int>?, choices: Range<Int>?, usage: Range<Int>?
        chunk.forEachMember(in: chunk.root) { key, value in
            if key.matches("choices") { choices = value } else if key.matches("usage") { usage = value } else if key.matches("error") { error = value }
        }
        if let error, !chunk.isNull(error) {
            emit(.error(OpenAIErrors.streamError(chunk.value(error), redactor: redactor)))
            return
        }
        choice: if let choice = choices.flatMap({ Self.choice(in: chunk, $0) }) {
            var delta: Range<Int>?, finishReason: Range<Int>?, choiceError: Range<Int>?, index: Range<Int>?
            chunk.forEachMember(in: choice) { key, value in
                if key.matches("delta") {
                    delta = value
                } else if key.matches("finish_reason") {
                    finishReason = value
                } else if key.matches("error") {
                    choiceError = value
                } else if key.matches("index") {
                    index = value
                }
            }
            if let index, let number = chunk.value(index).intValue {
                if number == 0 { state.sawChoiceZero = true } else if state.sawChoiceZero { break choice }
            }
            if choiceError != nil || finishReason != nil,
               let error = OpenAIErrors.choiceError(error: choiceError.map(chunk.value), finishReason: finishReason.flatMap(chunk.string)) {
                emit(.error(OpenAIErrors.streamError(error, redactor: redactor)))
                return
            }
            if let delta {
                var reasoning: Range<Int>?, reasoningContent: Range<Int>?, content: Range<Int>?, toolCalls: Range<Int>?, refusal: Range<Int>?
                var details: Range<Int>?
                chunk.forEachMember(in: delta) { key, value in
                    if key.matches("content") {
                        content = value
                    } else if key.matches("reasoning") {
                        reasoning = value
                    } else if key.matches("reasoning_content") {
                        reasoningContent = value
                    } else if key.matches("reasoning_details") {
                        details = value
                    } else if key.matches("tool_calls") {
                        toolCalls = value
                    } else if key.matches("refusal") {
                        refusal = value
                    }
                }
                if let thinking = reasoning ?? reasoningContent, let text = chunk.string(thinking), !text.isEmpty {
                    emit(.reasoning(text))
                    state.blockTextFromField = true
                }
                if let details { signedReasoning(chunk.value(details), state: &state, emit: emit) }
                if let content {
                    if let text = chunk.string(content) {
                        if !text.isEmpty { emit(.text(text)) }
                    } else if !chunk.isNull(content) {
                        contentParts(chunk.value(content), emit: emit)
                    }
                }
                if let refusal, let text = chunk.string(refusal), !text.isEmpty { emit(.refusal(text)) }
                if let toolCalls, case .array(let list) = chunk.value(toolCalls) {
                    for (position, call) in list.enumerated() {
                        // Beyond the calls any answer makes (Anthropic's and Gemini's decoders stop
                        // at the same count): an error, not fragments merged into another call.
                        if let refusal = Self.indexRefusal(call) {
                            emit(.error(refusal))
                            return
                        }
                        emit(.toolCall(fragment(call, position: position)))
                    }
                }
            }
            // An empty one is none: SGLang and Ollama's OpenAI endpoint send `""` on every chunk
            // (review 72A #1).
            if let finishReason, let text = chunk.string(finishReason), !text.isEmpty { emit(.finish(FinishReason(rawValue: text))) }
        }
        if let usage = usage.flatMap({ Usage(openAI: chunk.value($0)) }) { emit(.usage(usage)) }
    }

    /// The choice of a chunk's `choices` to read: the only one (not walked twice, the usual
    /// case), else the one whose `index` is 0, else the first.
    /// The index of the choice `events` reads in `chunk` (nil: none, or no number).
    static func choiceIndex(in chunk: JSONView) -> Int64? {
        guard let choices = chunk.member("choices", in: chunk.root), let choice = choice(in: chunk, choices) else { return nil }
        return chunk.member("index", in: choice).flatMap { chunk.value($0).intValue }
    }

    static func choice(in chunk: JSONView, _ choices: Range<Int>) -> Range<Int>? {
        guard let first = chunk.firstElement(in: choices) else { return nil }
        guard chunk.element(after: first) != nil else { return first }
        var element: Range<Int>? = first
        while let candidate = element {
            if chunk.member("index", in: candidate).flatMap({ chunk.value($0).intValue }) == 0 { return candidate }
            element = chunk.element(after: candidate)
        }
        return first
    }

    static let maxToolCallIndex: Int64 = 1023

    /// `content` as a list of parts, as Mistral's reasoning models send it (streamed and whole:
    /// `[{"type":"thinking","thinking":[{"type":"text","text":…}]},{"type":"text","text":…}]`):
    /// text parts are the answer, thinking parts its reasoning (review 71C #1: the whole answer
    /// was dropped, and the empty one ended complete). Other parts carry nothing a client reads.
    static func contentParts(_ content: JSONValue, emit: (ModelEvent) -> Void) {
        guard let parts = content.arrayValue else { return }
        for part in parts {
            switch part["type"]?.stringValue {
            case "text"?:
                if let text = part["text"]?.stringValue, !text.isEmpty { emit(.text(text)) }
            case "thinking"?:
                let thinking = part["thinking"]
                let text = thinking?.stringValue ?? (thinking?.arrayValue ?? []).compactMap { $0["text"]?.stringValue }.joined()
                if !text.isEmpty { emit(.reasoning(text)) }
            default:
                break
            }
        }
    }

    /// A call's `index` that is there but is no integer within the calls read: the stream's
    /// error. Beyond the calls any answer makes (Anthropic's and Gemini's decoders stop at the
    /// same count), or unreadable (`1.5`, `"1"`, 2^64: review 71B #2, read as absent they put
    /// one call's fragments into another), never fragments attached to a call by position.
    static func indexRefusal(_ call: JSONValue) -> APIError? {
        guard let raw = call["index"], raw != .null else { return nil }
        guard let index = raw.intValue else {
            return .upstreamProtocol("The upstream sent a tool call whose index is not an integer (\(JSONWriting.compact(raw).shortened(toBytes: 40))).")
        }
        guard (0...maxToolCallIndex).contains(index) else {
            return .upstreamProtocol("The upstream sent a tool call with index \(index): at most \(maxToolCallIndex + 1) calls are read.")
        }
        return nil
    }

    static func fragment(_ call: JSONValue, position: Int) -> ToolCallFragment {
        // An index out of any sane range is taken as the call's position (never trusted as an Int).
        let index = call["index"]?.intValue.flatMap { (0...maxToolCallIndex).contains($0) ? Int($0) : nil } ?? position
        // The arguments are a JSON text; a server that sends them as JSON itself (an object) is
        // read as that object's text rather than dropped.
        let arguments = call["function"]?["arguments"].flatMap { $0 == .null ? nil : $0.stringValue ?? JSONWriting.compact($0) }
        return ToolCallFragment(index: index, id: call["id"]?.stringValue, name: call["function"]?["name"]?.stringValue, arguments: arguments)
    }
}
