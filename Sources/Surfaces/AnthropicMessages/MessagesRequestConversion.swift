import GatewayCore
import Providers

extension MessagesRequest {
    /// The fields `modelRequest()` models; every other one is carried in `extraFields` for an
    /// Anthropic upstream (`metadata` too: its `user_id` is also modelled, as `user`).
    static let modeledFields: Set<String> = [
        "model", "max_tokens", "messages", "system", "stop_sequences", "stream", "temperature", "top_p", "top_k", "tools", "tool_choice",
        "thinking", "stream_options", "models",
    ]

    /// The request in neutral form (`model` as the client named it; server tools, fusion among
    /// them, kept as `.other`).
    ///
    /// - `system` and system turns become system messages; a user turn's `tool_result` blocks
    ///   become tool messages (named after the `tool_use` they answer), in place among its other
    ///   blocks; `tool_use` blocks become the assistant turn's tool calls.
    /// - A PDF document becomes an OpenAI `file` part (a data: URI), a text document text.
    /// - Signed `thinking` and `redacted_thinking` blocks are the assistant turn's reasoning blocks
    ///   (`ReasoningBlock`: an Anthropic upstream gets them back; others have no place for them);
    ///   unsigned thinking is left out. `is_error` is the tool message's `isError` (Anthropic's
    ///   and Gemini's APIs carry it; an OpenAI-format model gets the result's text unchanged).
    /// - `thinking` `enabled` is a reasoning budget, `adaptive` reasoning at
    ///   `output_config.effort` or the provider's default, `disabled` a request not to (`enabled: false`). `tool_choice.disable_parallel_tool_use` is
    ///   `parallelToolCalls: false`.
    /// - `top_k` is `topK` (Gemini's `topK`), `metadata.user_id` is `user` (OpenAI's `user`).
    /// - Usage is always asked for: Anthropic's stream carries it, and clients need it.
    public func modelRequest() -> ModelRequest {
        let fields = json.objectValue ?? [:]
        var messages: [ModelMessage] = []
        if let system = fields["system"], system != .null {
            var message = ModelMessage(role: .system, content: [])
            message.origin = MessageOrigin(.messages, path: "system")
            Self.addParts(system, path: "system", to: &message)
            messages.append(message)
        }
        var toolNames: [String: String] = [:]
        for (index, message) in (fields["messages"]?.arrayValue ?? []).enumerated() {
            messages += Self.messages(message, path: "messages.\(index)", toolNames: &toolNames)
        }
        var request = ModelRequest(model: model, messages: messages, stream: stream)
        request.clientBody = ClientBody(rawBody, keys: ["tools", "output_config"])
        request.includeUsage = true
        request.maxOutputTokens = fields["max_tokens"]?.intValue
        request.temperature = fields["temperature"]?.doubleValue
        request.topP = fields["top_p"]?.doubleValue
        request.topK = fields["top_k"]?.intValue
        request.user = fields["metadata"]?["user_id"]?.stringValue
        request.stop = fields["stop_sequences"]?.arrayValue?.compactMap(\.stringValue) ?? []
        request.tools = (fields["tools"]?.arrayValue ?? []).map(Self.tool)
        if let choice = fields["tool_choice"], choice != .null {
            switch choice["type"]?.stringValue {
            case "auto"?: request.toolChoice = .auto
            case "any"?: request.toolChoice = .required
            case "none"?: request.toolChoice = ToolChoice.none
            case "tool"?: request.toolChoice = .function(choice["name"]?.stringValue ?? "")
            default: break
            }
            if choice["disable_parallel_tool_use"]?.boolValue == true { request.parallelToolCalls = false }
        }
        switch fields["thinking"]?["type"]?.stringValue {
        case "enabled"?: request.reasoning = ModelRequest.Reasoning(maxTokens: fields["thinking"]?["budget_tokens"]?.intValue)
        case "adaptive"?: request.reasoning = ModelRequest.Reasoning(effort: fields["output_config"]?["effort"]?.stringValue)
        case "disabled"?: request.reasoning = ModelRequest.Reasoning(enabled: false)
        default: break
        }
        if let schema = fields["output_config"]?["format"]?["schema"] {
            // Structured output, for a model behind another API (review 48 surfaces #6: dropped,
            // the answer came back as free text). An Anthropic upstream gets `output_config` as sent.
            // Strict only for a schema OpenAI's strict mode takes (every object closed, every
            // property required): Anthropic's format takes others, which strict mode refuses
            // with a 400 (review 77A #2); non-strict, the schema still guides the model.
            request.responseFormat = .object(["type": .string("json_schema"),
                                              "json_schema": .object(["name": .string("output"), "schema": schema,
                                                                      "strict": .bool(StrictSchema.isStrictCompatible(schema))])])
        }
        for (key, value) in fields where !Self.modeledFields.contains(key) { request.extraFields[key] = value }
        request.extraFieldsFormat = .anthropicMessages
        return request
    }

    /// One Anthropic turn (at `path`, `messages.1`) as neutral messages: tool results split out as
    /// tool messages, in order.
    static func messages(_ message: JSONValue, path: String, toolNames: inout [String: String]) -> [ModelMessage] {
        let role: ModelMessage.Role = switch message["role"]?.stringValue {
        case "assistant": .assistant
        case "system": .system
        default: .user
        }
        func empty() -> ModelMessage {
            var message = ModelMessage(role: role, content: [])
            message.origin = MessageOrigin(.messages, path: path)
            return message
        }
        guard let blocks = message["content"]?.arrayValue else {
            var whole = empty()
            addParts(message["content"], path: "\(path).content", to: &whole)
            return [whole]
        }
        var result: [ModelMessage] = []
        var pending = empty()
        func flush() {
            if !pending.content.isEmpty || !pending.toolCalls.isEmpty || !pending.reasoning.isEmpty { result.append(pending) }
            pending = empty()
        }
        for (index, block) in blocks.enumerated() {
            let blockPath = "\(path).content.\(index)"
            switch block["type"]?.stringValue {
            case "tool_use"?:
                let id = block["id"]?.stringValue ?? ""
                let name = block["name"]?.stringValue ?? ""
                toolNames[id] = name
                pending.toolCalls.append(ToolCall(index: pending.toolCalls.count, id: id, name: name,
                                                  arguments: JSONWriting.compact(block["input"] ?? .object([:]))))
                pending.origin?.calls.append(blockPath)
            case "thinking"? where role == .assistant:
                if let signature = block["signature"]?.stringValue, !signature.isEmpty {
                    pending.reasoning.append(.thinking(text: block["thinking"]?.stringValue ?? "", signature: signature))
                }
            case "redacted_thinking"? where role == .assistant:
                if let data = block["data"]?.stringValue, !data.isEmpty { pending.reasoning.append(.redacted(data: data)) }
            case let type? where role == .assistant && MessagesRequest.isServerToolBlock(type):
                pending.content.append(.providerBlock(block))  // an Anthropic upstream needs it back as it came
                pending.origin?.parts.append(blockPath)
            case "text"? where role == .assistant && !(block["citations"]?.arrayValue ?? []).isEmpty:
                pending.content.append(.providerBlock(block))  // its citations too
                pending.origin?.parts.append(blockPath)
            case "tool_result"?:
                flush()
                let id = block["tool_use_id"]?.stringValue ?? ""
                var answer = ModelMessage(role: .tool, content: [], toolCallID: id, name: toolNames[id])
                answer.isError = block["is_error"]?.boolValue ?? false
                answer.origin = MessageOrigin(.messages, path: blockPath)
                addParts(block["content"], path: "\(blockPath).content", to: &answer)
                // Its own cache breakpoint after its content (`AnthropicRequestEncoder.toolResult`).
                if let control = ContentPart.cacheControl(of: block) {
                    answer.content.append(.cacheBreakpoint(control))
                    answer.origin?.parts.append(blockPath)
                }
                result.append(answer)
            default:
                let parts = marked(part(block), block)
                pending.content += parts
                pending.origin?.parts += parts.map { _ in blockPath }
            }
        }
        flush()
        return result
    }

    /// A string or blocks (at `path`) as content parts of `message`, each part's path in its origin.
    static func addParts(_ value: JSONValue?, path: String, to message: inout ModelMessage) {
        if let text = value?.stringValue {
            guard !text.isEmpty else { return }
            message.content.append(.text(text))
            message.origin?.parts.append(path)
            return
        }
        for (index, block) in (value?.arrayValue ?? []).enumerated() {
            let parts = marked(part(block), block)
            message.content += parts
            message.origin?.parts += parts.map { _ in "\(path).\(index)" }
        }
    }

    /// A block's part, and its cache breakpoint (`cache_control`) after it, for an Anthropic
    /// upstream reached through the neutral form (a Fusion call, a fallback).
    static func marked(_ part: ContentPart?, _ block: JSONValue) -> [ContentPart] {
        guard let part else { return [] }
        guard let control = ContentPart.cacheControl(of: block) else { return [part] }
        return [part, .cacheBreakpoint(control)]
    }

    /// A text, image or document block as a part; a block the neutral types do not model as it
    /// came (`MessagesRequest.isOpaqueUserBlock`, a file by id, a document by URL or of
    /// `content`); nil for thinking.
    static func part(_ block: JSONValue) -> ContentPart? {
        let source = block["source"]
        switch (block["type"]?.stringValue, source?["type"]?.stringValue) {
        case ("text"?, _):
            return .text(block["text"]?.stringValue ?? "")
        case ("image"?, "url"?):
            return .image(url: source?["url"]?.stringValue ?? "", detail: nil)
        case ("image"?, "base64"?):
            return .image(url: dataURI(source), detail: nil)
        case ("document"?, "text"?):
            return .text(source?["data"]?.stringValue ?? "")
        case ("document"?, "base64"?):
            return .other(.object(["type": .string("file"), "file": .object([
                "filename": .string(block["title"]?.stringValue ?? "document.pdf"), "file_data": .string(dataURI(source)),
            ])]))
        case ("image"?, _), ("document"?, _):
            return .providerBlock(block)
        case (let type?, _) where MessagesRequest.isOpaqueUserBlock(type):
            return .providerBlock(block)
        default:
            return nil
        }
    }

    private static func dataURI(_ source: JSONValue?) -> String {
        "data:\(source?["media_type"]?.stringValue ?? "");base64,\(source?["data"]?.stringValue ?? "")"
    }

    static func tool(_ json: JSONValue) -> ToolDefinition {
        if let type = json["type"]?.stringValue, type != "custom" { return .other(json) }
        return .function(name: json["name"]?.stringValue ?? "", description: json["description"]?.stringValue,
                         parameters: json["input_schema"], strict: json["strict"]?.boolValue, cacheControl: ContentPart.cacheControl(of: json))
    }
}
