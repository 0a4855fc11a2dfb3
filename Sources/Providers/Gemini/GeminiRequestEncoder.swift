import Foundation
import GatewayCore

/// `ModelRequest` → Gemini's `GenerateContentRequest` (camelCase, as the API's JSON is).
///
/// - System and developer messages become `systemInstruction`; turns are `user` and `model`,
///   consecutive ones of a role merged; tool results are `functionResponse` parts in a user
///   turn, named by the tool message's `name` or the earlier call with its id (`validate`
///   refuses a result with neither). A result whose text is a JSON object is the response
///   object itself; other text is wrapped as `{"output": text}` (the API takes objects only,
///   and reads `output` as the function's output). A result's images and files (a screenshot
///   tool's) follow its `functionResponse` as parts of the same turn, never dropped.
/// - Images: `data:` URIs are `inlineData`, URLs `fileData` (media type guessed from the
///   extension where it says).
/// - A chat client's `seed` is Gemini's own, and so are `frequency_penalty` and
///   `presence_penalty` where the model takes them (`takesPenalties`); elsewhere they are left
///   out, as OpenRouter leaves out what a model lacks (Gemini 2.5 and later refuse any non-zero
///   penalty with a 400, and chat apps commonly send 0.3–0.5: review 44 Gemini F2).
/// - Tools are `functionDeclarations` with the JSON Schema as `parametersJsonSchema` (no
///   conversion to OpenAPI's subset); `tool_choice` is `functionCallingConfig` (a named
///   function: `ANY` restricted to it). Gemini has no switch for parallel calls.
/// - Reasoning is `thinkingConfig.thinkingBudget` (`thinkingConfig(_:)`), with thought
///   summaries included unless `reasoning.exclude`; effort `none` or `enabled: false` is a budget of 0.
/// - Thought signatures (Gemini 3): the neutral types carry none (a tool call id is no place
///   for kilobytes of opaque state: OpenAI caps ids at 40 characters), so the first
///   `functionCall` part of each replayed model turn carries Google's documented placeholder,
///   which Gemini 3 accepts for history it did not sign (a 400 otherwise).
enum GeminiRequestEncoder {
    static let placeholderThoughtSignature = "skip_thought_signature_validator"

    static func json(_ request: ModelRequest) -> JSONValue {
        var body = request.extraFieldsFormat == .gemini ? request.extraFields : [:]
        let (system, contents) = conversation(request.messages)
        body["contents"] = .array(contents)
        if !system.isEmpty { body["systemInstruction"] = .object(["parts": .array(system)]) }
        let declarations = request.tools.compactMap(declaration)
        if !declarations.isEmpty {
            body["tools"] = .array([.object(["functionDeclarations": .array(declarations)])])
            if let choice = request.toolChoice { body["toolConfig"] = .object(["functionCallingConfig": callingConfig(choice)]) }
        }
        var config: [String: JSONValue] = [:]
        if let limit = request.maxOutputTokens { config["maxOutputTokens"] = .int(limit) }
        if let temperature = request.temperature { config["temperature"] = .double(temperature) }
        if let topP = request.topP { config["topP"] = .double(topP) }
        if let topK = request.topK { config["topK"] = .int(topK) }
        if !request.stop.isEmpty { config["stopSequences"] = .array(request.stop.map(JSONValue.string)) }
        if request.extraFieldsFormat == .openAIChat {
            // Sampling fields of OpenAI's that Gemini has too (validated by the chat surface).
            for (field, name) in [("frequency_penalty", "frequencyPenalty"), ("presence_penalty", "presencePenalty")] {
                if let value = request.extraFields[field]?.doubleValue, value != 0, Self.takesPenalties(request.model) { config[name] = .double(value) }
            }
            if let seed = request.extraFields["seed"]?.intValue { config["seed"] = .int(seed) }
        }
        if let thinking = thinkingConfig(request) { config["thinkingConfig"] = thinking }
        switch request.responseFormat?["type"]?.stringValue {
        case "json_object"?:
            config["responseMimeType"] = .string("application/json")
        case "json_schema"?:
            config["responseMimeType"] = .string("application/json")
            if let schema = request.responseFormat?["json_schema"]?["schema"] { config["responseJsonSchema"] = schema }
        default:
            break
        }
        if !config.isEmpty { body["generationConfig"] = .object(config) }
        return .object(body)
    }

    /// Whether a model takes penalties: Gemini 1.x and 2.0 do, later Gemini models refuse them
    /// ("Penalty is not enabled for models/gemini-2.5-flash"); a name that is not Gemini's (a
    /// tuned or self-hosted model) gets what its client sent.
    static func takesPenalties(_ model: String) -> Bool {
        let name = model.lowercased()
        guard name.contains("gemini-") else { return true }
        return name.contains("gemini-1.") || name.contains("gemini-2.0")
    }

    /// What a Gemini model takes as `thinkingBudget`, by its name (Google's thinking guide):
    /// Pro models 128–32,768 and they cannot stop thinking; Flash-Lite 512–24,576; Flash, and
    /// names that say neither, 1–24,576.
    struct ThinkingRange: Equatable {
        var minimum: Int64
        var maximum: Int64
        var canStop: Bool

        init(model: String) {
            let name = model.lowercased()
            if name.contains("pro") {
                self = ThinkingRange(minimum: 128, maximum: 32768, canStop: false)
            } else if name.contains("flash-lite") {
                self = ThinkingRange(minimum: 512, maximum: 24576, canStop: true)
            } else {
                self = ThinkingRange(minimum: 1, maximum: 24576, canStop: true)
            }
        }

        init(minimum: Int64, maximum: Int64, canStop: Bool) {
            (self.minimum, self.maximum, self.canStop) = (minimum, maximum, canStop)
        }
    }

    /// `thinkingConfig`: a budget of 0 when the client said not to think (2.5 models think
    /// unless told so), or the least a model that cannot stop takes, without thoughts shown;
    /// otherwise the budget asked for, an effort's within the model's range, at most half the
    /// output limit when one is given (Gemini counts thoughts against `maxOutputTokens`, and a
    /// budget as large leaves no room for the answer) but never below the model's minimum. A
    /// client's own `reasoning.max_tokens` is otherwise sent as given.
    static func thinkingConfig(_ request: ModelRequest) -> JSONValue? {
        let range = ThinkingRange(model: request.model)
        if NativeRequestRules.thinkingOff(request.reasoning) {
            return .object(["thinkingBudget": .int(range.canStop ? 0 : range.minimum)])
        }
        guard var budget = NativeRequestRules.thinkingBudget(request.reasoning) else { return nil }
        if let asked = request.reasoning?.maxTokens {
            // As given (Anthropic's floor of 1024 is not Gemini's), but not below the model's least.
            budget = min(max(asked, range.minimum), NativeRequestRules.maximumBudget)
        } else {
            budget = min(budget, range.maximum)
        }
        if let limit = request.maxOutputTokens { budget = max(min(budget, limit / 2), range.minimum) }
        return .object(["thinkingBudget": .int(budget), "includeThoughts": .bool(request.reasoning?.exclude != true)])
    }

    /// The path after the base URL: the model (escaped: it is the client's text) and the method.
    static func path(model: String, stream: Bool) -> String {
        let bare = model.hasPrefix("models/") ? String(model.dropFirst("models/".count)) : model
        let escaped = bare.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
        return "/models/\(escaped):" + (stream ? "streamGenerateContent?alt=sse" : "generateContent")
    }

    /// RFC 3986's unreserved characters: everything else in a model name is escaped.
    private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    /// The system parts and the merged turns.
    static func conversation(_ messages: [ModelMessage]) -> (system: [JSONValue], contents: [JSONValue]) {
        var system: [JSONValue] = []
        var turns: [(role: String, parts: [JSONValue])] = []
        for message in messages.map(\.portable) {  // Anthropic's own blocks as text or left out
            let role: String
            var parts: [JSONValue]
            switch message.role {
            case .system, .developer:
                system += message.content.compactMap(part)
                continue
            case .user:
                (role, parts) = ("user", message.content.compactMap(part))
            case .assistant:
                (role, parts) = ("model", message.content.compactMap(part))
                for (position, call) in message.toolCalls.enumerated() {
                    var function: [String: JSONValue] = ["name": .string(call.name),
                                                         "args": call.argumentsObject ?? .object([:])]
                    if !call.id.isEmpty { function["id"] = .string(call.id) }
                    var part: [String: JSONValue] = ["functionCall": .object(function)]
                    if position == 0 { part["thoughtSignature"] = .string(placeholderThoughtSignature) }
                    parts.append(.object(part))
                }
            case .tool:
                var function: [String: JSONValue] = ["name": .string(functionName(answeredBy: message, in: messages) ?? ""),
                                                     "response": response(message.text, isError: message.isError)]
                if let id = message.toolCallID, !id.isEmpty { function["id"] = .string(id) }
                let media = message.content.filter { if case .text = $0 { false } else { true } }.compactMap(part)
                (role, parts) = ("user", [.object(["functionResponse": .object(function)])] + media)
            }
            guard !parts.isEmpty else { continue }
            if turns.last?.role == role {
                turns[turns.count - 1].parts += parts
            } else {
                turns.append((role, parts))
            }
        }
        return (system, turns.map { .object(["role": .string($0.role), "parts": .array($0.parts)]) })
    }

    /// The function a tool result answers: its own `name`, or the name of the call with its id.
    static func functionName(answeredBy message: ModelMessage, in messages: [ModelMessage]) -> String? {
        if let name = message.name, !name.isEmpty { return name }
        guard let id = message.toolCallID, !id.isEmpty else { return nil }
        return messages.lazy.flatMap(\.toolCalls).first { $0.id == id }?.name
    }

    /// A result as Gemini's `response`: a JSON object as it is, other text under `output`; a
    /// failed call's under `error`, Gemini's key for one (review 77A #6: it went as a success).
    private static func response(_ text: String, isError: Bool) -> JSONValue {
        let value = (try? JSONValue.parse(Array(text.utf8))).flatMap { if case .object = $0 { $0 } else { nil } }
        if isError { return .object(["error": value ?? .string(text)]) }
        return value ?? .object(["output": .string(text)])
    }

    /// A content part as a Gemini part; nil for empty text and parts `validate` refuses.
    static func part(_ part: ContentPart) -> JSONValue? {
        switch part {
        case .text(let text):
            return text.isEmpty ? nil : .object(["text": .string(text)])
        case .image(let url, _) where !url.lowercased().hasPrefix("data:"):
            var file: [String: JSONValue] = ["fileUri": .string(url)]
            if let type = NativeRequestRules.mediaType(ofURL: url) { file["mimeType"] = .string(type) }
            return .object(["fileData": .object(file)])
        case .image, .other:
            guard let data = NativeRequestRules.inlineData(part) else { return nil }
            return .object(["inlineData": .object(["mimeType": .string(data.mediaType), "data": .string(data.base64)])])
        case .providerBlock, .cacheBreakpoint:
            return nil  // `conversation` made each one text or left it out (`portable`)
        }
    }

    static func declaration(_ tool: ToolDefinition) -> JSONValue? {
        guard case .function(let name, let description, let parameters, _, _) = tool else { return nil }
        var object: [String: JSONValue] = ["name": .string(name)]
        if let description { object["description"] = .string(description) }
        if let parameters { object["parametersJsonSchema"] = parameters }
        return .object(object)
    }

    static func callingConfig(_ choice: ToolChoice) -> JSONValue {
        switch choice {
        case .auto: .object(["mode": .string("AUTO")])
        case .none: .object(["mode": .string("NONE")])
        case .required: .object(["mode": .string("ANY")])
        case .function(let name): .object(["mode": .string("ANY"), "allowedFunctionNames": .array([.string(name)])])
        }
    }
}
