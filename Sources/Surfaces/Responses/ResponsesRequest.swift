import Fusion
import GatewayCore
import Providers

/// A validated `POST /v1/responses` body (OpenAI's Responses API, as openai-python 3.57.0
/// `response_create_params.py` types it, with OpenRouter's `plugins` and `models`).
///
/// Every field the gateway reads is checked, and a mistake is a 400 in OpenAI's shape naming
/// it in `param`; duplicate keys and numbers beyond a double's range are refused at any depth
/// (`JSONValue.parseRequest`), as on chat completions. Unlike chat, the body is not forwarded:
/// it is translated (`modelRequest()`), so fields are sorted into four kinds:
/// - modelled: converted into `ModelRequest` (`input`, `instructions`, `tools`, …);
/// - echoed only: shown back in the Response object, no effect (`metadata`, `truncation`,
///   `include`, `max_tool_calls`, `top_logprobs`, `store`);
/// - refused: what needs server-side state, which a stateless gateway cannot honour
///   (`previous_response_id`, `conversation`, `prompt`, `background: true`);
/// - anything else (`user`, `service_tier`, OpenRouter's `provider`, `plugins`, …): forwarded
///   upstream as it is, like chat's unknown fields.
public struct ResponsesRequest: Sendable {
    public let model: String
    public let stream: Bool
    /// `models`: fallbacks tried in order when `model` fails before its first token (OpenRouter).
    public let fallbackModels: [String]
    /// `stream_options.openrouter_fusion_events`: send `response.fusion_call.panel.failed` exactly
    /// as OpenRouter types it, with a top-level `error` string, which makes the official OpenAI
    /// SDKs abort the stream (see `ResponsesFusionRenderer`).
    public let openRouterFusionEvents: Bool
    /// `stream_options.include_fusion_events`: whether the `response.fusion_call.*` events are
    /// sent (nil: the client did not say; see `ResponsesFusionRenderer.sendsEvents`).
    public let includeFusionEvents: Bool?
    /// `instructions` (a system message) then `input`.
    public let messages: [ModelMessage]
    public let tools: [ToolDefinition]
    let toolChoice: ToolChoice?
    /// A tool choice chat has no case for, in chat's shape (forwarded as `tool_choice`).
    let forwardedToolChoice: JSONValue?
    let fields: [String: JSONValue]
    /// The body's size (a rough prompt size when an upstream reports no usage).
    public let bodyBytes: Int
    /// The body as sent: its tools' and format's objects go upstream as written (`ClientBody`).
    let rawBody: [UInt8]

    static let reasoningEfforts = ["none", "minimal", "low", "medium", "high", "xhigh", "max"]
    static let summaries = ["auto", "concise", "detailed"]

    public init(body: [UInt8]) throws(APIError) {
        let json = try JSONValue.parseRequest(body)
        guard case .object(let fields) = json else {
            throw .invalidRequest("The request body must be a JSON object, not \(json.typeName).")
        }
        self.fields = fields
        bodyBytes = body.count
        rawBody = body
        guard let modelValue = fields["model"] else {
            throw .invalidRequest("Missing required parameter: 'model'.", param: "model", code: "missing_required_parameter")
        }
        guard let model = modelValue.stringValue, !model.isEmpty else {
            throw Self.invalidType("model", expected: "a non-empty string", got: modelValue)
        }
        self.model = model
        try Self.refuseState(fields)

        guard let input = fields["input"], input != .null else {
            throw .invalidRequest("Missing required parameter: 'input'.", param: "input", code: "missing_required_parameter")
        }
        var messages = try ResponsesInput.messages(input)
        if let value = fields["instructions"], value != .null {
            guard let text = value.stringValue else { throw Self.invalidType("instructions", expected: "a string", got: value) }
            if !text.isEmpty {
                var system = ModelMessage(role: .system, text: text)
                system.origin = MessageOrigin(.responses, path: "instructions", parts: ["instructions"])
                messages.insert(system, at: 0)
            }
        }
        self.messages = messages

        tools = try ResponsesTools.tools(fields["tools"])
        let fusionOffered = tools.contains { if case .other(let tool) = $0 { FusionPlan.toolTypes.contains(tool["type"]?.stringValue ?? "") } else { false } }
            || FusionPlan.aliases.contains(model)
            || (fields["plugins"]?.arrayValue ?? []).contains { $0["id"]?.stringValue == "fusion" && $0["enabled"]?.boolValue != false }
        (toolChoice, forwardedToolChoice) = try ResponsesTools.choice(fields["tool_choice"], tools: tools, fusionOffered: fusionOffered)

        stream = try Self.flag(fields["stream"], "stream") ?? false
        for name in ["parallel_tool_calls", "store"] { _ = try Self.flag(fields[name], name) }
        _ = try Self.integer(fields["max_output_tokens"], "max_output_tokens", 1...Int64(Int32.max))
        _ = try Self.integer(fields["max_tool_calls"], "max_tool_calls", 1...Int64(Int32.max))
        // No provider's log probabilities reach a Response here (each `output_text` carries an empty
        // `logprobs`): asking for them is refused rather than answered without (review 18 B11).
        if let count = try Self.integer(fields["top_logprobs"], "top_logprobs", 0...20), count > 0 {
            throw .invalidRequest("This gateway returns no log probabilities on /v1/responses; leave 'top_logprobs' out.", param: "top_logprobs")
        }
        // Chat's fields for several choices and their log probabilities have no place in a
        // Response (one output): forwarded, an upstream answered `n` choices mixed into one
        // message at `n` times the price (review 44 Responses #4).
        if let count = try Self.integer(fields["n"], "n", 1...Int64(Int32.max)), count != 1 {
            throw .invalidRequest("A Response has one output; 'n' is a chat completions field. Send one request per answer.", param: "n")
        }
        // Chat's output limits: Responses' is `max_output_tokens`. Forwarded beside it, an
        // upstream honouring one read a limit nothing checked or held (review 48 surfaces #3).
        for name in ["max_tokens", "max_completion_tokens"] where fields[name] != nil && fields[name] != .null {
            throw .invalidRequest("'\(name)' is a chat completions field; a Response's output limit is 'max_output_tokens'.", param: name)
        }
        if try Self.flag(fields["logprobs"], "logprobs") == true {
            throw .invalidRequest("This gateway returns no log probabilities on /v1/responses; leave 'logprobs' out.", param: "logprobs")
        }
        _ = try Self.number(fields["temperature"], "temperature", 0...2)
        _ = try Self.number(fields["top_p"], "top_p", 0...1)
        _ = try Self.choice(fields["truncation"], "truncation", ["auto", "disabled"])
        for name in ["user", "safety_identifier", "prompt_cache_key", "service_tier"] {
            if let value = fields[name], value != .null, value.stringValue == nil { throw Self.invalidType(name, expected: "a string", got: value) }
        }
        if let value = fields["include"], value != .null {
            guard let list = value.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else {
                throw Self.invalidType("include", expected: "an array of strings", got: value)
            }
            if let position = list.firstIndex(of: .string("message.output_text.logprobs")) {
                throw .invalidRequest("This gateway returns no log probabilities on /v1/responses; leave 'message.output_text.logprobs' out of 'include'.",
                                      param: "include[\(position)]")
            }
        }
        try Self.validateMetadata(fields["metadata"])
        try Self.validateReasoning(fields["reasoning"])
        try Self.validateText(fields["text"])
        try Self.validatePlugins(fields["plugins"])

        var openRouterEvents = false
        var includeEvents: Bool?
        if let value = fields["stream_options"], value != .null {
            guard let options = value.objectValue else { throw Self.invalidType("stream_options", expected: "an object", got: value) }
            _ = try Self.flag(options["include_obfuscation"], "stream_options.include_obfuscation")
            openRouterEvents = try Self.flag(options["openrouter_fusion_events"], "stream_options.openrouter_fusion_events") ?? false
            includeEvents = try Self.flag(options["include_fusion_events"], "stream_options.include_fusion_events")
        }
        openRouterFusionEvents = openRouterEvents
        includeFusionEvents = includeEvents

        fallbackModels = try FallbackModels.parse(fields["models"], besides: model)
    }

    /// Fields that only make sense with state kept on the server. Refused with a reason rather
    /// than ignored: a client relying on them would silently get an answer without its context.
    static func refuseState(_ fields: [String: JSONValue]) throws(APIError) {
        let stateless = "this gateway is stateless and stores no responses"
        if let value = fields["previous_response_id"], value != .null {
            throw .invalidRequest("'previous_response_id' is not supported: \(stateless); send the whole conversation in 'input' (earlier output items can be sent back as they are).",
                                  param: "previous_response_id", code: "unsupported_parameter")
        }
        if let value = fields["conversation"], value != .null {
            throw .invalidRequest("'conversation' is not supported: \(stateless); send the whole conversation in 'input'.",
                                  param: "conversation", code: "unsupported_parameter")
        }
        if let value = fields["prompt"], value != .null {
            throw .invalidRequest("'prompt' (a stored prompt template) is not supported: \(stateless); send 'instructions' and 'input'.",
                                  param: "prompt", code: "unsupported_parameter")
        }
        if try flag(fields["background"], "background") == true {
            throw .invalidRequest("'background' is not supported: \(stateless), so a background response could never be retrieved.",
                                  param: "background", code: "unsupported_parameter")
        }
    }

    static func validateMetadata(_ value: JSONValue?) throws(APIError) {
        guard let value, value != .null else { return }
        // OpenAI's limits: 16 pairs, keys up to 64 characters, values up to 512.
        guard let pairs = value.objectValue, pairs.count <= 16 else {
            throw invalidType("metadata", expected: "an object of at most 16 string values", got: value)
        }
        for key in pairs.keys.sorted() {
            guard key.count <= 64 else { throw .invalidRequest("'metadata' keys are at most 64 characters.", param: "metadata.\(key)") }
            guard let text = pairs[key]?.stringValue, text.count <= 512 else {
                throw .invalidRequest("'metadata.\(key)' must be a string of at most 512 characters.", param: "metadata.\(key)")
            }
        }
    }

    static func validateReasoning(_ value: JSONValue?) throws(APIError) {
        guard let value, value != .null else { return }
        guard let reasoning = value.objectValue else { throw invalidType("reasoning", expected: "an object", got: value) }
        _ = try choice(reasoning["effort"], "reasoning.effort", reasoningEfforts)
        _ = try choice(reasoning["summary"], "reasoning.summary", summaries)
        _ = try choice(reasoning["generate_summary"], "reasoning.generate_summary", summaries)
        // OpenRouter's extensions of the same object.
        _ = try integer(reasoning["max_tokens"], "reasoning.max_tokens", 1...Int64(Int32.max))
        _ = try flag(reasoning["exclude"], "reasoning.exclude")
        _ = try flag(reasoning["enabled"], "reasoning.enabled")
    }

    static func validateText(_ value: JSONValue?) throws(APIError) {
        guard let value, value != .null else { return }
        guard let text = value.objectValue else { throw invalidType("text", expected: "an object", got: value) }
        _ = try choice(text["verbosity"], "text.verbosity", ["low", "medium", "high"])
        guard let format = text["format"], format != .null else { return }
        guard let type = format["type"]?.stringValue else {
            throw .invalidRequest("'text.format' must be an object with a string 'type'.", param: "text.format.type")
        }
        switch type {
        case "text", "json_object":
            break
        case "json_schema":
            // Flat in the Responses API: name and schema beside the type (chat nests them).
            guard format["name"]?.stringValue?.isEmpty == false else {
                throw .invalidRequest("'text.format.name' must be a non-empty string.", param: "text.format.name")
            }
            guard format["schema"]?.objectValue != nil else {
                throw .invalidRequest("'text.format.schema' must be a JSON Schema object.", param: "text.format.schema")
            }
            _ = try flag(format["strict"], "text.format.strict")
        default:
            throw .invalidRequest("Invalid value for 'text.format.type': expected one of text, json_object, json_schema.",
                                  param: "text.format.type")
        }
    }

    /// OpenRouter's plugins: an array of objects with a string `id` (the fusion plugin's own
    /// fields are `FusionPlan`'s to check; the others are forwarded untouched).
    static func validatePlugins(_ value: JSONValue?) throws(APIError) {
        guard let value, value != .null else { return }
        guard let list = value.arrayValue else { throw invalidType("plugins", expected: "an array", got: value) }
        for (index, plugin) in list.enumerated() where plugin["id"]?.stringValue == nil {
            throw .invalidRequest("'plugins[\(index)]' must be an object with a string 'id'.", param: "plugins[\(index)].id")
        }
    }

    // MARK: field readers (nil: absent or null)

    static func flag(_ value: JSONValue?, _ name: String) throws(APIError) -> Bool? {
        guard let value, value != .null else { return nil }
        guard let flag = value.boolValue else { throw invalidType(name, expected: "a boolean", got: value) }
        return flag
    }

    static func integer(_ value: JSONValue?, _ name: String, _ range: ClosedRange<Int64>) throws(APIError) -> Int64? {
        guard let value, value != .null else { return nil }
        guard let number = value.intValue, range.contains(number) else {
            throw invalidType(name, expected: "an integer from \(range.lowerBound) to \(range.upperBound)", got: value)
        }
        return number
    }

    static func number(_ value: JSONValue?, _ name: String, _ range: ClosedRange<Double>) throws(APIError) -> Double? {
        guard let value, value != .null else { return nil }
        guard let number = value.doubleValue, range.contains(number) else {
            throw invalidType(name, expected: "a number from \(Int(range.lowerBound)) to \(Int(range.upperBound))", got: value)
        }
        return number
    }

    static func choice(_ value: JSONValue?, _ name: String, _ allowed: [String]) throws(APIError) -> String? {
        guard let value, value != .null else { return nil }
        guard let text = value.stringValue, allowed.contains(text) else {
            throw invalidType(name, expected: "one of \(allowed.joined(separator: ", "))", got: value)
        }
        return text
    }

    static func invalidType(_ name: String, expected: String, got value: JSONValue) -> APIError {
        ChatRequest.invalidType(name, expected: expected, got: value)
    }
}
