import Fusion
import GatewayCore
import Providers

/// A validated `POST /v1/messages` body (Anthropic's Messages API, as its SDKs send it).
///
/// Every field the gateway or an upstream relies on is type-checked, and a mistake is a 400
/// naming the field the way Anthropic's API does (`messages.0.content.1.source`); render it with
/// `MessagesErrors`. Both API versions' clients are served: `temperature`, `top_p` and `top_k`
/// (2023-06-01) are accepted, never required. Unknown fields are allowed: they travel to an
/// Anthropic upstream only (`extraFieldsFormat`).
public struct MessagesRequest: Sendable {
    public let model: String
    public let stream: Bool
    /// A deliberation's progress as named `fusion.*` events, as chat's clients ask for them
    /// (`stream_options.include_fusion_events`; not Anthropic's field, so never sent upstream).
    public let includeFusionEvents: Bool
    /// OpenRouter's `models` (fallbacks), as chat's and Responses': never sent upstream.
    public let fallbackModels: [String]
    public let json: JSONValue
    /// The body as the client sent it.
    public let rawBody: [UInt8]

    /// Duplicate keys and numbers beyond Double's range are refused at any depth (see
    /// `JSONValue.parseRequest`): the raw body may be what goes upstream. A token count
    /// (`POST /v1/messages/count_tokens`) is the same body without `max_tokens`.
    public init(body: [UInt8], forTokenCount: Bool = false) throws(APIError) {
        let json = try JSONValue.parseRequest(body)
        guard case .object(let fields) = json else {
            throw .invalidRequest("The request body must be a JSON object, not \(json.typeName).")
        }
        guard let model = try Self.required("model", in: fields).stringValue, !model.isEmpty else {
            throw Self.invalid("model", "a non-empty string")
        }
        if !forTokenCount || (fields["max_tokens"] ?? .null) != .null {
            guard let limit = try Self.required("max_tokens", in: fields).intValue, (1...Int64(Int32.max)).contains(limit) else {
                throw Self.invalid("max_tokens", "an integer from 1 to \(Int32.max)")
            }
        }
        guard let messages = try Self.required("messages", in: fields).arrayValue, !messages.isEmpty else {
            throw Self.invalid("messages", "a non-empty array of messages")
        }
        for (index, message) in messages.enumerated() {
            try Self.validateMessage(message, path: "messages.\(index)", isLast: index == messages.count - 1)
        }
        try Self.validateToolResults(messages)
        if let system = fields["system"], system != .null, system.stringValue == nil {
            try Self.validateBlocks(system, path: "system", allowed: ["text"])
        }
        let stream = try Self.optional("stream", in: fields, "a boolean") { $0.boolValue } ?? false
        _ = try Self.optional("temperature", in: fields, "a number between 0 and 1") { $0.doubleValue.flatMap { (0...1).contains($0) ? $0 : nil } }
        _ = try Self.optional("top_p", in: fields, "a number between 0 and 1") { $0.doubleValue.flatMap { (0...1).contains($0) ? $0 : nil } }
        // Within 32 bits: Gemini's `topK` is an int32 (review 21 F3).
        _ = try Self.optional("top_k", in: fields, "an integer from 0 to \(Int32.max)") { $0.intValue.flatMap { (0...Int64(Int32.max)).contains($0) ? $0 : nil } }
        _ = try Self.optional("stop_sequences", in: fields, "an array of strings") { value in
            value.arrayValue.flatMap { $0.allSatisfy { $0.stringValue != nil } ? $0 : nil }
        }
        let metadata = try Self.optional("metadata", in: fields, "an object") { $0.objectValue }
        // Anthropic's only member; a number would be dropped on the way to other upstreams (review 109 #5).
        if let user = metadata?["user_id"], user != .null, user.stringValue == nil {
            throw Self.invalid("metadata.user_id", "a string")
        }
        try Self.validateTools(fields["tools"])
        try Self.validateToolChoice(fields["tool_choice"], tools: fields["tools"]?.arrayValue ?? [])
        try Self.validateThinking(fields["thinking"])
        // Anthropic's API refuses the two together, whichever upstream serves the request (review
        // 109 #2: an OpenAI-compatible or Gemini model took them, Claude refused).
        // Forced fusion is not: the outer model's first turn is never made, and its final turn
        // is not forced (review 111 #1).
        let tools = fields["tools"]?.arrayValue ?? []
        let fusionOnly = !tools.isEmpty && tools.allSatisfy { FusionPlan.toolTypes.contains($0["type"]?.stringValue ?? "") }
        if let thinking = fields["thinking"]?["type"]?.stringValue, thinking == "enabled" || thinking == "adaptive",
           let choice = fields["tool_choice"]?["type"]?.stringValue,
           choice == "any" && !fusionOnly || choice == "tool" && fields["tool_choice"]?["name"]?.stringValue != FusionPlan.toolName {
            throw .invalidRequest("tool_choice: Thinking may not be enabled when tool_choice forces tool use ('\(choice)'); use 'auto' or 'none', or turn thinking off.",
                                  param: "tool_choice", code: "invalid_value")
        }
        try Self.validateOutputConfig(fields["output_config"])
        let options = try Self.optional("stream_options", in: fields, "an object") { $0.objectValue }
        let events = options?["include_fusion_events"] ?? .null
        guard events == .null || events.boolValue != nil else { throw Self.invalid("stream_options.include_fusion_events", "a boolean") }
        includeFusionEvents = events.boolValue ?? false
        fallbackModels = try FallbackModels.parse(fields["models"], besides: model,
                                                  wrongList: { Self.invalid("models", "an array of at most 8 model names, got \(ChatRequest.described($0))") },
                                                  wrongName: { Self.invalid("models.\($0)", "a non-empty string") })
        self.model = model
        self.stream = stream
        self.json = json
        self.rawBody = body
    }

    /// Anthropic's ceiling on a thinking budget, whichever upstream serves the request: below
    /// `max_tokens`, unless interleaved thinking is on (its beta lets the budget span a turn's
    /// tool calls, so it may exceed one response's `max_tokens`). `betas`: the client's
    /// `anthropic-beta` names, joined by commas (review 64C #4).
    public func validateThinkingBudget(betas: String?) throws(APIError) {
        guard json["thinking"]?["type"]?.stringValue == "enabled",
              let budget = json["thinking"]?["budget_tokens"]?.intValue,
              let limit = json["max_tokens"]?.intValue, budget >= limit else { return }
        let interleaved = betas?.split(separator: ",").contains { $0.hasPrefix("interleaved-thinking-") } ?? false
        guard !interleaved else { return }
        throw .invalidRequest("max_tokens: must be greater than thinking.budget_tokens (\(budget)), unless the interleaved-thinking beta is on.",
                              param: "max_tokens", code: "invalid_value")
    }

    /// The client's bytes with the `model` value replaced: for an Anthropic upstream, which then
    /// gets every field as sent (thinking blocks with their signatures, cache controls, betas'
    /// fields), but the gateway's own: `stream_options`, `models` and a fusion plugin entry (Anthropic
    /// refuses fields it does not know: "Extra inputs are not permitted"; review 43 conformance #3),
    /// and tool-call ids Anthropic would refuse (`rewritingToolIDs`).
    /// `fusionTool`: for a token count of a deliberation's outer model, the function it sees,
    /// in place of the fusion tool (or plugin) the client gave.
    public func upstreamBody(model upstreamModel: String, fusionTool: JSONValue? = nil) -> [UInt8] {
        let fusionPlugin = { (plugin: JSONValue) in plugin["id"]?.stringValue == "fusion" }
        // A `model` key spelled with escapes is rewritten whole, as `ChatRequest.upstreamBody`'s.
        let modelRange = JSONScanner.rangeOfTopLevelValue(forKey: "model", in: rawBody)
        let idRewrites = rawBody.withUnsafeBytes { Self.toolIDRewrites(in: $0, AnthropicProvider.toolID) }
        if case .object(var fields) = json, modelRange == nil || fusionTool != nil || fields["stream_options"] != nil
            || fields["models"] != nil || fields["plugins"]?.arrayValue?.contains(where: fusionPlugin) == true {
            if !idRewrites.isEmpty, let messages = Self.rewritingToolIDs(in: json["messages"], AnthropicProvider.toolID) { fields["messages"] = messages }
            fields["stream_options"] = nil
            fields["models"] = nil
            if let plugins = fields["plugins"]?.arrayValue {
                let others = plugins.filter { !fusionPlugin($0) }
                fields["plugins"] = others.isEmpty ? nil : .array(others)
            }
            if let fusionTool {
                let others = (fields["tools"]?.arrayValue ?? []).filter { !FusionPlan.toolTypes.contains($0["type"]?.stringValue ?? "") }
                fields["tools"] = .array(others + [fusionTool])
            }
            fields["model"] = .string(upstreamModel)
            var changed: Set<String> = ["model", "plugins"]
            if fusionTool != nil { changed.insert("tools") }
            if !idRewrites.isEmpty { changed.insert("messages") }
            // The messages as the client wrote them with only the ids spliced, as below (review
            // 75A #4: re-encoded, keys sorted and a tool input's big number rounded).
            var replacements: [String: [UInt8]] = [:]
            // The key read as the parser reads it (an escaped `m\u0065ssages` too: review 76 #5).
            if !idRewrites.isEmpty, let range = JSONScanner.topLevelMembers(in: rawBody)?.last(where: { $0.key == "messages" })?.value,
               idRewrites.allSatisfy({ range.contains($0.0.lowerBound) }) {
                replacements["messages"] = Self.splicing(idRewrites, into: rawBody, within: range)
            }
            return ClientOrderedObject.encode(fields, changed: changed, renamed: [:], rawBody: rawBody, replacements: replacements)
        }
        guard let range = modelRange else { return json.serialized() }  // not reached: `json` is an object
        // The client's bytes, with the model's value and the ids that change replaced.
        return Self.splicing([(range, upstreamModel)] + idRewrites, into: rawBody, within: rawBody.indices)
    }

    /// `body[range]` with each of `edits`' ranges (inside it) replaced by its string, in JSON.
    static func splicing(_ edits: [(Range<Int>, String)], into body: [UInt8], within range: Range<Int>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(range.count + 64 * edits.count)
        var copied = range.lowerBound
        for (edit, value) in edits.sorted(by: { $0.0.lowerBound < $1.0.lowerBound }) {
            out.append(contentsOf: body[copied..<edit.lowerBound])
            JSONWriting.appendString(value, to: &out)
            copied = edit.upperBound
        }
        out.append(contentsOf: body[copied..<range.upperBound])
        return out
    }

    /// The byte range of every `tool_use` id and `tool_result` `tool_use_id` in `body`'s
    /// `messages` that `valid` changes, with its new id, in document order: the walk of
    /// `rewritingToolIDs` on the client's bytes (`JSONView` reads keys unescaped and the last of
    /// duplicates, as the tree does), so only those strings change and every other byte is the
    /// client's (review 58 #3: the body was written anew, keys sorted and numbers through
    /// `JSONValue`, an integer beyond 64 bits changed).
    static func toolIDRewrites(in body: UnsafeRawBufferPointer, _ valid: (String) -> String) -> [(Range<Int>, String)] {
        guard let view = JSONView(validating: body), let messages = view.member("messages", in: view.root) else { return [] }
        var rewrites: [(Range<Int>, String)] = []
        var turn = view.firstElement(in: messages)
        while let message = turn {
            if let content = view.member("content", in: message) {
                var next = view.firstElement(in: content)
                while let block = next {
                    var type: Range<Int>?, id: Range<Int>?, useID: Range<Int>?
                    view.forEachMember(in: block) { key, value in
                        if key.matches("type") { type = value } else if key.matches("id") { id = value } else if key.matches("tool_use_id") { useID = value }
                    }
                    let idRange: Range<Int>? = switch type.flatMap(view.string) { case "tool_use"?: id; case "tool_result"?: useID; default: nil }
                    if let idRange, let old = view.string(idRange), case let new = valid(old), new != old { rewrites.append((idRange, new)) }
                    next = view.element(after: block)
                }
            }
            turn = view.element(after: message)
        }
        return rewrites
    }

    /// `messages` with every `tool_use` id and `tool_result` `tool_use_id` through `valid`; nil
    /// when none changes (the usual case: the client's bytes go as they came). Another
    /// upstream's ids (Kimi's `functions.get_weather:0`) reach a Messages client as they came, and
    /// Anthropic refuses them in the history that continues (review 55A #2); only the ids change,
    /// every other field of the client's stays (review 56 #3: the translated path lost `is_error`
    /// and tools' `strict`). For a body written anew anyway (a fusion plugin entry to drop…);
    /// otherwise only the ids' bytes change (`toolIDRewrites`).
    static func rewritingToolIDs(in messages: JSONValue?, _ valid: (String) -> String) -> JSONValue? {
        guard case .array(var turns)? = messages else { return nil }
        var changed = false
        for (turn, message) in turns.enumerated() {
            guard case .object(var message) = message, case .array(var blocks)? = message["content"] else { continue }
            var turnChanged = false
            for (index, block) in blocks.enumerated() {
                guard case .object(var block) = block else { continue }
                let key = switch block["type"]?.stringValue { case "tool_use"?: "id"; case "tool_result"?: "tool_use_id"; default: "" }
                guard !key.isEmpty, let id = block[key]?.stringValue, case let rewritten = valid(id), rewritten != id else { continue }
                block[key] = .string(rewritten)
                blocks[index] = .object(block)
                turnChanged = true
            }
            guard turnChanged else { continue }  // a turn left alone is not copied
            message["content"] = .array(blocks)
            turns[turn] = .object(message)
            changed = true
        }
        return changed ? .array(turns) : nil
    }

    static let roles: Set<String> = ["user", "assistant"]
    /// Block types the gateway reads, per role; thinking blocks are accepted (and not carried:
    /// the neutral request has no signed thinking).
    static let userBlocks: Set<String> = ["text", "image", "document", "tool_result"]
    static let assistantBlocks: Set<String> = ["text", "tool_use", "thinking", "redacted_thinking"]

    /// A block of a user turn (or a `tool_result`'s content) the neutral types do not model but
    /// Anthropic's API takes (`search_result`, `container_upload`, `tool_reference`, a document
    /// by URL or of `content`, a file by id, and kinds yet to come): carried as it came
    /// (`ContentPart.providerBlock`) to an Anthropic model, refused by name for any other (a
    /// dropped block would be part of the question silently lost). Blocks only a model writes
    /// (calls, thinking, server tools' blocks) are still refused here.
    static func isOpaqueUserBlock(_ type: String) -> Bool {
        if type == "container_upload" { return true }  // a user's file for the code-execution container
        return !type.isEmpty && !userBlocks.contains(type) && !assistantBlocks.contains(type) && !isServerToolBlock(type)
    }

    /// A block of Anthropic's server tools (`server_tool_use`, `web_search_tool_result`,
    /// `code_execution_tool_result`, `mcp_tool_use`, …) in an assistant turn: carried as it came
    /// (`ContentPart.providerBlock`), since the turn that continues needs it back.
    static func isServerToolBlock(_ type: String) -> Bool {
        ["server_tool_use", "mcp_tool_use", "mcp_tool_result", "container_upload"].contains(type) || (type.hasSuffix("_tool_result") && type != "tool_result")
    }

    private static func validateMessage(_ message: JSONValue, path: String, isLast: Bool) throws(APIError) {
        guard case .object(let fields) = message else { throw invalid(path, "an object") }
        guard let role = fields["role"]?.stringValue, roles.contains(role) else {
            if fields["role"]?.stringValue == "system" {
                // Anthropic's own words: a system prompt inside the turns is refused there too.
                throw .invalidRequest("\(path).role: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, "
                                          + "not \"system\" as an input message role.", param: "\(path).role")
            }
            throw invalid("\(path).role", "one of 'user', 'assistant'")
        }
        // As Anthropic's API: an empty turn is refused, not dropped (a dropped question would
        // leave the answer before it last, read by the model as a prefill to continue); so is a
        // turn without its content (Anthropic: "Field required").
        guard fields["content"] != nil else {
            throw .invalidRequest("\(path).content: Field required", param: "\(path).content")
        }
        let isEmpty = fields["content"]?.stringValue?.isEmpty ?? (fields["content"]?.arrayValue?.isEmpty ?? false)
        if isEmpty && !(role == "assistant" && isLast) {
            throw .invalidRequest("\(path).content: all messages must have non-empty content except for the optional final assistant message",
                                  param: "\(path).content")
        }
        guard let content = fields["content"], content.stringValue == nil else { return }
        try validateBlocks(content, path: "\(path).content",
                           allowed: role == "assistant" ? assistantBlocks : role == "user" ? userBlocks : ["text"], takesOpaque: role == "user")
    }

    /// Calls and results pair as Anthropic's API requires, whichever upstream serves the request:
    /// each `tool_result` answers a `tool_use` of the assistant turn just before its user turn,
    /// once, and each such call is answered there (a final assistant turn's calls aside). An
    /// orphan, a second result or a call left unanswered (its result late) would reach an OpenAI-style
    /// upstream as a history it refuses in its own words, and Gemini quietly (review 109 #1).
    /// Consecutive turns of one role are one turn, as Anthropic reads them.
    private static func validateToolResults(_ messages: [JSONValue]) throws(APIError) {
        var calls: Set<String> = []
        var answered: Set<String> = []
        var open: [(id: String, path: String)] = []  // the last assistant turn's calls not yet answered
        var previousRole: String?
        func refuseUnanswered() throws(APIError) {
            guard let call = open.first else { return }
            throw .invalidRequest("\(call.path): `tool_use` ids were found without `tool_result` blocks immediately after: '\(call.id.prefix(64))'. "
                                  + "Each `tool_use` block must have a `tool_result` block in the next message.", param: call.path)
        }
        for (index, message) in messages.enumerated() {
            let role = message["role"]?.stringValue
            if role == "assistant" && previousRole == "user" {
                try refuseUnanswered()
                open.removeAll()
            }
            previousRole = role
            for (blockIndex, block) in (message["content"]?.arrayValue ?? []).enumerated() {
                let at = "messages.\(index).content.\(blockIndex)"
                guard let id = block["type"]?.stringValue == "tool_result" ? block["tool_use_id"]?.stringValue : nil else {
                    if role == "assistant", block["type"]?.stringValue == "tool_use", let id = block["id"]?.stringValue {
                        calls.insert(id)
                        open.append((id, at))
                    }
                    continue
                }
                guard calls.contains(id) else {
                    throw .invalidRequest("\(at).tool_use_id: no `tool_use` block with id '\(id.prefix(64))' in an earlier assistant message; each `tool_result` block must answer one.",
                                          param: "\(at).tool_use_id")
                }
                guard answered.insert(id).inserted else {
                    throw .invalidRequest("\(at).tool_use_id: the `tool_use` block '\(id.prefix(64))' is answered twice; each has one `tool_result` block.",
                                          param: "\(at).tool_use_id")
                }
                // A call of an earlier turn was refused unanswered when the turn after it ended.
                open.removeAll { $0.id == id }
            }
        }
        if previousRole == "user" { try refuseUnanswered() }
    }

    /// `takesOpaque`: a user turn's or a tool result's blocks, where `isOpaqueUserBlock` kinds go.
    private static func validateBlocks(_ value: JSONValue, path: String, allowed: Set<String>, takesOpaque: Bool = false) throws(APIError) {
        guard let blocks = value.arrayValue else { throw invalid(path, "a string or an array of content blocks") }
        for (index, block) in blocks.enumerated() {
            let at = "\(path).\(index)"
            guard let type = block["type"]?.stringValue else { throw invalid("\(at).type", "a string") }
            guard allowed.contains(type) || (allowed == assistantBlocks && isServerToolBlock(type))
                || (takesOpaque && isOpaqueUserBlock(type)) else {
                throw .invalidRequest("\(at).type: blocks of type '\(type)' are not supported here (this gateway reads: \(allowed.sorted().joined(separator: ", "))\(allowed == assistantBlocks ? ", and server tools' blocks" : "")).",
                                      param: "\(at).type")
            }
            switch type {
            case "text":
                guard block["text"]?.stringValue != nil else { throw invalid("\(at).text", "a string") }
            case "image", "document":
                try validateSource(block["source"], path: "\(at).source", document: type == "document")
            case "tool_use":
                guard block["id"]?.stringValue?.isEmpty == false else { throw invalid("\(at).id", "a non-empty string") }
                guard block["name"]?.stringValue?.isEmpty == false else { throw invalid("\(at).name", "a non-empty string") }
                guard block["input"]?.objectValue != nil else { throw invalid("\(at).input", "an object") }
            case "tool_result":
                guard block["tool_use_id"]?.stringValue?.isEmpty == false else { throw invalid("\(at).tool_use_id", "a non-empty string") }
                if let content = block["content"], content != .null, content.stringValue == nil {
                    try validateBlocks(content, path: "\(at).content", allowed: ["text", "image", "document"], takesOpaque: true)
                }
                if let flag = block["is_error"], flag != .null, flag.boolValue == nil { throw invalid("\(at).is_error", "a boolean") }
            default:
                break  // thinking, redacted_thinking
            }
        }
    }

    /// Images: base64 (a media type and data) or a URL; documents: a base64 PDF or plain text;
    /// either by a URL or a file id, or a document of `content` blocks (carried as they came).
    private static func validateSource(_ source: JSONValue?, path: String, document: Bool) throws(APIError) {
        switch source?["type"]?.stringValue {
        case "url"?:
            guard source?["url"]?.stringValue?.isEmpty == false else { throw invalid("\(path).url", "a URL") }
        case "file"?:
            guard source?["file_id"]?.stringValue?.isEmpty == false else { throw invalid("\(path).file_id", "a non-empty string") }
        case "content"? where document:
            guard let content = source?["content"], content.stringValue != nil || content.arrayValue != nil else {
                throw invalid("\(path).content", "a string or an array of content blocks")
            }
        case "base64"?:
            guard let media = source?["media_type"]?.stringValue, !media.isEmpty, media.utf8.allSatisfy({ $0 > 0x20 && $0 != UInt8(ascii: ",") && $0 != UInt8(ascii: ";") }) else {
                throw invalid("\(path).media_type", "a media type")
            }
            if document && media != "application/pdf" { throw invalid("\(path).media_type", "'application/pdf'") }
            guard source?["data"]?.stringValue != nil else { throw invalid("\(path).data", "a base64 string") }
        case "text"? where document:
            guard source?["data"]?.stringValue != nil else { throw invalid("\(path).data", "a string") }
        default:
            throw invalid("\(path).type", document ? "'base64' (a PDF), 'text', 'content', 'url' or 'file'" : "'base64', 'url' or 'file'")
        }
    }

    private static func validateTools(_ value: JSONValue?) throws(APIError) {
        guard let value, value != .null else { return }
        guard let tools = value.arrayValue else { throw invalid("tools", "an array") }
        var names: Set<String> = []
        for (index, tool) in tools.enumerated() {
            guard tool.objectValue != nil else { throw invalid("tools.\(index)", "an object") }
            if let type = tool["type"]?.stringValue, type != "custom" { continue }  // a server tool (or fusion), kept as it is
            guard let name = tool["name"]?.stringValue, !name.isEmpty else { throw invalid("tools.\(index).name", "a non-empty string") }
            // Every vendor's API refuses a name twice, after a call (review 107 #3).
            guard names.insert(name).inserted else {
                throw .invalidRequest("tools.\(index).name: Tool names must be unique ('\(name.shortened(toBytes: 128))' is named twice).",
                                      param: "tools.\(index).name", code: "invalid_value")
            }
            guard tool["input_schema"]?.objectValue != nil else { throw invalid("tools.\(index).input_schema", "a JSON schema object") }
            if let description = tool["description"], description != .null, description.stringValue == nil {
                throw invalid("tools.\(index).description", "a string")
            }
        }
    }

    /// A choice that forces a tool needs one to force, as Anthropic's API says whichever upstream
    /// serves the request (translated, an OpenAI-compatible upstream answered in its own words,
    /// or not at all: review 64C #4).
    private static func validateToolChoice(_ value: JSONValue?, tools: [JSONValue]) throws(APIError) {
        guard let value, value != .null else { return }
        switch value["type"]?.stringValue {
        case "auto"?, "none"?: break
        case "any"?:
            guard !tools.isEmpty else {
                throw .invalidRequest("tool_choice: 'any' forces a tool call, but the request has no tools.", param: "tool_choice", code: "invalid_value")
            }
        case "tool"?:
            guard let name = value["name"]?.stringValue, !name.isEmpty else { throw invalid("tool_choice.name", "a non-empty string") }
            // The fusion tool has no `name`: a choice naming it is `FusionPlan`'s to judge.
            guard name == FusionPlan.toolName || tools.contains(where: { $0["name"]?.stringValue == name }) else {
                throw .invalidRequest("tool_choice.name: no tool named '\(name.shortened(toBytes: 256))' is in `tools`.", param: "tool_choice.name", code: "invalid_value")
            }
        default: throw invalid("tool_choice.type", "one of 'auto', 'any', 'tool', 'none'")
        }
        if let flag = value["disable_parallel_tool_use"], flag != .null, flag.boolValue == nil {
            throw invalid("tool_choice.disable_parallel_tool_use", "a boolean")
        }
    }

    private static func validateThinking(_ value: JSONValue?) throws(APIError) {
        guard let value, value != .null else { return }
        switch value["type"]?.stringValue {
        case "enabled"?:
            // Anthropic's floor, whichever upstream serves the request: a client gets the same
            // answer from the gateway as from Anthropic's API.
            guard let budget = value["budget_tokens"]?.intValue, (1024...Int64(Int32.max)).contains(budget) else {
                throw invalid("thinking.budget_tokens", "an integer from 1024 to \(Int32.max)")
            }
        case "disabled"?, "adaptive"?: break
        default: throw invalid("thinking.type", "one of 'enabled', 'disabled', 'adaptive'")
        }
    }

    /// The effort of adaptive thinking (Anthropic's words); the rest of `output_config` goes to
    /// an Anthropic upstream as it came.
    private static func validateOutputConfig(_ value: JSONValue?) throws(APIError) {
        guard let value, value != .null else { return }
        guard value.objectValue != nil else { throw invalid("output_config", "an object") }
        if let effort = value["effort"], effort != .null, !["low", "medium", "high", "xhigh", "max"].contains(effort.stringValue ?? "") {
            throw invalid("output_config.effort", "one of 'low', 'medium', 'high', 'xhigh', 'max'")
        }
        // Structured output: the one format Anthropic has, which another API's model is given as
        // its own (`MessagesRequestConversion`).
        if let format = value["format"], format != .null {
            guard format["type"]?.stringValue == "json_schema" else { throw invalid("output_config.format.type", "'json_schema'") }
            guard format["schema"]?.objectValue != nil else { throw invalid("output_config.format.schema", "an object (a JSON schema)") }
        }
    }

    private static func required(_ name: String, in fields: [String: JSONValue]) throws(APIError) -> JSONValue {
        guard let value = fields[name], value != .null else {
            throw .invalidRequest("\(name): Field required", param: name, code: "missing_required_parameter")
        }
        return value
    }

    /// An optional field: absent or null is nil; otherwise `read` must accept it.
    private static func optional<T>(_ name: String, in fields: [String: JSONValue], _ expected: String,
                                    _ read: (JSONValue) -> T?) throws(APIError) -> T? {
        guard let value = fields[name], value != .null else { return nil }
        guard let result = read(value) else { throw invalid(name, expected) }
        return result
    }

    static func invalid(_ path: String, _ expected: String) -> APIError {
        .invalidRequest("\(path): expected \(expected).", param: path, code: "invalid_type")
    }
}
