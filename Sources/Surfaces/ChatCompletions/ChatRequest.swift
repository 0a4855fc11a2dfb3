import GatewayCore
import Fusion

/// A validated `POST /v1/chat/completions` body.
///
/// Validation checks the type of every field the gateway or an upstream relies on and rejects
/// mistakes with a 400 naming the field, before any upstream is called. Unknown fields are
/// allowed and forwarded byte for byte: the gateway forwards the client's original bytes with
/// only `model` replaced (see `upstreamBody(model:)`).
public struct ChatRequest: Sendable {
    public let model: String
    public let stream: Bool
    /// `stream_options.include_usage`, as the client sent it.
    public let includeUsage: Bool
    /// The client asked to see a stream's usage: `stream_options.include_usage`, or OpenRouter's
    /// `usage: {include: true}` (review 74A #3: an app moved from OpenRouter saw no usage, so
    /// no cost, on any stream).
    public let asksForUsage: Bool
    /// `n`: how many choices the client asked for (1 to 128).
    public let choices: Int
    /// `models`: fallbacks tried in order when `model` fails before its first token.
    public let fallbackModels: [String]
    public let json: JSONValue
    /// The body as the client sent it.
    public let rawBody: [UInt8]
    /// An assistant message carries a fusion call's record (`FusionCallRecord`): the request
    /// must go upstream in neutral form, where the record is restored as a call and its result.
    public let carriesFusionRecords: Bool

    static let roles: Set<String> = ["system", "developer", "user", "assistant", "tool", "function"]

    /// Duplicate keys and numbers beyond Double's range are refused at any depth (see
    /// `JSONValue.parseRequest`): the raw body is what goes upstream.
    public init(body: [UInt8]) throws(APIError) {
        let json = try JSONValue.parseRequest(body)
        guard case .object(let fields) = json else {
            throw .invalidRequest("The request body must be a JSON object, not \(json.typeName).")
        }
        guard let modelValue = fields["model"] else {
            throw .invalidRequest("Missing required parameter: 'model'.", param: "model", code: "missing_required_parameter")
        }
        guard let model = modelValue.stringValue, !model.isEmpty else {
            throw Self.invalidType("model", expected: "a non-empty string", got: modelValue)
        }
        guard let messagesValue = fields["messages"] else {
            throw .invalidRequest("Missing required parameter: 'messages'.", param: "messages", code: "missing_required_parameter")
        }
        guard let messages = messagesValue.arrayValue else {
            throw Self.invalidType("messages", expected: "an array", got: messagesValue)
        }
        guard !messages.isEmpty else {
            throw .invalidRequest("'messages' must contain at least one message.", param: "messages")
        }
        var carriesFusionRecords = false
        for (index, message) in messages.enumerated() {
            try Self.validateMessage(message, index: index)
            if message["role"]?.stringValue == "assistant", let details = message["reasoning_details"], details != .null {
                try FusionCallRecord.validate(details, of: message, path: "messages[\(index)].reasoning_details")
                carriesFusionRecords = carriesFusionRecords || details.arrayValue?.contains(where: FusionCallRecord.isRecord) == true
            }
        }

        var stream = false
        if let value = fields["stream"], value != .null {
            guard let flag = value.boolValue else { throw Self.invalidType("stream", expected: "a boolean", got: value) }
            stream = flag
        }
        var includeUsage = false
        if let value = fields["stream_options"], value != .null {
            guard let options = value.objectValue else {
                throw Self.invalidType("stream_options", expected: "an object", got: value)
            }
            if let usage = options["include_usage"], usage != .null {
                guard let flag = usage.boolValue else {
                    throw Self.invalidType("stream_options.include_usage", expected: "a boolean", got: usage)
                }
                includeUsage = flag
            }
        }
        for name in ["max_tokens", "max_completion_tokens"] {
            if let value = fields[name], value != .null {
                // No model writes 2^31 tokens; Gemini's and others' fields are 32-bit.
                guard let count = value.intValue, (1...Int64(Int32.max)).contains(count) else {
                    throw Self.invalidType(name, expected: "an integer from 1 to \(Int32.max)", got: value)
                }
            }
        }
        if let value = fields["n"], value != .null {
            guard let count = value.intValue, (1...128).contains(count) else {
                throw Self.invalidType("n", expected: "an integer between 1 and 128", got: value)
            }
        }
        if let value = fields["user"], value != .null, value.stringValue == nil {
            throw Self.invalidType("user", expected: "a string", got: value)
        }
        try Self.validateNumber(fields, "temperature", in: 0...2)
        try Self.validateNumber(fields, "top_p", in: 0...1)
        try Self.validateNumber(fields, "frequency_penalty", in: -2...2)
        try Self.validateNumber(fields, "presence_penalty", in: -2...2)
        if let value = fields["seed"], value != .null, value.intValue == nil {
            throw Self.invalidType("seed", expected: "an integer", got: value)
        }
        if let value = fields["stop"], value != .null {
            switch value {
            case .string: break
            case .array(let items) where items.allSatisfy({ $0.stringValue != nil }): break
            default: throw Self.invalidType("stop", expected: "a string or an array of strings", got: value)
            }
        }
        if let value = fields["tools"], value != .null {
            guard let tools = value.arrayValue else { throw Self.invalidType("tools", expected: "an array", got: value) }
            var names: Set<String> = []
            for (index, tool) in tools.enumerated() {
                guard let type = tool["type"]?.stringValue else {
                    throw .invalidRequest("'tools[\(index)].type' must be a string.", param: "tools[\(index)].type")
                }
                if type == "function" {
                    guard let name = tool["function"]?["name"]?.stringValue, !name.isEmpty else {
                        throw .invalidRequest("'tools[\(index)].function.name' must be a non-empty string.",
                                              param: "tools[\(index)].function.name")
                    }
                    // Every vendor's API refuses a name twice, after a call (review 107 #3).
                    guard names.insert(name).inserted else {
                        throw .invalidRequest("Duplicate function name '\(name.shortened(toBytes: 128))' in 'tools': each tool needs its own name.",
                                              param: "tools[\(index)].function.name")
                    }
                }
            }
        }
        if let value = fields["tool_choice"], value != .null {
            switch value {
            case .string("required"):
                // Nothing to call: OpenAI refuses it, and Anthropic's and Gemini's encoders leave a
                // choice without tools out, so a forced call became a plain answer (review 107 #2).
                let offersTools = !(fields["tools"]?.arrayValue ?? []).isEmpty || FusionPlan.aliases.contains(model)
                    || (fields["plugins"]?.arrayValue ?? []).contains { $0["id"]?.stringValue == "fusion" && $0["enabled"]?.boolValue != false }
                guard offersTools else {
                    throw .invalidRequest("'tool_choice' is 'required', but the request offers no tools (add them to 'tools').", param: "tool_choice")
                }
            case .string(let choice) where ["none", "auto"].contains(choice): break
            case .object(let choice):
                // A named function (OpenAI's shape), OpenAI's `allowed_tools`, or a fusion tool's
                // type; anything else was read as no choice at all (review 48 surfaces #5).
                switch choice["type"]?.stringValue {
                case "function"?:
                    guard let name = choice["function"]?["name"]?.stringValue, !name.isEmpty else {
                        throw .invalidRequest("'tool_choice.function.name' must be a non-empty string (chat's shape: "
                                              + #"{"type":"function","function":{"name":…}})."#, param: "tool_choice.function.name")
                    }
                case "allowed_tools"?:
                    break
                case "custom"?:
                    // OpenAI's custom tools (free-form input): forwarded to an OpenAI-compatible
                    // upstream; Anthropic and Gemini refuse them by name (review 49 #3).
                    guard let name = choice["custom"]?["name"]?.stringValue, !name.isEmpty else {
                        throw .invalidRequest("'tool_choice.custom.name' must be a non-empty string.", param: "tool_choice.custom.name")
                    }
                case let type? where FusionPlan.toolTypes.contains(type):
                    break
                default:
                    throw Self.invalidType("tool_choice.type", expected: "'function', 'custom', 'allowed_tools' or a fusion tool's type",
                                           got: choice["type"] ?? .null)
                }
            default: throw Self.invalidType("tool_choice", expected: "'none', 'auto', 'required' or an object", got: value)
            }
        }
        if let value = fields["response_format"], value != .null {
            guard value["type"]?.stringValue != nil else {
                throw Self.invalidType("response_format", expected: "an object with a string 'type'", got: value)
            }
        }
        if let value = fields["reasoning"], value != .null {
            guard let reasoning = value.objectValue else { throw Self.invalidType("reasoning", expected: "an object", got: value) }
            // OpenRouter's fields, checked as Responses checks them: read with a lenient reader, a
            // wrong type was "not given" (`"enabled": "false"` turned thinking on: review 71B #1).
            _ = try ResponsesRequest.integer(reasoning["max_tokens"], "reasoning.max_tokens", 1...Int64(Int32.max))
            _ = try ResponsesRequest.flag(reasoning["exclude"], "reasoning.exclude")
            _ = try ResponsesRequest.flag(reasoning["enabled"], "reasoning.enabled")
        }
        // An effort no provider knows would otherwise become a default budget, silently.
        for (value, param) in [(fields["reasoning"]?["effort"], "reasoning.effort"), (fields["reasoning_effort"], "reasoning_effort")] {
            guard let value, value != .null else { continue }
            guard let effort = value.stringValue, ResponsesRequest.reasoningEfforts.contains(effort) else {
                throw .invalidRequest("Invalid value for '\(param)': expected one of \(ResponsesRequest.reasoningEfforts.joined(separator: ", ")).",
                                      param: param)
            }
        }
        fallbackModels = try FallbackModels.parse(fields["models"], besides: model)

        self.model = model
        self.stream = stream
        self.includeUsage = includeUsage
        asksForUsage = includeUsage || fields["usage"]?["include"] == .bool(true)
        choices = fields["n"]?.intValue.map { Int($0) } ?? 1  // validated above: 1...128
        self.json = json
        self.rawBody = body
        self.carriesFusionRecords = carriesFusionRecords
    }

    /// The client's bytes with the `model` value replaced by `model`; every other byte, unknown
    /// fields included, is forwarded untouched, but for one thing: a stream always asks for usage
    /// (`stream_options.include_usage`), whether the client did or not, so every completion is
    /// accounted (tokens per minute, budgets, the record); the relay drops the usage chunk for a
    /// client that did not ask (`SSERelay`).
    /// `maxTokensField`: the field the upstream honours for the output limit; a client's limit
    /// sent under the other name is renamed, so the limit is enforced either way.
    /// `asksForUsage`: false for an upstream that refuses `stream_options` (the client's own go
    /// as sent; `ProviderEndpoint.asksForStreamUsage`).
    /// `toOpenRouter`: OpenRouter's `usage: {include: …}` goes only to OpenRouter (the gateway asks
    /// every upstream for usage itself; OpenAI's API refuses arguments it does not know: review 75A #8).
    public func upstreamBody(model upstreamModel: String, maxTokensField: String = "max_tokens", asksForUsage: Bool = true,
                             toOpenRouter: Bool = true) -> [UInt8] {
        let otherField = maxTokensField == "max_tokens" ? "max_completion_tokens" : "max_tokens"
        let addUsage = stream && !includeUsage && asksForUsage
        let fusionPlugin = { (plugin: JSONValue) in plugin["id"]?.stringValue == "fusion" }
        // The model's value where the client's bytes spell its key plainly; a key written with
        // escapes (`"mod\u0065l"`, the same key to the parser) is rewritten whole (review 45
        // proxy #3: sent as it came, it named the client's model, not the route's, and asked
        // for no usage).
        let modelRange = JSONScanner.rangeOfTopLevelValue(forKey: "model", in: rawBody)
        if case .object(var fields) = json,
           modelRange == nil || fields["models"] != nil || fields[otherField] != nil
            || (addUsage && fields["stream_options"] != nil) || fields["plugins"]?.arrayValue?.contains(where: fusionPlugin) == true
            || fields["stream_options"]?["include_fusion_events"] != nil
            || (!toOpenRouter && fields["usage"]?["include"] != nil) {
            // Fallbacks are the gateway's business; an upstream may reject the unknown field. So
            // is the fusion plugin, switched off (`enabled: false`) or not: it never goes upstream.
            fields["models"] = nil
            if !toOpenRouter, fields["usage"]?["include"] != nil { fields["usage"] = nil }
            if let plugins = fields["plugins"]?.arrayValue {
                let others = plugins.filter { !fusionPlugin($0) }
                fields["plugins"] = others.isEmpty ? nil : .array(others)
            }
            fields["model"] = .string(upstreamModel)
            // One output limit goes up, under the upstream's field: the one the gateway read and
            // held spend for (`max_completion_tokens` first). Both sent, an upstream honouring
            // one field read the other (review 48 surfaces #2: 1 token held, 2,000,000 written).
            let limit = [fields["max_completion_tokens"], fields["max_tokens"]].lazy.compactMap { $0 }.first { $0 != .null }
            let limitChanged = fields[otherField] != nil
            fields["max_tokens"] = nil
            fields["max_completion_tokens"] = nil
            if let limit { fields[maxTokensField] = limit }
            // The gateway's own option (review 43 conformance #3): OpenAI's `stream_options` knows
            // only its own members.
            if var options = fields["stream_options"]?.objectValue {
                options["include_fusion_events"] = nil
                fields["stream_options"] = options.isEmpty ? nil : .object(options)
            }
            if addUsage {
                var options = fields["stream_options"]?.objectValue ?? [:]
                options["include_usage"] = .bool(true)
                fields["stream_options"] = .object(options)
            }
            var changed: Set<String> = ["model", "plugins", "stream_options"]
            if limitChanged { changed.insert(maxTokensField) }
            return ClientOrderedObject.encode(fields, changed: changed, renamed: [otherField: maxTokensField], rawBody: rawBody)
        }
        guard let range = modelRange else { return json.serialized() }  // not reached: `json` is an object
        var out: [UInt8] = []
        out.reserveCapacity(rawBody.count + upstreamModel.utf8.count + Self.usageOption.count)
        out.append(contentsOf: rawBody[..<range.lowerBound])
        JSONWriting.appendString(upstreamModel, to: &out)
        if addUsage {
            // Right after the model's value, as the object's next member (the client sent no
            // stream_options: those it sent are merged above).
            out.append(contentsOf: Self.usageOption)
        }
        out.append(contentsOf: rawBody[range.upperBound...])
        return out
    }

    private static let usageOption = Array(#","stream_options":{"include_usage":true}"#.utf8)

    private static func validateMessage(_ message: JSONValue, index: Int) throws(APIError) {
        let path = "messages[\(index)]"
        guard case .object(let fields) = message else {
            throw invalidType(path, expected: "an object", got: message)
        }
        guard let roleValue = fields["role"] else {
            throw .invalidRequest("Missing required parameter: '\(path).role'.", param: "\(path).role",
                                  code: "missing_required_parameter")
        }
        guard let role = roleValue.stringValue, roles.contains(role) else {
            throw .invalidRequest(
                "Invalid value for '\(path).role': expected one of \(roles.sorted().joined(separator: ", ")).",
                param: "\(path).role")
        }
        switch fields["content"] {
        case .string?:
            break
        case .array(let parts)?:
            // As OpenAI's API: an empty list or a text part without text is refused, not dropped
            // (a provider that needs every turn to have content would lose the turn).
            if parts.isEmpty && !(role == "assistant" && fields["tool_calls"]?.arrayValue?.isEmpty == false) {
                throw .invalidRequest("Invalid '\(path).content': empty array. Expected an array with minimum length 1.",
                                      param: "\(path).content", code: "empty_array")
            }
            for (partIndex, part) in parts.enumerated() {
                guard let type = part["type"]?.stringValue else {
                    throw .invalidRequest("'\(path).content[\(partIndex)]' must be an object with a string 'type'.",
                                          param: "\(path).content[\(partIndex)]")
                }
                guard type == "text" else { continue }
                guard let text = part["text"] else {
                    throw .invalidRequest("Missing required parameter: '\(path).content[\(partIndex)].text'.",
                                          param: "\(path).content[\(partIndex)].text", code: "missing_required_parameter")
                }
                if text.stringValue == nil { throw invalidType("\(path).content[\(partIndex)].text", expected: "a string", got: text) }
            }
        case .null?, nil:
            // Only an assistant message that calls tools may omit its content.
            guard role == "assistant" else {
                throw .invalidRequest("Missing required parameter: '\(path).content'.", param: "\(path).content",
                                      code: "missing_required_parameter")
            }
        case let other?:
            throw invalidType("\(path).content", expected: "a string or an array of content parts", got: other)
        }
        // As OpenAI's API checks them: read loosely, a call's arguments sent as an object became
        // a call without arguments for Anthropic and Gemini, and calls that were not an array
        // were dropped, the conversation silently changed (review 48 surfaces #4).
        if let value = fields["tool_calls"], value != .null {
            guard role == "assistant", let calls = value.arrayValue else {
                throw role == "assistant" ? invalidType("\(path).tool_calls", expected: "an array", got: value)
                    : .invalidRequest("Only an assistant message has 'tool_calls'.", param: "\(path).tool_calls")
            }
            for (callIndex, call) in calls.enumerated() {
                let callPath = "\(path).tool_calls[\(callIndex)]"
                guard case .object(let callFields) = call else { throw invalidType(callPath, expected: "an object", got: call) }
                guard let id = callFields["id"], id.stringValue != nil else {
                    throw .invalidRequest("Missing required parameter: '\(callPath).id' (a string).", param: "\(callPath).id",
                                          code: "missing_required_parameter")
                }
                if callFields["type"]?.stringValue == "custom" {
                    // A custom tool's call: its input is free-form text (review 49 #3).
                    guard let name = callFields["custom"]?["name"]?.stringValue, !name.isEmpty else {
                        throw .invalidRequest("'\(callPath).custom.name' must be a non-empty string.", param: "\(callPath).custom.name")
                    }
                    guard callFields["custom"]?["input"]?.stringValue != nil else {
                        throw invalidType("\(callPath).custom.input", expected: "a string", got: callFields["custom"]?["input"] ?? .null)
                    }
                    continue
                }
                if let type = callFields["type"], type != .null, type.stringValue != "function" {
                    throw invalidType("\(callPath).type", expected: "'function' or 'custom'", got: type)
                }
                guard case .object(let function)? = callFields["function"] else {
                    throw .invalidRequest("Missing required parameter: '\(callPath).function' (an object).", param: "\(callPath).function",
                                          code: "missing_required_parameter")
                }
                guard let name = function["name"]?.stringValue, !name.isEmpty else {
                    throw .invalidRequest("'\(callPath).function.name' must be a non-empty string.", param: "\(callPath).function.name")
                }
                guard let arguments = function["arguments"], arguments.stringValue != nil else {
                    throw invalidType("\(callPath).function.arguments", expected: "a string (the arguments as JSON text)",
                                      got: function["arguments"] ?? .null)
                }
            }
        }
        if role == "tool" {
            guard let id = fields["tool_call_id"], id.stringValue != nil else {
                throw .invalidRequest("Missing required parameter: '\(path).tool_call_id' (a string).", param: "\(path).tool_call_id",
                                      code: "missing_required_parameter")
            }
        }
    }

    private static func validateNumber(_ fields: [String: JSONValue], _ name: String, in range: ClosedRange<Double>) throws(APIError) {
        guard let value = fields[name], value != .null else { return }
        guard let number = value.doubleValue, range.contains(number) else {
            throw invalidType(name, expected: "a number between \(range.lowerBound.formatted) and \(range.upperBound.formatted)", got: value)
        }
    }

    static func invalidType(_ name: String, expected: String, got value: JSONValue) -> APIError {
        .invalidRequest("Invalid value for '\(name)': expected \(expected), got \(described(value)).", param: name, code: "invalid_type")
    }

    /// What a refused value was, for an error message: its type, and a number's or a string's
    /// first 40 characters.
    static func described(_ value: JSONValue) -> String {
        value.typeName == "number" || value.typeName == "string" ? "\(value.typeName) \(value.compactDescription)" : value.typeName
    }
}

extension Double {
    fileprivate var formatted: String { rounded() == self ? String(Int(self)) : String(self) }
}

extension JSONValue {
    fileprivate var compactDescription: String {
        let text = String(decoding: serialized(), as: UTF8.self)
        return text.count > 40 ? String(text.prefix(40)) + "…" : text
    }
}
