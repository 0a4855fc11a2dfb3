import GatewayCore

/// `ModelRequest` → Anthropic's Messages request body (`POST /v1/messages`).
///
/// - System and developer messages, wherever they stand, become the top-level `system` (text
///   blocks, in order): the API has no system turn.
/// - Turns alternate as the API requires: consecutive messages of one role are merged; tool
///   results are `tool_result` blocks in a user turn, ahead of any text in it (the API wants
///   them first), so consecutive results share one user message.
/// - Empty text parts are left out (the API refuses empty text blocks); a message left with no
///   block at all is left out.
/// - `max_tokens` is required: the request's limit, or `defaultMaxTokens` (plus the thinking
///   budget, so thinking does not eat the answer's room).
/// - Reasoning becomes `thinking: {type: enabled, budget_tokens}` (`NativeRequestRules.thinkingBudget`);
///   with a limit at or below Anthropic's minimum budget (1024) there is no room to think and
///   thinking is left off; otherwise the budget stays below the limit, as the API requires.
///   Claude 4.6 and later get adaptive thinking with an effort instead (`AnthropicThinking`).
///   An assistant turn carries its reasoning blocks back first (`ReasoningBlock`: signed
///   `thinking`, `redacted_thinking`). A request in the middle of a tool loop whose assistant turn
///   has none (a chat client that kept only the text) is sent without thinking: the API refuses
///   thinking there unless that turn starts with its thinking block, and the turn cannot be
///   rebuilt (`needsThinkingBlock`).
///   Thinking is left off too when the request forces a tool call (`tool_choice` required or
///   named), which the API refuses with thinking; and when reasoning says `enabled: false`.
///   `temperature` is clamped to the API's 0–1, and `top_p` is sent only without a temperature
///   (Claude models since 4.5 refuse the two together).
///   With thinking on, `temperature`, `top_p` and `top_k` are not sent (the API refuses changed
///   sampling with thinking), nor ever with API version 2026-10-21 or later (which removed them).
/// - Tool-call ids the API would refuse (its pattern is `[a-zA-Z0-9_-]+`; other models make ids
///   such as Kimi's `functions.get_weather:0`) are rewritten the same way in the `tool_use` and
///   its `tool_result` (`toolID`), so a conversation begun on another model goes on here.
/// - A history with tool blocks and no tools offered defines the tools it called, with
///   `tool_choice: none` (`historyTools`): the API refuses tool blocks without tools.
/// - Stop sequences with nothing but whitespace are left out (the API refuses them; chat
///   clients commonly send `"\n"`).
/// - `response_format` `json_object` has no equivalent on this API version and is left to the
///   prompt (the judge's prompt asks for JSON and its output is validated); `json_schema` is
///   `output_config.format`, and a strict function tool `strict`. Fields from another API's
///   client (`extraFields` of another format) are left out.
enum AnthropicRequestEncoder {
    /// The first API version without `temperature`, `top_p` and `top_k`.
    static let samplingRemovedVersion = "2026-10-21"

    static func json(_ request: ModelRequest, version: String, defaultMaxTokens: Int64) -> JSONValue {
        var body = request.extraFieldsFormat == .anthropicMessages ? request.extraFields : [:]
        body["model"] = .string(request.model)
        let (system, turns) = blocks(request.messages)
        if !system.isEmpty { body["system"] = .array(system) }
        body["messages"] = .array(turns.map { .object(["role": .string($0.role), "content": .array($0.blocks)]) })
        body["stream"] = .bool(request.stream)
        // OpenAI's `user` (chat, Responses) as Anthropic's end-user id (review 48 surfaces #8); a
        // Messages client's own `metadata` is among its fields already.
        if request.extraFieldsFormat != .anthropicMessages, let user = request.user, !user.isEmpty {
            body["metadata"] = .object(["user_id": .string(user)])
        }
        if !request.tools.isEmpty {
            body["tools"] = .array(request.tools.map(tool))
            if let choice = toolChoice(request.toolChoice, parallel: request.parallelToolCalls) { body["tool_choice"] = choice }
        } else if let tools = historyTools(turns) {
            // Anthropic refuses `tool_use` and `tool_result` blocks in a request that defines no
            // tools ("Requests which include `tool_use` or `tool_result` blocks must define
            // tools"): a conversation whose tools are no longer offered (Fusion's final turn,
            // whose fusion tool is taken away; a chat client's last turn without `tools`) gets the
            // tools its history called, none of them callable (review 59C #1: every deliberation
            // with an Anthropic outer model and no tools of the caller's failed at its end).
            body["tools"] = .array(tools)
            body["tool_choice"] = .object(["type": .string("none")])
        }
        var maxTokens = max(request.maxOutputTokens ?? defaultMaxTokens, 1)
        // A forced tool call and thinking cannot go together on this API: the caller's tool choice wins.
        let forcesTool = request.toolChoice == .required || { if case .function = request.toolChoice { true } else { false } }()
        var budget = needsThinkingBlock(turns) || (forcesTool && !request.tools.isEmpty) ? nil : NativeRequestRules.thinkingBudget(request.reasoning)
        let style = AnthropicThinking(model: request.model)
        if let wanted = budget {
            if request.maxOutputTokens == nil {
                maxTokens = defaultMaxTokens + wanted
                // Within the model's own cap (an effort's budget could pass it: `max` on Opus 4.1).
                if case .budget(let limit?) = style, maxTokens > limit {
                    maxTokens = limit
                    budget = max(NativeRequestRules.minimumBudget, min(wanted, limit - defaultMaxTokens))
                }
                // An adaptive model takes an effort, not a budget: room to think, within the
                // least output cap of the 4.6+ models (review 71B #5: a client's 2^31 budget made
                // a 16,781,312-token `max_tokens` Anthropic refuses, and held that many tokens).
                if case .adaptive = style { maxTokens = min(maxTokens, AnthropicThinking.adaptiveOutputCap) }
            } else if case .budget = style {
                budget = maxTokens <= NativeRequestRules.minimumBudget ? nil : min(wanted, maxTokens - 1)
            }
        }
        body["max_tokens"] = .int(maxTokens)
        // Chat's `response_format` and Responses' `text.format` json_schema as Anthropic's
        // structured output (review 77A #1: refused with a 400 saying the API had none); a
        // Messages client's own `output_config` is among its fields already.
        if request.extraFieldsFormat != .anthropicMessages, let schema = jsonSchema(request.responseFormat) {
            var config = body["output_config"]?.objectValue ?? [:]
            config["format"] = .object(["type": .string("json_schema"), "schema": schema])
            body["output_config"] = .object(config)
        }
        switch (budget, style) {
        case (nil, _):
            break
        case (let budget?, .budget):
            body["thinking"] = .object(["type": .string("enabled"), "budget_tokens": .int(budget)])
        case (_, .adaptive(let xhigh)):
            AnthropicThinking.applyAdaptive(request.reasoning, xhigh: xhigh, to: &body)
        }
        if budget == nil && version < samplingRemovedVersion {
            // The API's temperature range is 0–1 (OpenAI's is 0–2), and Claude models since 4.5
            // refuse `temperature` and `top_p` together: the temperature, the common one, is kept.
            if let temperature = request.temperature { body["temperature"] = .double(min(max(temperature, 0), 1)) }
            if let topP = request.topP, request.temperature == nil { body["top_p"] = .double(topP) }
            if let topK = request.topK { body["top_k"] = .int(topK) }
        } else {
            body["temperature"] = nil
            body["top_p"] = nil
            body["top_k"] = nil
        }
        let stops = request.stop.filter { $0.contains { !$0.isWhitespace } }
        if !stops.isEmpty { body["stop_sequences"] = .array(stops.map(JSONValue.string)) }
        return .object(body)
    }

    /// The system blocks and the alternating turns.
    static func blocks(_ messages: [ModelMessage]) -> (system: [JSONValue], turns: [(role: String, blocks: [JSONValue])]) {
        var system: [JSONValue] = []
        var turns: [(role: String, blocks: [JSONValue])] = []
        for message in messages {
            let role: String
            let blocks: [JSONValue]
            switch message.role {
            case .system, .developer:
                system += contentBlocks(message.content)
                continue
            case .user:
                (role, blocks) = ("user", contentBlocks(message.content))
            case .assistant:
                (role, blocks) = ("assistant", message.reasoning.map(reasoningBlock) + contentBlocks(message.content)
                                      + message.toolCalls.map(toolUse))
            case .tool:
                (role, blocks) = ("user", [toolResult(message)])
            }
            guard !blocks.isEmpty else { continue }
            if turns.last?.role == role {
                for block in blocks {
                    if isToolResult(block), let firstOther = turns[turns.count - 1].blocks.firstIndex(where: { !isToolResult($0) }) {
                        turns[turns.count - 1].blocks.insert(block, at: firstOther)
                    } else {
                        turns[turns.count - 1].blocks.append(block)
                    }
                }
            } else {
                turns.append((role, blocks))
            }
        }
        return (system, turns)
    }

    private static func isToolResult(_ block: JSONValue) -> Bool { block["type"] == .string("tool_result") }

    static func reasoningBlock(_ reasoning: ReasoningBlock) -> JSONValue {
        switch reasoning {
        case .thinking(let text, let signature):
            .object(["type": .string("thinking"), "thinking": .string(text), "signature": .string(signature)])
        case .redacted(let data):
            .object(["type": .string("redacted_thinking"), "data": .string(data)])
        }
    }

    /// Whether the conversation ends in a tool loop (tool results answering the last assistant
    /// turn) whose assistant turn does not start with a thinking block: with thinking enabled the
    /// API refuses it ("a final assistant message must start with a thinking block").
    static func needsThinkingBlock(_ turns: [(role: String, blocks: [JSONValue])]) -> Bool {
        guard turns.count >= 2, let last = turns.last, last.role == "user", last.blocks.contains(where: isToolResult),
              turns[turns.count - 2].role == "assistant" else { return false }
        let first = turns[turns.count - 2].blocks.first?["type"]?.stringValue
        return first != "thinking" && first != "redacted_thinking"
    }

    /// A message's parts as blocks, a cache breakpoint written on the block before it (none
    /// before it, or an empty text left out: nothing to mark).
    static func contentBlocks(_ parts: [ContentPart]) -> [JSONValue] {
        var blocks: [JSONValue] = []
        var lastPartMadeABlock = false
        for part in parts {
            if case .cacheBreakpoint(let control) = part {
                if lastPartMadeABlock, case .object(var object)? = blocks.last {
                    object["cache_control"] = control
                    blocks[blocks.count - 1] = .object(object)
                }
                continue
            }
            let made = block(part)
            if let made { blocks.append(made) }
            lastPartMadeABlock = made != nil
        }
        return blocks
    }

    /// A content part as a block; nil for empty text and parts `validate` refuses.
    static func block(_ part: ContentPart) -> JSONValue? {
        switch part {
        case .text(let text):
            return text.isEmpty ? nil : .object(["type": .string("text"), "text": .string(text)])
        case .image(let url, _) where !url.lowercased().hasPrefix("data:"):
            // A PDF by URL is a document (an image block would be refused).
            let type = NativeRequestRules.mediaType(ofURL: url) == "application/pdf" ? "document" : "image"
            return .object(["type": .string(type), "source": .object(["type": .string("url"), "url": .string(url)])])
        case .providerBlock(let block):
            return block  // a Messages client's own block (a server tool's), as it came
        case .cacheBreakpoint:
            return nil  // written on the block before it (`contentBlocks`)
        case .image, .other:
            guard let data = NativeRequestRules.inlineData(part) else { return nil }
            let source: JSONValue = .object(["type": .string("base64"), "media_type": .string(data.mediaType), "data": .string(data.base64)])
            return .object(["type": .string(data.mediaType == "application/pdf" ? "document" : "image"), "source": source])
        }
    }

    static func toolUse(_ call: ToolCall) -> JSONValue {
        // `validate` refused arguments that are not an object; `{}` only stands in for "".
        .object(["type": .string("tool_use"), "id": .string(toolID(call.id)), "name": .string(call.name),
                 "input": call.argumentsObject ?? .object([:])])
    }

    /// A tool message as a `tool_result` block. A cache breakpoint ending its content is the
    /// block's own (`cache_control` on the `tool_result`, where an agent loop marks its last
    /// turn; it also holds when the result has no content to mark).
    static func toolResult(_ message: ModelMessage) -> JSONValue {
        var result: [String: JSONValue] = ["type": .string("tool_result"), "tool_use_id": .string(toolID(message.toolCallID ?? ""))]
        var message = message
        if case .cacheBreakpoint(let control)? = message.content.last {
            result["cache_control"] = control
            message.content.removeLast()
        }
        let blocks = contentBlocks(message.content)
        if blocks.allSatisfy({ $0["type"] == .string("text") && $0["cache_control"] == nil }) {
            if !blocks.isEmpty { result["content"] = .string(message.text) }
        } else {
            result["content"] = .array(blocks)
        }
        if message.isError { result["is_error"] = .bool(true) }
        return .object(result)
    }

    /// `id` if the API takes it; otherwise its allowed characters (others as `_`, at most 40) and
    /// 16 hex digits of its SHA-256, so two ids never become one. The same id always maps the
    /// same way: a call and its result stay paired.
    static func toolID(_ id: String) -> String {
        let allowed = id.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || byte == 0x5F || byte == 0x2D
        }
        if allowed && !id.isEmpty { return id }
        let kept = id.unicodeScalars.prefix(40).map { scalar in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "-") ? Character(scalar) : "_"
        }
        return String(kept) + "_" + SHA256.hex(Array(id.utf8)).prefix(16)
    }

    /// The schema of a `json_schema` response format (chat's shape, as the neutral request holds
    /// it), when it is one.
    static func jsonSchema(_ format: JSONValue?) -> JSONValue? {
        guard format?["type"]?.stringValue == "json_schema", let schema = format?["json_schema"]?["schema"],
              case .object = schema else { return nil }
        return schema
    }

    static func tool(_ tool: ToolDefinition) -> JSONValue {
        switch tool {
        case .function(let name, let description, let parameters, let strict, let cacheControl):
            var object: [String: JSONValue] = ["name": .string(name),
                                               "input_schema": parameters ?? .object(["type": .string("object"), "properties": .object([:])])]
            if let description { object["description"] = .string(description) }
            // Strict tool use: the model's inputs match the schema (review 77A #1: dropped).
            if strict == true { object["strict"] = .bool(true) }
            if let cacheControl { object["cache_control"] = cacheControl }
            return .object(object)
        case .other(let json):
            return json  // an Anthropic server tool from a Messages client, sent as it came
        }
    }

    /// A definition for each tool the history's `tool_use` blocks called (a name Anthropic takes,
    /// once each, in order; a placeholder when none is), taking any input; nil when the history
    /// has no tool block.
    static func historyTools(_ turns: [(role: String, blocks: [JSONValue])]) -> [JSONValue]? {
        let blocks = turns.flatMap(\.blocks)
        guard blocks.contains(where: { ["tool_use", "tool_result"].contains($0["type"]?.stringValue ?? "") }) else { return nil }
        var names: [String] = []
        for block in blocks where block["type"]?.stringValue == "tool_use" {
            guard let name = block["name"]?.stringValue, isToolName(name), !names.contains(name) else { continue }
            names.append(name)
        }
        if names.isEmpty { names = ["earlier_tool"] }
        let schema = JSONValue.object(["type": .string("object")])
        return names.map { .object(["name": .string($0), "description": .string("A tool called earlier in this conversation."), "input_schema": schema]) }
    }

    /// Anthropic's rule for a tool's name: 1 to 64 of letters, digits, `_` and `-`.
    static func isToolName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count) && name.utf8.allSatisfy {
            $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") || (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0)
        }
    }

    static func toolChoice(_ choice: ToolChoice?, parallel: Bool?) -> JSONValue? {
        var object: [String: JSONValue]
        switch choice {
        case .auto?: object = ["type": .string("auto")]
        case .none?: return .object(["type": .string("none")])
        case .required?: object = ["type": .string("any")]
        case .function(let name)?: object = ["type": .string("tool"), "name": .string(name)]
        case nil:
            guard parallel == false else { return nil }
            object = ["type": .string("auto")]
        }
        if parallel == false { object["disable_parallel_tool_use"] = .bool(true) }
        return .object(object)
    }
}
