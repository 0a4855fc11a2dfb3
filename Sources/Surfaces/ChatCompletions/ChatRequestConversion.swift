import Fusion
import GatewayCore
import Providers

extension ChatRequest {
    /// The fields `modelRequest()` models; every other field is carried in `extraFields`.
    static let modeledFields: Set<String> = [
        "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "stop", "response_format", "reasoning", "stream", "stream_options", "models", "user",
    ]

    /// The members whose objects a translation writes as the client wrote them (made once: an
    /// array literal allocates on every request).
    static let verbatimKeys: [StaticString] = ["tools", "response_format"]

    /// The request in neutral form. `model` is the slug as the client named it; server tools
    /// (`{"type": "fusion"}`) and tool choices other than the standard ones are kept as they are.
    public func modelRequest() -> ModelRequest {
        let fields = json.objectValue ?? [:]
        var request = ModelRequest(model: model, messages: Self.conversation(fields["messages"]?.arrayValue ?? []), stream: stream)
        request.includeUsage = asksForUsage
        request.clientBody = ClientBody(rawBody, keys: Self.verbatimKeys)
        request.tools = (fields["tools"]?.arrayValue ?? []).map(Self.tool)
        switch fields["tool_choice"] {
        case .string("auto")?: request.toolChoice = .auto
        case .string("none")?: request.toolChoice = ToolChoice.none
        case .string("required")?: request.toolChoice = .required
        case let choice? where choice["type"]?.stringValue == "function" && choice["function"]?["name"]?.stringValue != nil:
            request.toolChoice = .function(choice["function"]!["name"]!.stringValue!)
        case let choice? where FusionPlan.toolTypes.contains(choice["type"]?.stringValue ?? ""):
            // `{"type": "openrouter:fusion"}`, as on Responses: the fusion tool, which the outer
            // model sees as the function named `fusion`.
            request.toolChoice = .function(FusionPlan.toolName)
        default: break
        }
        request.parallelToolCalls = fields["parallel_tool_calls"]?.boolValue
        request.user = fields["user"]?.stringValue
        request.maxOutputTokens = fields["max_completion_tokens"]?.intValue ?? fields["max_tokens"]?.intValue
        request.temperature = fields["temperature"]?.doubleValue
        request.topP = fields["top_p"]?.doubleValue
        switch fields["stop"] {
        case .string(let stop)?: request.stop = [stop]
        case .array(let items)?: request.stop = items.compactMap(\.stringValue)
        default: break
        }
        if let format = fields["response_format"], format != .null { request.responseFormat = format }
        if let reasoning = fields["reasoning"]?.objectValue {
            request.reasoning = ModelRequest.Reasoning(effort: reasoning["effort"]?.stringValue,
                                                       maxTokens: reasoning["max_tokens"]?.intValue,
                                                       exclude: reasoning["exclude"]?.boolValue, enabled: reasoning["enabled"]?.boolValue)
        }
        // OpenAI's own `reasoning_effort` asks other providers to think too (and goes to
        // OpenAI-compatible upstreams as it is, in `extraFields`).
        if request.reasoning == nil, let effort = fields["reasoning_effort"]?.stringValue {
            request.reasoning = ModelRequest.Reasoning(effort: effort)
        }
        for (key, value) in fields where !Self.modeledFields.contains(key) { request.extraFields[key] = value }
        if case .object(let choice)? = fields["tool_choice"], request.toolChoice == nil { request.extraFields["tool_choice"] = .object(choice) }
        return request
    }

    /// Whether the client asked for Fusion's named events (`stream_options.include_fusion_events`).
    public func includeFusionEvents() throws(APIError) -> Bool {
        guard let flag = json["stream_options"]?["include_fusion_events"], flag != .null else { return false }
        guard let value = flag.boolValue else {
            throw .invalidRequest("'stream_options.include_fusion_events' must be a boolean.", param: "stream_options.include_fusion_events")
        }
        return value
    }

    /// The messages in neutral form, each assistant turn's fusion records (`FusionCallRecord`)
    /// restored as calls of that turn answered by the tool messages right after it.
    static func conversation(_ messages: [JSONValue]) -> [ModelMessage] {
        var conversation: [ModelMessage] = []
        for (position, json) in messages.enumerated() {
            var message = message(json)
            let results = FusionCallRecord.restore(&message, from: json, position: position)
            conversation.append(message)
            conversation += results
        }
        return conversation
    }

    static func message(_ json: JSONValue) -> ModelMessage {
        let role: ModelMessage.Role
        switch json["role"]?.stringValue {
        case "system": role = .system
        case "developer": role = .developer
        case "assistant": role = .assistant
        case "tool", "function": role = .tool
        default: role = .user
        }
        var content: [ContentPart] = []
        switch json["content"] {
        case .string(let text)?:
            content = text.isEmpty ? [] : [.text(text)]
        case .array(let parts)?:
            content = parts.flatMap { part -> [ContentPart] in
                switch part["type"]?.stringValue {
                case "text"?:
                    // OpenRouter's form of Anthropic's prompt caching: a breakpoint on the part.
                    let text = ContentPart.text(part["text"]?.stringValue ?? "")
                    guard let control = ContentPart.cacheControl(of: part) else { return [text] }
                    return [text, .cacheBreakpoint(control)]
                case "image_url"?:
                    let image = part["image_url"]
                    if let url = image?["url"]?.stringValue ?? image?.stringValue {
                        return [.image(url: url, detail: image?["detail"]?.stringValue)]
                    }
                    return [.other(part)]
                default:
                    return [.other(part)]
                }
            }
        default:
            break
        }
        let toolCalls = (json["tool_calls"]?.arrayValue ?? []).enumerated().map { position, call in
            if call["type"]?.stringValue == "custom" {
                return ToolCall(index: position, id: call["id"]?.stringValue ?? "", name: call["custom"]?["name"]?.stringValue ?? "",
                                arguments: call["custom"]?["input"]?.stringValue ?? "", isCustom: true)
            }
            return ToolCall(index: position, id: call["id"]?.stringValue ?? "", name: call["function"]?["name"]?.stringValue ?? "",
                            arguments: call["function"]?["arguments"]?.stringValue ?? "")
        }
        return ModelMessage(role: role, content: content, toolCalls: toolCalls, toolCallID: json["tool_call_id"]?.stringValue,
                            name: json["name"]?.stringValue,
                            reasoning: role == .assistant ? ReasoningDetail.blocks(json["reasoning_details"]) : [])
    }

    static func tool(_ json: JSONValue) -> ToolDefinition {
        guard json["type"]?.stringValue == "function", let function = json["function"], let name = function["name"]?.stringValue else {
            return .other(json)
        }
        // `cache_control` beside `function`: an Anthropic cache breakpoint, as LiteLLM's clients write it.
        return .function(name: name, description: function["description"]?.stringValue, parameters: function["parameters"],
                         strict: function["strict"]?.boolValue, cacheControl: ContentPart.cacheControl(of: json))
    }
}
