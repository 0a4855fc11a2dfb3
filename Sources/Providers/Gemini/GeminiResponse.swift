import GatewayCore

/// One Gemini response as events: each streamed chunk is a whole `GenerateContentResponse`
/// (incremental parts, running usage), and so is a non-streamed body. The stream decoder and
/// `decodeResponse` share this reader.
///
/// - Text parts → `.text`, `thought: true` parts → `.reasoning`; empty parts (a signature
///   alone) are skipped, and so are the `thoughtSignature`s themselves (see
///   `GeminiRequestEncoder` for how replayed calls are signed). Other parts (code execution,
///   inline media output) have no neutral form.
/// - A `functionCall` arrives whole: one `.toolCall` fragment with the call's `id` (or one made
///   from the response id and the call's ordinal when an older model sends none; unique in the
///   response: `UniqueToolCallIDs`) and its `args`
///   as compact JSON.
/// - `finishReason` → `.finish` (see `finishReason(_:sawToolCalls:)`), then `.usage` once, from
///   the last `usageMetadata` seen (each chunk's is a running total: never summed). A prompt
///   blocked before any candidate is `content_filter`. Chunks after the finish are ignored.
/// - An `error` object (a `data:` chunk or raw JSON) → `.error`, ending the stream.
/// - A response that fails after its answer began (an error finish such as
///   `MALFORMED_FUNCTION_CALL` after thought parts, or a stream cut off) gives the usage read so
///   far before its end: Google bills those tokens, and the record and the key's budget were
///   charged an estimate (review 59A #2). One that fails before any answer gives none: it is
///   retried or falls back, and a failed attempt's counts are not the answer's.
struct GeminiResponseReader {
    static let maxToolCalls = 1024
    let redactor: Redactor
    /// A finish reason or an error arrived: the response is complete.
    private(set) var ended = false
    /// A candidate, a blocked prompt or an error was read: the response said something.
    private(set) var answered = false
    /// Candidates came, none of them the first (another `index`, or one that is no number).
    private(set) var onlyOtherCandidates = false
    private var toolCalls = 0
    private var ids = UniqueToolCallIDs()
    private var usage: Usage?
    /// A text, reasoning or call event was emitted: the answer began.
    private var began = false
    /// What call ids are made from when the response has no id.
    private var fallbackResponseID: String?
    /// The first `responseId` read, for the record.
    private(set) var upstreamID: String?

    init(redactor: Redactor) { self.redactor = redactor }

    mutating func read(_ response: JSONValue, emit: (ModelEvent) -> Void) throws(StreamDecodingError) {
        guard !ended else { return }
        // Google's error in its array form (`[{"error":{…}}]`), as its HTTP errors come: read as
        // the object (review 64D #6: a protocol error without the upstream's message).
        if case .array(let elements) = response, elements.count == 1, let error = elements[0]["error"], error != .null {
            return try read(elements[0], emit: emit)
        }
        guard case .object = response else { throw StreamDecodingError("the upstream sent a chunk that is not a JSON object") }
        if let error = response["error"], error != .null {
            (ended, answered) = (true, true)
            // The answer's tokens so far are billed, as before an error finish (review 119 #6).
            if began, let usage { emit(.usage(usage)) }
            emit(.error(GeminiErrors.streamError(error, redactor: redactor)))
            return
        }
        if upstreamID == nil, let id = response["responseId"]?.stringValue {
            upstreamID = UpstreamIdentifier.sanitized(id, redactor: redactor)
        }
        if let metadata = response["usageMetadata"], case .object = metadata, Self.hasCount(metadata) { usage = Self.usage(metadata) }
        // The one candidate asked for (`n` > 1 is refused): index 0, or none said. Another
        // index is no part of this answer (review 98 #1: a second candidate's text was shown as
        // the answer, and the first one's lost when it came second in a chunk).
        guard let candidate = response["candidates"]?.arrayValue?.first(where: Self.isTheFirst) else {
            // No first candidate, but one whose index is no integer (`"0"`, `0.5`): the
            // upstream's broken stream, not text to drop without a word (review 119 #9).
            if response["candidates"]?.arrayValue?.contains(where: { ($0["index"] ?? .null) != .null && $0["index"]?.intValue == nil }) == true {
                throw StreamDecodingError("the upstream sent a candidate whose index is not an integer")
            }
            if response["candidates"]?.arrayValue?.contains(where: { if case .object = $0 { true } else { false } }) == true {
                onlyOtherCandidates = true  // `null` entries are no candidates (review 104 #8)
            }
            if response["promptFeedback"]?["blockReason"]?.stringValue != nil {
                answered = true
                finish(.contentFilter, emit: emit)
            }
            return
        }
        answered = true
        // A part is one of text or a call; one carrying both (never Gemini's own) loses neither:
        // its text, then its call (review 98 #2).
        for part in candidate["content"]?["parts"]?.arrayValue ?? [] {
            if let text = part["text"]?.stringValue, !text.isEmpty {
                emit(part["thought"]?.boolValue == true ? .reasoning(text) : .text(text))
                began = true
            }
            if let call = part["functionCall"], case .object = call {
                try toolCall(call, responseID: response["responseId"]?.stringValue, emit: emit)
                began = true
            }
        }
        if let reason = candidate["finishReason"]?.stringValue {
            if let stop = Self.errorFinish(reason) {
                ended = true
                if began, let usage { emit(.usage(usage)) }
                let said = candidate["finishMessage"]?.stringValue.map { ": \($0)" } ?? ""
                emit(.error(UpstreamErrors.streamError(status: 502, report: .init(message: reason + said, code: stop), redactor: redactor)))
                return
            }
            // Gemini 2.5's known empty answer: a candidate with no content that says `STOP`. The
            // upstream's failure (retried, passed to `models`), streamed and whole, never an empty
            // completed answer (review 71C #13; other providers' empty `stop` is theirs to mean).
            if reason == "STOP" && !began {
                ended = true
                emit(.error(.upstreamProtocol("the upstream's answer is empty (a candidate with no content that says STOP)")))
                return
            }
            finish(Self.finishReason(reason, sawToolCalls: toolCalls > 0), emit: emit)
        }
    }

    /// A candidate whose `index` is 0, or absent (Gemini leaves it out of some chunks).
    private static func isTheFirst(_ candidate: JSONValue) -> Bool {
        guard case .object = candidate else { return false }  // `null` is no candidate (review 102 #3)
        guard let index = candidate["index"], index != .null else { return true }
        return index.intValue == 0
    }

    /// The body ended without a finish or an error: the usage so far, once the answer began
    /// (the stream is still cut short).
    mutating func bodyEnded(emit: (ModelEvent) -> Void) {
        guard !ended, began, let usage else { return }
        self.usage = nil
        emit(.usage(usage))
    }

    private mutating func finish(_ reason: FinishReason, emit: (ModelEvent) -> Void) {
        ended = true
        emit(.finish(reason))
        if let usage { emit(.usage(usage)) }
    }

    private mutating func toolCall(_ call: JSONValue, responseID: String?, emit: (ModelEvent) -> Void) throws(StreamDecodingError) {
        guard let name = call["name"]?.stringValue, !name.isEmpty else {
            throw StreamDecodingError("the upstream sent a functionCall without a name")
        }
        guard toolCalls < Self.maxToolCalls else { throw StreamDecodingError("the upstream sent more than \(Self.maxToolCalls) tool calls") }
        // Without a response id (proxies, older deployments), one random per response: the
        // same ids on every turn made a conversation repeat a call id (review 77A #4).
        var madeFrom = responseID.flatMap { $0.isEmpty ? nil : $0 }
        if madeFrom == nil {
            if fallbackResponseID == nil { fallbackResponseID = String(UInt64.random(in: .min ... .max), radix: 16) }
            madeFrom = fallbackResponseID
        }
        let madeID = Self.callID(responseID: madeFrom, ordinal: toolCalls)
        let id = ids.claim(call["id"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? madeID)
        // A call's arguments are an object (absent or null: none); anything else no client's API
        // can carry as a call (Anthropic's `input` must be an object too).
        let args = call["args"] ?? .null
        guard args == .null || args.objectValue != nil else {
            throw StreamDecodingError("the upstream sent a functionCall whose args are not an object")
        }
        emit(.toolCall(ToolCallFragment(index: toolCalls, id: id, name: name, arguments: JSONWriting.compact(args == .null ? .object([:]) : args))))
        toolCalls += 1
    }

    /// An id for a call the model gave none (Gemini 2.5 and older): unique across responses
    /// (the response id is), so a client can answer each call by it. Only identifier characters
    /// of the response id are kept.
    static func callID(responseID: String?, ordinal: Int) -> String {
        var id = "call_"
        id.unicodeScalars.append(contentsOf: (responseID ?? "").unicodeScalars.lazy.filter { scalar in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "_" || scalar == "-")
        }.prefix(64))
        return id + "_\(ordinal)"
    }

    /// `finishReason` in OpenAI's vocabulary. `STOP` is also what Gemini says after function
    /// calls: `tool_calls` then. Safety and policy stops are `content_filter`; running out of
    /// tokens (also `CONTINUATION`, a per-request limit) is `length`; `OTHER`,
    /// `TOO_MANY_TOOL_CALLS`, image-generation stops and values yet to come read as `stop`.
    static func finishReason(_ reason: String, sawToolCalls: Bool) -> FinishReason {
        switch reason {
        case "STOP": sawToolCalls ? .toolCalls : .stop
        case "MAX_TOKENS", "CONTINUATION": .length
        case "SAFETY", "RECITATION", "LANGUAGE", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
             "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "ESCALATION", "PUP_LIMITED_DISABLED", "MODEL_ARMOR": .contentFilter
        default: .stop
        }
    }

    /// Finish reasons that say the response is broken rather than finished (a malformed or
    /// undeclared call, a signature the gateway failed to send): an error with this code.
    static func errorFinish(_ reason: String) -> String? {
        switch reason {
        case "MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "MISSING_THOUGHT_SIGNATURE", "MALFORMED_RESPONSE": reason.lowercased()
        default: nil
        }
    }

    /// A usage that is a measurement: some count, and every count there a number of at least 0.
    /// A negative or non-numeric one makes it none, so the call is estimated, not recorded as a
    /// measured 0 (review 119 #3, as Anthropic's reader does: review 98 #6).
    static func hasCount(_ metadata: JSONValue) -> Bool {
        let fields = ["promptTokenCount", "candidatesTokenCount", "totalTokenCount", "thoughtsTokenCount", "toolUsePromptTokenCount",
                      "cachedContentTokenCount"]
        let present = fields.compactMap { field in metadata[field].flatMap { $0 == .null ? nil : $0 } }
        return !present.isEmpty && present.allSatisfy { ($0.doubleValue ?? -1) >= 0 }
    }

    /// `usageMetadata`: the prompt includes tool-use prompt tokens; the completion is candidates
    /// plus thoughts (`candidatesTokenCount` excludes thoughts; OpenAI's completion includes
    /// reasoning); cached tokens are part of the prompt. The total is their sum, as Gemini's
    /// `totalTokenCount` is by definition: an upstream's own figure could disagree with the
    /// counts it clamps to (a negative prompt, an overflowing total).
    static func usage(_ metadata: JSONValue) -> Usage {
        let prompt = Usage.saturatingAdd(Usage.count(metadata["promptTokenCount"]), Usage.count(metadata["toolUsePromptTokenCount"]))
        let thoughts = Usage.count(metadata["thoughtsTokenCount"])
        let completion = Usage.saturatingAdd(Usage.count(metadata["candidatesTokenCount"]), thoughts)
        return Usage(promptTokens: prompt, completionTokens: completion,
                     totalTokens: Usage.saturatingAdd(prompt, completion),
                     reasoningTokens: thoughts, cachedTokens: min(Usage.count(metadata["cachedContentTokenCount"]), prompt))
    }
}
