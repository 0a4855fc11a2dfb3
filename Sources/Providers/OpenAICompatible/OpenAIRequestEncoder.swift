import GatewayCore

/// `ModelRequest` ↔ OpenAI's chat completions request body.
public enum OpenAIRequestEncoder {
    /// The body for an OpenAI-compatible upstream.
    public static func body(_ request: ModelRequest, maxTokensField: ProviderEndpoint.MaxTokensField = .maxTokens) -> [UInt8] {
        json(request, maxTokensField: maxTokensField).serialized()
    }

    public static func json(_ request: ModelRequest, maxTokensField: ProviderEndpoint.MaxTokensField = .maxTokens) -> JSONValue {
        var body = request.extraFieldsFormat == .openAIChat ? request.extraFields : [:]
        body["model"] = .string(request.model)
        body["messages"] = .array(request.messages.map(message))
        body["stream"] = .bool(request.stream)
        if request.stream && request.includeUsage { body["stream_options"] = .object(["include_usage": .bool(true)]) }
        if !request.tools.isEmpty { body["tools"] = .array(request.tools.map(tool)) }
        if let choice = request.toolChoice { body["tool_choice"] = toolChoice(choice) }
        if let parallel = request.parallelToolCalls { body["parallel_tool_calls"] = .bool(parallel) }
        if let limit = request.maxOutputTokens { body[maxTokensField.rawValue] = .int(limit) }
        if let temperature = request.temperature { body["temperature"] = .double(temperature) }
        if let topP = request.topP { body["top_p"] = .double(topP) }
        if !request.stop.isEmpty { body["stop"] = .array(request.stop.map(JSONValue.string)) }
        if let format = request.responseFormat { body["response_format"] = format }
        if let reasoning = request.reasoning {
            var object: [String: JSONValue] = [:]
            if let effort = reasoning.effort { object["effort"] = .string(effort) }
            if let tokens = reasoning.maxTokens { object["max_tokens"] = .int(tokens) }
            if let exclude = reasoning.exclude { object["exclude"] = .bool(exclude) }
            body["reasoning"] = .object(object)
        }
        return .object(body)
    }

    static func message(_ message: ModelMessage) -> JSONValue {
        var object: [String: JSONValue] = ["role": .string(message.role.rawValue)]
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
        }
    }

    static func tool(_ tool: ToolDefinition) -> JSONValue {
        switch tool {
        case .function(let name, let description, let parameters, let strict):
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
