import GatewayCore

/// `ModelRequest` ↔ OpenAI's chat completions request body.
public enum OpenAIRequestEncoder {
    /// The body for an OpenAI-compatible upstream: the bytes of `json(...).serialized()`,
    /// written without the tree for the messages (whole prompts: the judge's holds every panel
    /// answer), since this runs as every inner call starts, on its way to the upstream.
    public static func body(_ request: ModelRequest, maxTokensField: ProviderEndpoint.MaxTokensField = .maxTokens,
                            reasoningField: ProviderEndpoint.ReasoningField = .object, streamUsage: Bool = true) -> [UInt8] {
        let members = fields(request, maxTokensField: maxTokensField, reasoningField: reasoningField, streamUsage: streamUsage)
        var out: [UInt8] = []
        out.reserveCapacity(256 + request.messages.reduce(0) { $0 + $1.content.count * 64 + 48 })
        out.append(UInt8(ascii: "{"))
        // Keys in UTF-8 byte order, as `serialized()` writes them.
        let keys = (Array(members.keys) + ["messages"]).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        let verbatim = request.verbatim
        for (position, key) in keys.enumerated() {
            if position > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriting.appendString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            if let value = members[key] {
                // The client's bytes only where schemas are (review 76 #1: never the messages).
                JSONWriting.appendValue(value, verbatim: key == "tools" || key == "response_format" ? verbatim : nil, to: &out)
            } else {
                out.append(UInt8(ascii: "["))
                for (index, message) in chatMessages(request.messages).enumerated() {
                    if index > 0 { out.append(UInt8(ascii: ",")) }
                    appendMessage(message, reasoningDetails: reasoningField == .object, to: &out)
                }
                out.append(UInt8(ascii: "]"))
            }
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    public static func json(_ request: ModelRequest, maxTokensField: ProviderEndpoint.MaxTokensField = .maxTokens,
                            reasoningField: ProviderEndpoint.ReasoningField = .object) -> JSONValue {
        var body = fields(request, maxTokensField: maxTokensField, reasoningField: reasoningField)
        body["messages"] = .array(chatMessages(request.messages).map { message($0, reasoningDetails: reasoningField == .object) })
        return .object(body)
    }

    /// The conversation as chat takes it: a tool message's content is text only (OpenAI's API
    /// refuses other parts there), so a tool result's images and files (an Anthropic or Responses
    /// client's screenshot tool) go in a user message right after that turn's results, each
    /// introduced by the call it came from, rather than being dropped. Most requests have none:
    /// the messages are returned as they are. Anthropic's own blocks (a Messages client's server
    /// tools) become their text or are left out, and cache breakpoints are left out
    /// (`ModelMessage.portable`).
    public static func chatMessages(_ messages: [ModelMessage]) -> [ModelMessage] {
        func isMedia(_ part: ContentPart) -> Bool { if case .text = part { false } else { true } }
        guard messages.contains(where: { ($0.role == .tool || $0.role == .assistant) && $0.content.contains(where: isMedia) }) else {
            return messages.map(\.portable)  // cache breakpoints may stand in any message
        }
        var result: [ModelMessage] = []
        var media: [ContentPart] = []
        for message in messages.map(\.portable) {
            if message.role != .tool && !media.isEmpty {
                result.append(ModelMessage(role: .user, content: media))
                media.removeAll()
            }
            guard message.role == .tool, message.content.contains(where: isMedia) else {
                result.append(message)
                continue
            }
            var text = message
            text.content = message.content.filter { !isMedia($0) }
            result.append(text)
            media.append(.text("Attached to the result of tool call \(message.toolCallID ?? "?"):"))
            media += message.content.filter(isMedia)
        }
        if !media.isEmpty { result.append(ModelMessage(role: .user, content: media)) }
        return result
    }

    /// Every member of the body but `messages`.
    private static func fields(_ request: ModelRequest, maxTokensField: ProviderEndpoint.MaxTokensField,
                               reasoningField: ProviderEndpoint.ReasoningField, streamUsage: Bool = true) -> [String: JSONValue] {
        var body = request.extraFieldsFormat == .openAIChat ? request.extraFields : [:]
        body["messages"] = nil
        body["model"] = .string(request.model)
        body["stream"] = .bool(request.stream)
        // Always: the gateway accounts every completion, whether its client asked for usage or not
        // (`includeUsage` is the client's wish, honoured by the relay).
        if request.stream && streamUsage { body["stream_options"] = .object(["include_usage": .bool(true)]) }
        if !request.tools.isEmpty { body["tools"] = .array(request.tools.map(tool)) }
        if let choice = request.toolChoice { body["tool_choice"] = toolChoice(choice) }
        if let parallel = request.parallelToolCalls { body["parallel_tool_calls"] = .bool(parallel) }
        if let limit = request.maxOutputTokens { body[maxTokensField.rawValue] = .int(limit) }
        if let temperature = request.temperature { body["temperature"] = .double(temperature) }
        if let topP = request.topP { body["top_p"] = .double(topP) }
        if let user = request.user { body["user"] = .string(user) }
        if !request.stop.isEmpty { body["stop"] = .array(request.stop.map(JSONValue.string)) }
        if let format = request.responseFormat { body["response_format"] = format }
        // A chat client's own `reasoning_effort` (in `extraFields`) speaks for it to its own API.
        if let reasoning = request.reasoning, request.extraFieldsFormat != .openAIChat || request.extraFields["reasoning_effort"] == nil {
            switch reasoningField {
            case .object:
                var object: [String: JSONValue] = [:]
                if let effort = reasoning.effort { object["effort"] = .string(Self.openAIEffort(effort)) }
                if let tokens = reasoning.maxTokens { object["max_tokens"] = .int(tokens) }
                if let exclude = reasoning.exclude { object["exclude"] = .bool(exclude) }
                if let enabled = reasoning.enabled { object["enabled"] = .bool(enabled) }
                body["reasoning"] = .object(object)
            case .effort:
                body["reasoning"] = nil
                if let effort = effort(of: reasoning) { body["reasoning_effort"] = .string(effort) }
            }
        }
        return body
    }

    /// An effort in OpenAI's and OpenRouter's words: Anthropic's `max` (the most) is `high`, the
    /// most every reasoning model there takes.
    static func openAIEffort(_ effort: String) -> String { effort == "max" ? "high" : effort }

    /// `reasoning` as OpenAI's one knob: the effort named, or the one nearest a budget (an
    /// Anthropic client's `budget_tokens`); nil (the model's default) when only "on" or "off"
    /// was said, since a model that cannot reason refuses the field, and not every reasoning
    /// model takes `none`.
    static func effort(of reasoning: ModelRequest.Reasoning) -> String? {
        if let effort = reasoning.effort { return reasoning.enabled == false && effort != "none" ? nil : openAIEffort(effort) }
        guard reasoning.enabled != false, let budget = reasoning.maxTokens else { return nil }
        return budget < 4096 ? "low" : budget < 16384 ? "medium" : "high"
    }

    /// `message(message)` as bytes, its keys in the order `serialized()` sorts them.
    static func appendMessage(_ message: ModelMessage, reasoningDetails: Bool, to out: inout [UInt8]) {
        out.append(contentsOf: #"{"content":"#.utf8)
        if message.content.allSatisfy({ if case .text = $0 { true } else { false } }) {
            JSONWriting.appendString(message.text, to: &out)
        } else {
            JSONWriting.appendValue(.array(message.content.map(part)), to: &out)
        }
        if let name = message.name, message.role != .tool {
            out.append(contentsOf: #","name":"#.utf8)
            JSONWriting.appendString(name, to: &out)
        }
        if reasoningDetails, let details = Self.reasoningDetails(message) {
            out.append(contentsOf: #","reasoning_details":"#.utf8)
            JSONWriting.appendValue(details, to: &out)
        }
        out.append(contentsOf: #","role":"#.utf8)
        JSONWriting.appendString(message.role.rawValue, to: &out)
        if let id = message.toolCallID {
            out.append(contentsOf: #","tool_call_id":"#.utf8)
            JSONWriting.appendString(id, to: &out)
        }
        if !message.toolCalls.isEmpty {
            out.append(contentsOf: #","tool_calls":"#.utf8)
            JSONWriting.appendValue(.array(message.toolCalls.map(\.json)), to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    /// An assistant turn's signed reasoning (Anthropic's thinking blocks, from a Responses or
    /// Messages client, or an outer model's earlier turn) in OpenRouter's `reasoning_details`:
    /// OpenRouter hands them back to the model, which needs them with tools (review 52A #1).
    /// Only where the endpoint speaks OpenRouter's reasoning (`reasoning_field: reasoning`):
    /// OpenAI's API refuses a message member it does not know.
    static func reasoningDetails(_ message: ModelMessage) -> JSONValue? {
        guard message.role == .assistant, !message.reasoning.isEmpty else { return nil }
        return .array(message.reasoning.enumerated().map { ReasoningDetail.json($1, index: $0) })
    }

    static func message(_ message: ModelMessage, reasoningDetails: Bool = false) -> JSONValue {
        var object: [String: JSONValue] = ["role": .string(message.role.rawValue)]
        if reasoningDetails, let details = Self.reasoningDetails(message) { object["reasoning_details"] = details }
        let onlyText = message.content.allSatisfy { if case .text = $0 { true } else { false } }
        if onlyText {
            // An assistant turn that only calls tools gets "" rather than null: some servers
            // (llama.cpp's among them) reject a null content.
            object["content"] = .string(message.text)
        } else {
            object["content"] = .array(message.content.map(part))
        }
        if !message.toolCalls.isEmpty { object["tool_calls"] = .array(message.toolCalls.map(\.json)) }
        if let id = message.toolCallID { object["tool_call_id"] = .string(id) }
        if let name = message.name, message.role != .tool { object["name"] = .string(name) }
        return .object(object)
    }

    static func part(_ part: ContentPart) -> JSONValue {
        switch part {
        case .text(let text):
            return .object(["type": .string("text"), "text": .string(text)])
        case .image(let url, let detail):
            var image: [String: JSONValue] = ["url": .string(url)]
            if let detail { image["detail"] = .string(detail) }
            return .object(["type": .string("image_url"), "image_url": .object(image)])
        case .other(let json):
            return json
        case .providerBlock(let block):  // `chatMessages` made every one text or left it out
            return .object(["type": .string("text"), "text": .string(block["text"]?.stringValue ?? "")])
        case .cacheBreakpoint:  // `chatMessages` left every one out (`portable`)
            return .object(["type": .string("text"), "text": .string("")])
        }
    }

    static func tool(_ tool: ToolDefinition) -> JSONValue {
        switch tool {
        case .function(let name, let description, let parameters, let strict, _):
            var function: [String: JSONValue] = ["name": .string(name)]
            if let description { function["description"] = .string(description) }
            if let parameters { function["parameters"] = parameters }
            if let strict { function["strict"] = .bool(strict) }
            return .object(["type": .string("function"), "function": .object(function)])
        case .other(let json):
            return json
        }
    }

    static func toolChoice(_ choice: ToolChoice) -> JSONValue {
        switch choice {
        case .auto: .string("auto")
        case .none: .string("none")
        case .required: .string("required")
        case .function(let name): .object(["type": .string("function"), "function": .object(["name": .string(name)])])
        }
    }
}
