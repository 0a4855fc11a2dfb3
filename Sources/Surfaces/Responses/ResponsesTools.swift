import Fusion
import GatewayCore
import Providers

/// A Responses request's `tools` and `tool_choice`, validated and in neutral form.
///
/// Function tools are flat in the Responses API (`{"type":"function","name","parameters",…}`,
/// openai-python `function_tool_param.py`); chat's nested form is refused with a hint rather than
/// guessed at. Every other tool (the fusion server tool in both spellings, OpenRouter's server
/// tools, OpenAI's hosted tools) is kept as `.other` at its index, so `FusionPlan.make` finds the
/// fusion tool and names `tools[i].parameters…` in its errors, and the rest reach the upstream as
/// they are (one that does not know a tool says so). OpenAI's own hosted tools and custom tools
/// are refused: a Response is served through chat completions (or Anthropic's or Gemini's API),
/// which has no such tools, and an upstream's 400 about them would not say the gateway built
/// that request (review 49 SDK F1).
enum ResponsesTools {
    /// OpenAI's Responses-only tool types (hosted tools, and custom tools, whose calls have no
    /// neutral form).
    static let responsesOnlyTypes: Set<String> = [
        "web_search", "web_search_preview", "web_search_preview_2025_03_11", "file_search", "code_interpreter", "mcp",
        "computer_use_preview", "computer_use", "image_generation", "local_shell", "shell", "apply_patch", "custom",
    ]

    static func refusal(_ type: String, param: String) -> APIError {
        .invalidRequest("The tool type '\(type.shortened(toBytes: 128))' is not offered through this gateway (a Response is served through chat completions, "
                        + "Anthropic's or Gemini's API, which have no such tool); use function tools.", param: param)
    }

    static func tools(_ value: JSONValue?) throws(APIError) -> [ToolDefinition] {
        guard let value, value != .null else { return [] }
        guard let list = value.arrayValue else { throw ResponsesRequest.invalidType("tools", expected: "an array", got: value) }
        var tools: [ToolDefinition] = []
        var names: Set<String> = []
        for (index, tool) in list.enumerated() {
            let definition = try self.tool(tool, path: "tools[\(index)]")
            // Every vendor's API refuses a name twice, after a call (review 107 #3).
            if let name = definition.functionName, !names.insert(name).inserted {
                throw .invalidRequest("Duplicate function name '\(name.shortened(toBytes: 128))' in 'tools': each tool needs its own name.",
                                      param: "tools[\(index)].name")
            }
            tools.append(definition)
        }
        return tools
    }

    static func tool(_ json: JSONValue, path: String) throws(APIError) -> ToolDefinition {
        guard case .object(let fields) = json, let type = fields["type"]?.stringValue else {
            throw .invalidRequest("'\(path)' must be an object with a string 'type'.", param: "\(path).type")
        }
        if responsesOnlyTypes.contains(type) { throw refusal(type, param: "\(path).type") }
        guard type == "function" else { return .other(json) }
        guard let nameValue = fields["name"] else {
            let hint = fields["function"] != nil
                ? " Responses function tools are flat ({\"type\": \"function\", \"name\": …, \"parameters\": …}); the nested 'function' object is chat's form."
                : ""
            throw .invalidRequest("Missing required parameter: '\(path).name'.\(hint)", param: "\(path).name", code: "missing_required_parameter")
        }
        guard let name = nameValue.stringValue, !name.isEmpty else {
            throw ResponsesRequest.invalidType("\(path).name", expected: "a non-empty string", got: nameValue)
        }
        guard name != FusionPlan.toolName else {
            throw .invalidRequest("The function name '\(FusionPlan.toolName)' is reserved for the fusion tool.", param: "\(path).name")
        }
        var description: String?
        if let value = fields["description"], value != .null {
            guard let text = value.stringValue else { throw ResponsesRequest.invalidType("\(path).description", expected: "a string", got: value) }
            description = text
        }
        var parameters: JSONValue?
        if let value = fields["parameters"], value != .null {
            guard value.objectValue != nil else {
                throw ResponsesRequest.invalidType("\(path).parameters", expected: "a JSON Schema object", got: value)
            }
            parameters = value
        }
        var strict: Bool?
        if let value = fields["strict"], value != .null {
            guard let flag = value.boolValue else { throw ResponsesRequest.invalidType("\(path).strict", expected: "a boolean", got: value) }
            strict = flag
        }
        return .function(name: name, description: description, parameters: parameters, strict: strict)
    }

    /// The choice in neutral form, or (for a choice chat has no case for: `allowed_tools`, a
    /// hosted tool) chat's JSON for it, forwarded as `tool_choice`.
    static func choice(_ value: JSONValue?, tools: [ToolDefinition], fusionOffered: Bool) throws(APIError) -> (ToolChoice?, JSONValue?) {
        guard let value, value != .null else { return (nil, nil) }
        switch value {
        case .string("auto"): return (.auto, nil)
        case .string("none"): return (ToolChoice.none, nil)
        case .string("required"):
            // Nothing to call: OpenAI refuses it, and Anthropic's and Gemini's encoders leave a
            // choice without tools out, so a forced call became a plain answer (review 107 #2).
            guard !tools.isEmpty || fusionOffered else {
                throw .invalidRequest("'tool_choice' is 'required', but the request offers no tools (add them to 'tools').", param: "tool_choice")
            }
            return (.required, nil)
        case .object(let fields):
            guard let type = fields["type"]?.stringValue else {
                throw .invalidRequest("'tool_choice' must have a string 'type'.", param: "tool_choice.type")
            }
            switch type {
            case "function":
                guard let name = fields["name"]?.stringValue, !name.isEmpty else {
                    throw .invalidRequest("'tool_choice.name' must be a non-empty string (Responses names the function at the top level).",
                                          param: "tool_choice.name")
                }
                // The fusion tool is the function named `fusion` to the outer model, as on chat
                // and Messages: naming it forces it (review 19 F5).
                guard tools.contains(where: { $0.functionName == name }) || (name == FusionPlan.toolName && fusionOffered) else {
                    throw .invalidRequest("'tool_choice.name' is '\(name.shortened(toBytes: 128))', which is not a function in 'tools'.", param: "tool_choice.name")
                }
                return (.function(name), nil)
            case _ where FusionPlan.toolTypes.contains(type):
                // Forcing the server tool: the outer model sees it as the function named `fusion`.
                guard fusionOffered else {
                    throw .invalidRequest("'tool_choice' asks for the fusion tool, but the request offers none (add it to 'tools').",
                                          param: "tool_choice.type")
                }
                return (.function(FusionPlan.toolName), nil)
            case "allowed_tools":
                return (nil, try allowedTools(fields))
            case _ where responsesOnlyTypes.contains(type):
                throw refusal(type, param: "tool_choice.type")
            default:
                return (nil, value)
            }
        default:
            throw ResponsesRequest.invalidType("tool_choice", expected: "'none', 'auto', 'required' or an object", got: value)
        }
    }

    /// `{"type":"allowed_tools","mode","tools":[{"type":"function","name"}]}` in chat's shape
    /// (`{"type":"allowed_tools","allowed_tools":{"mode","tools":[{"type":"function","function":{"name"}}]}}`).
    static func allowedTools(_ fields: [String: JSONValue]) throws(APIError) -> JSONValue {
        guard let mode = fields["mode"]?.stringValue, mode == "auto" || mode == "required" else {
            throw .invalidRequest("'tool_choice.mode' must be 'auto' or 'required'.", param: "tool_choice.mode")
        }
        guard let list = fields["tools"]?.arrayValue else {
            throw .invalidRequest("'tool_choice.tools' must be an array of tools.", param: "tool_choice.tools")
        }
        var tools: [JSONValue] = []
        for (index, tool) in list.enumerated() {
            guard case .object(var entry) = tool, let type = entry["type"]?.stringValue else {
                throw .invalidRequest("'tool_choice.tools[\(index)]' must be an object with a string 'type'.", param: "tool_choice.tools[\(index)]")
            }
            if type == "function" {
                guard let name = entry.removeValue(forKey: "name")?.stringValue else {
                    throw .invalidRequest("'tool_choice.tools[\(index)].name' must be a string.", param: "tool_choice.tools[\(index)].name")
                }
                entry["function"] = .object(["name": .string(name)])
            }
            tools.append(.object(entry))
        }
        return .object(["type": .string("allowed_tools"), "allowed_tools": .object(["mode": .string(mode), "tools": .array(tools)])])
    }
}
