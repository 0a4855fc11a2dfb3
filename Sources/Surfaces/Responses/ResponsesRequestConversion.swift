import GatewayCore
import Providers

extension ResponsesRequest {
    /// Fields the conversion consumes (translated, echoed only, or refused); every other field is
    /// forwarded upstream in `extraFields`, as chat forwards what it does not model.
    static let consumedFields: Set<String> = [
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens", "temperature",
        "top_p", "reasoning", "text", "stream", "stream_options", "store", "previous_response_id", "conversation", "prompt",
        "background", "metadata", "include", "truncation", "max_tool_calls", "top_logprobs", "models", "n", "logprobs", "user",
    ]

    /// The request in neutral form: `model` as the client named it, `messages` from `instructions`
    /// and `input`, function tools by name and the fusion server tool as `.other` (for
    /// `FusionPlan.make`), `plugins` in `extraFields` (where `FusionPlan` looks for the fusion
    /// plugin). Function-call ids are the Responses `call_id`s, so a `function_call_output`
    /// answers the call the model made.
    public func modelRequest() -> ModelRequest {
        var request = ModelRequest(model: model, messages: messages, stream: stream)
        // A Responses stream always ends with usage (in `response.completed`).
        request.includeUsage = true
        request.tools = tools
        request.clientBody = ClientBody(rawBody, keys: ["tools", "text"])
        request.toolChoice = toolChoice
        request.parallelToolCalls = fields["parallel_tool_calls"]?.boolValue
        request.maxOutputTokens = fields["max_output_tokens"]?.intValue
        request.temperature = fields["temperature"]?.doubleValue
        request.topP = fields["top_p"]?.doubleValue
        if let reasoning = fields["reasoning"]?.objectValue {
            let settings = ModelRequest.Reasoning(effort: reasoning["effort"]?.stringValue, maxTokens: reasoning["max_tokens"]?.intValue,
                                                  exclude: reasoning["exclude"]?.boolValue, enabled: reasoning["enabled"]?.boolValue)
            if settings != ModelRequest.Reasoning() { request.reasoning = settings }
        }
        request.user = fields["user"]?.stringValue
        request.responseFormat = Self.chatResponseFormat(fields["text"]?["format"])
        for (key, value) in fields where !Self.consumedFields.contains(key) { request.extraFields[key] = value }
        // A fusion plugin switched off is no request for Fusion, and never goes upstream.
        if let plugins = request.extraFields["plugins"]?.arrayValue {
            let kept = plugins.filter { $0["id"]?.stringValue != "fusion" || $0["enabled"]?.boolValue != false }
            request.extraFields["plugins"] = kept.isEmpty ? nil : .array(kept)
        }
        if let forwardedToolChoice { request.extraFields["tool_choice"] = forwardedToolChoice }
        if let verbosity = fields["text"]?["verbosity"], verbosity != .null { request.extraFields["verbosity"] = verbosity }
        return request
    }

    /// `text.format` as chat's `response_format` (Responses flattens the JSON schema; chat nests
    /// it under `json_schema`). Plain text is the default: nothing to say.
    static func chatResponseFormat(_ format: JSONValue?) -> JSONValue? {
        switch format?["type"]?.stringValue {
        case "json_object"?:
            return .object(["type": .string("json_object")])
        case "json_schema"?:
            var schema: [String: JSONValue] = [:]
            for key in ["name", "schema", "strict", "description"] {
                if let value = format?[key], value != .null { schema[key] = value }
            }
            return .object(["type": .string("json_schema"), "json_schema": .object(schema)])
        default:
            return nil
        }
    }

    /// The Response object's fields that repeat the request, with OpenAI's defaults where the
    /// request is silent (openai-python `response.py`: `tools`, `tool_choice` and
    /// `parallel_tool_calls` have no default there, so they are always present). `store` is
    /// always false: nothing is kept, whatever was asked.
    public var echoedFields: [String: JSONValue] {
        func given(_ key: String, _ fallback: JSONValue = .null) -> JSONValue {
            if let value = fields[key], value != .null { return value }
            return fallback
        }
        let reasoning = fields["reasoning"]
        return [
            "instructions": given("instructions"),
            "metadata": given("metadata", .object([:])),
            "temperature": given("temperature"),
            "top_p": given("top_p"),
            "max_output_tokens": given("max_output_tokens"),
            "max_tool_calls": given("max_tool_calls"),
            "top_logprobs": given("top_logprobs"),
            "tools": given("tools", .array([])),
            "tool_choice": given("tool_choice", .string("auto")),
            "parallel_tool_calls": given("parallel_tool_calls", .bool(true)),
            "reasoning": .object(["effort": reasoning?["effort"] ?? .null,
                                  "summary": reasoning?["summary"] ?? reasoning?["generate_summary"] ?? .null]),
            "text": Self.echoedText(given("text")),
            "truncation": given("truncation", .string("disabled")),
            "user": given("user"),
            "service_tier": given("service_tier"),
            "prompt_cache_key": given("prompt_cache_key"),
            "safety_identifier": given("safety_identifier"),
            "previous_response_id": .null,
            "store": .bool(false),
            "background": .bool(false),
        ]
    }

    /// The request's `text`, with the default `format` (`{"type":"text"}`) when it gives none, as
    /// OpenAI's API echoes it (review 77A #7: `{"verbosity":"low"}` came back without one).
    static func echoedText(_ text: JSONValue) -> JSONValue {
        var object = text.objectValue ?? [:]
        if object["format"] == nil || object["format"] == .null { object["format"] = .object(["type": .string("text")]) }
        return .object(object)
    }
}
