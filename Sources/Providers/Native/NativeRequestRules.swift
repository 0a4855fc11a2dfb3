import GatewayCore

extension ToolCall {
    /// The arguments as the JSON object native APIs carry (Anthropic's `input`, Gemini's
    /// `args`): "" (a call without arguments) is `{}`; nil when the text is not a JSON object.
    /// Such a call is refused (`Provider.validate`) rather than rewritten: changing what a model
    /// said changes the conversation.
    public var argumentsObject: JSONValue? {
        if arguments.allSatisfy(\.isWhitespace) { return .object([:]) }
        guard let value = try? JSONValue.parse(Array(arguments.utf8)), case .object = value else { return nil }
        return value
    }
}

/// What native APIs (Anthropic, Gemini) need of a neutral request that OpenAI's does not: the
/// rules both providers share, for their `validate` and their encoders.
enum NativeRequestRules {
    /// Reasoning budgets in tokens for OpenAI's effort names. Anthropic's minimum budget is 1024;
    /// `xhigh` stays within what Anthropic and Gemini accept without a beta; `max` (Anthropic's
    /// top effort) is the most of all, 64k (Claude's output limit bounds it upstream).
    static let effortBudgets: [String: Int64] = ["minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768, "max": 65536]
    static let minimumBudget: Int64 = 1024
    /// Bounds a client's `reasoning.max_tokens`, so sums with it cannot overflow.
    static let maximumBudget: Int64 = 1 << 24

    /// The thinking budget `reasoning` asks for: `max_tokens` when given, else the effort's
    /// budget (an unknown effort or none at all counts as `medium`); nil for effort `none`.
    static func thinkingBudget(_ reasoning: ModelRequest.Reasoning?) -> Int64? {
        guard let reasoning, reasoning.effort != "none", reasoning.enabled != false else { return nil }
        let budget = reasoning.maxTokens ?? effortBudgets[reasoning.effort ?? "medium"] ?? effortBudgets["medium"]!
        return min(max(budget, minimumBudget), maximumBudget)
    }

    /// Whether the client said not to reason (effort `none`, `enabled: false`, Anthropic's
    /// `disabled`), as opposed to saying nothing.
    static func thinkingOff(_ reasoning: ModelRequest.Reasoning?) -> Bool {
        reasoning?.effort == "none" || reasoning?.enabled == false
    }

    /// A URL's media type, as its path's extension says (query and fragment aside); nil when
    /// it says none the APIs know.
    static func mediaType(ofURL url: String) -> String? {
        let path = url.split(separator: "#").first.map { $0.split(separator: "?").first ?? $0 } ?? Substring(url)
        switch path.split(separator: "/").last?.split(separator: ".").dropFirst().last?.lowercased() {
        case "png"?: return "image/png"
        case "jpg"?, "jpeg"?: return "image/jpeg"
        case "gif"?: return "image/gif"
        case "webp"?: return "image/webp"
        case "pdf"?: return "application/pdf"
        default: return nil
        }
    }

    /// The inline payload of a part: an image given as a `data:` URI, or an OpenAI `file` part
    /// whose `file_data` is one (PDFs, as clients send them).
    static func inlineData(_ part: ContentPart) -> DataURI? {
        switch part {
        case .image(let url, _): DataURI(url)
        case .other(let json) where json["type"]?.stringValue == "file": json["file"]?["file_data"]?.stringValue.flatMap(DataURI.init)
        default: nil
        }
    }

    /// Refuses what neither native API can take: content parts of other kinds, `data:` URIs that
    /// are not, and tool arguments that are not a JSON object. `accepts` says which inline media
    /// types the API reads.
    /// Several choices (`n` above 1) cannot be asked for, nor log probabilities (neither native
    /// API's answer carries them here): answering without would be a 200 that silently gives
    /// less than was asked. (Sampling fields an API lacks, such as Anthropic's `seed` or
    /// penalties, are left out, as OpenRouter does for providers without them.)
    /// A block of the question only Anthropic's API reads (`ModelMessage.anthropicOnlyInputBlock`).
    static func refuseAnthropicOnlyInput(_ messages: [ModelMessage], api: String) throws(APIError) {
        for (index, message) in messages.enumerated() {
            guard let block = message.anthropicOnlyInputBlock else { continue }
            throw .invalidRequest("Blocks of type '\(block.type)' are read by Anthropic's API only; this model is on \(api).",
                                  param: message.partPath(block.part, at: index))
        }
    }

    static func validateOptions(_ request: ModelRequest, api: String) throws(APIError) {
        guard request.extraFieldsFormat == .openAIChat else { return }
        if let count = request.extraFields["n"]?.intValue, count > 1 {
            throw .invalidRequest("\(api) returns one choice per request; 'n' must be 1 (send several requests instead).", param: "n")
        }
        if request.extraFields["logprobs"]?.boolValue == true {
            throw .invalidRequest("\(api) returns no log probabilities through this gateway; leave 'logprobs' out.", param: "logprobs")
        }
        if let count = request.extraFields["top_logprobs"]?.intValue, count > 0 {
            throw .invalidRequest("\(api) returns no log probabilities through this gateway; leave 'top_logprobs' out.", param: "top_logprobs")
        }
        // Chat's legacy function calling would be dropped (no tools offered, the call optional);
        // OpenAI-compatible upstreams get it as sent (review 49 SDK F2).
        for name in ["functions", "function_call"] where request.extraFields[name].map({ $0 != .null }) == true {
            throw .invalidRequest("\(api) takes tools through 'tools' and 'tool_choice'; '\(name)' is chat's legacy form, not translated.", param: name)
        }
        // A choice the neutral form does not model (OpenAI's `allowed_tools`) would be dropped:
        // every tool offered and the call optional, the opposite of what was asked (review 48
        // surfaces #5).
        if let choice = request.extraFields["tool_choice"], choice != .null {
            throw .invalidRequest("\(api) cannot take the tool choice '\(choice["type"]?.stringValue ?? "?")' through this gateway: "
                                  + "use auto, none, required or one named function (and send only the tools allowed).", param: "tool_choice")
        }
    }

    static func validateMessages(_ messages: [ModelMessage], api: String, accepts: (String) -> Bool) throws(APIError) {
        // Instructions alone: Anthropic refuses an empty `messages` ("at least one message is
        // required") and Gemini an empty `contents`, in words about fields the client never sent
        // (review 107 #6). OpenAI-compatible APIs take it, and get it.
        if let first = messages.first, messages.allSatisfy({ $0.role == .system || $0.role == .developer }) {
            let list = first.origin?.syntax == .responses ? "input" : "messages"
            throw .invalidRequest("\(api) needs a user turn; '\(list)' holds only system instructions.", param: list)
        }
        for (index, message) in messages.enumerated() {
            // These APIs take no empty turn: one without content would be left out, and a question
            // left out makes the answer before it last (Anthropic reads that as a prefill to go
            // on with). Refused instead; a final assistant turn may be empty (a prefill itself).
            let hasContent = !message.toolCalls.isEmpty || message.content.contains { part in
                if case .text(let text) = part { !text.isEmpty } else { true }
            }
            let mayBeEmpty = message.role == .system || message.role == .developer || message.role == .tool
                || (message.role == .assistant && index == messages.count - 1)
            if !hasContent && !mayBeEmpty {
                throw .invalidRequest("\(api) takes no empty turn but the final assistant one; '\(message.path(at: index))' has no content.",
                                      param: message.contentPath(at: index))
            }
            for (partIndex, part) in message.content.enumerated() {
                let path = message.partPath(partIndex, at: index)
                switch part {
                case .text, .providerBlock, .cacheBreakpoint:
                    continue
                case .image(let url, _) where !url.lowercased().hasPrefix("data:"):
                    continue
                case .image, .other:
                    if case .other(let json) = part, json["type"]?.stringValue != "file" {
                        throw .invalidRequest("\(api) cannot take content parts of type '\(json["type"]?.stringValue ?? "?")'.", param: path)
                    }
                    guard let data = inlineData(part) else {
                        throw .invalidRequest("'\(path)' is not a valid base64 data: URI (a file part needs 'file_data' as one).", param: path)
                    }
                    guard accepts(data.mediaType) else {
                        throw .invalidRequest("\(api) cannot take inline data of type '\(data.mediaType)'.", param: path)
                    }
                }
            }
            for (callIndex, call) in message.toolCalls.enumerated() where call.isCustom || call.name.isEmpty {
                // A chat custom tool's call has no form here (review 49 #3).
                throw .invalidRequest(call.isCustom ? "\(api) has no custom tools; this is a custom tool's call."
                                                    : "\(api) takes function tool calls only; this one names no function.",
                                      param: message.callPath(callIndex, at: index))
            }
            for (callIndex, call) in message.toolCalls.enumerated() {
                guard call.argumentsObject != nil else {
                    throw .invalidRequest("\(api) needs tool call arguments that are a JSON object; these are not.",
                                          param: message.argumentsPath(callIndex, at: index))
                }
                // The text becomes a JSON value here (`input`, `args`): read it as strictly as a
                // request body, or `1e999` would reach the upstream as null and a repeated key
                // as its last value (review 59C #6).
                if let ambiguity = strictReadingFails(call.arguments) {
                    throw .invalidRequest("\(api) needs tool call arguments that read one way; these have \(ambiguity).",
                                          param: message.argumentsPath(callIndex, at: index), code: "invalid_tool_arguments")
                }
            }
        }
    }
}

extension NativeRequestRules {
    /// What a strict reading refuses in a call's arguments (a repeated key, a number beyond a
    /// 64-bit float), said for an error message; nil when the text reads one way.
    static func strictReadingFails(_ arguments: String) -> String? {
        if arguments.allSatisfy(\.isWhitespace) { return nil }
        do throws(APIError) {
            _ = try JSONValue.parseRequest(Array(arguments.utf8), refusingCaseVariants: false)
            return nil
        } catch {
            return error.code == "number_out_of_range" ? "a number beyond a 64-bit float"
                : error.code == "duplicate_key" ? "a key twice" : error.code == "too_many_elements" ? "too many elements" : "what JSON readers read differently"
        }
    }
}

extension ModelRequest.Reasoning {
    /// The thinking tokens this asks for, as Anthropic's and Gemini's budgets count them; nil
    /// when it asks for no reasoning.
    public var thinkingBudget: Int64? { NativeRequestRules.thinkingBudget(self) }
}
