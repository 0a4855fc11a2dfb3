import GatewayCore

/// The texts and request bodies of Fusion's inner calls.
public enum FusionPrompts {
    /// Marks the judge's system prompt (the simulated models recognise their role by it).
    public static let judgeMarker = "You are the judge of a fusion-gateway deliberation."

    /// The fusion tool as the outer model sees it: an ordinary function.
    public static func toolDefinition(panelSize: Int) -> JSONValue {
        .object([
            "type": .string("function"),
            "function": .object([
                "name": .string(FusionPlan.toolName),
                "description": .string(
                    "Consult a panel of \(panelSize) AI models that answer the question in parallel; a judge compares "
                        + "their answers and returns a structured analysis (consensus, contradictions, partial coverage, "
                        + "unique insights, blind spots). Use it for research questions, critiques, comparisons, or "
                        + "whenever being wrong is costly. Then write the final answer from the analysis."),
                "parameters": .object([
                    "type": .string("object"),
                    "properties": .object([
                        "question": .object([
                            "type": .string("string"),
                            "description": .string("The question for the panel; defaults to the user's last message."),
                        ]),
                    ]),
                ]),
            ]),
        ])
    }

    /// Plain text of a message's `content` (a string or content parts).
    public static func text(of content: JSONValue?) -> String {
        switch content {
        case .string(let text)?: return text
        case .array(let parts)?: return parts.compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
        default: return ""
        }
    }

    /// The panel's messages: the conversation with tool traffic rendered as text (members are
    /// not given the caller's tools), or only the question.
    public static func panelMessages(_ request: FusionRequest, question: String, context: FusionSettings.PanelContext) -> [JSONValue] {
        var messages: [JSONValue] = []
        if context == .conversation {
            for message in request.messages {
                let role = message["role"]?.stringValue ?? "user"
                switch role {
                case "tool", "function":
                    messages.append(.object(["role": .string("user"),
                                             "content": .string("[tool result]\n" + text(of: message["content"]))]))
                case "assistant":
                    var content = text(of: message["content"])
                    for call in message["tool_calls"]?.arrayValue ?? [] {
                        let name = call["function"]?["name"]?.stringValue ?? "tool"
                        let arguments = call["function"]?["arguments"]?.stringValue ?? ""
                        content += (content.isEmpty ? "" : "\n") + "[called \(name) with \(arguments)]"
                    }
                    messages.append(.object(["role": .string("assistant"), "content": .string(content)]))
                default:
                    messages.append(.object(["role": .string(role), "content": message["content"] ?? .string("")]))
                }
            }
            if question != request.lastUserText {
                messages.append(.object(["role": .string("user"), "content": .string(question)]))
            }
        } else {
            messages.append(.object(["role": .string("user"), "content": .string(question)]))
        }
        return messages
    }

    /// A streamed inner request with the fusion parameters that apply to panel and judge calls.
    public static func innerBody(model: String, messages: [JSONValue], parameters: FusionParameters, jsonOutput: Bool = false,
                                 extra: [String: JSONValue] = [:]) -> JSONValue {
        var body: [String: JSONValue] = extra.merging([
            "model": .string(model),
            "messages": .array(messages),
            "stream": .bool(true),
            "stream_options": .object(["include_usage": .bool(true)]),
        ]) { $1 }
        if let tokens = parameters.maxCompletionTokens { body["max_completion_tokens"] = .int(tokens) }
        if let temperature = parameters.temperature { body["temperature"] = .double(temperature) }
        if let reasoning = parameters.reasoning { body["reasoning"] = reasoning }
        if jsonOutput { body["response_format"] = .object(["type": .string("json_object")]) }
        return .object(body)
    }

    /// Prepended to a panel member's messages when it has web tools.
    public static let panelToolNote = """
        You can search the web (web_search) and read pages (web_fetch) to check facts and find current \
        sources. Use them when they would make your answer more accurate, then answer in text. Cite the \
        pages you rely on as markdown links: [title](url).
        """

    /// Appended to the judge's system prompt when it has web tools.
    public static let judgeToolNote = """
         You may use web_search and web_fetch to check facts the answers disagree on before you reply; \
        your final reply must still be only the JSON object.
        """

    public static func judgeSystemPrompt() -> String {
        """
        \(judgeMarker) Several models answered the same question; their answers follow, each labelled \
        with its model name. Compare them; do not merge them or answer the question yourself. Reply with \
        ONLY a JSON object with exactly these fields:
        - "consensus": array of strings, the points all or most models agree on;
        - "contradictions": array of {"topic": string, "stances": [{"model": string, "stance": string}]}, where models disagree;
        - "partial_coverage": array of {"models": [string], "point": string}, points only some models covered;
        - "unique_insights": array of {"model": string, "insight": string}, valuable points made by one model only;
        - "blind_spots": array of strings, important aspects no model addressed.
        Cite models only by the exact names in the labels. Use empty arrays where nothing applies.
        """
    }

    public static func judgeMessages(question: String, answers: [(model: String, content: String)], tools: Bool = false) -> [JSONValue] {
        var user = "Question:\n\(question)\n\nPanel answers:\n"
        for answer in answers {
            user += "<answer model=\"\(answer.model)\">\n\(answer.content)\n</answer>\n"
        }
        return [
            .object(["role": .string("system"), "content": .string(judgeSystemPrompt() + (tools ? judgeToolNote : ""))]),
            .object(["role": .string("user"), "content": .string(user)]),
        ]
    }

    /// The judge's retry: its invalid reply and what was wrong with it.
    public static func judgeRetryMessages(_ previous: [JSONValue], reply: String, problem: String) -> [JSONValue] {
        previous + [
            .object(["role": .string("assistant"), "content": .string(reply)]),
            .object(["role": .string("user"), "content": .string(
                "That reply is not valid: \(problem). Reply again with only the JSON object described, nothing else.")]),
        ]
    }

    /// The outer model's first call: the client's request with the fusion tool added.
    public static func outerFirstBody(_ request: FusionRequest, upstreamModel: String) -> JSONValue {
        var body = request.body
        body["model"] = .string(upstreamModel)
        body["tools"] = .array(request.callerTools + [toolDefinition(panelSize: request.parameters.analysisModels.count)])
        body["stream"] = .bool(true)
        body["stream_options"] = .object(["include_usage": .bool(true)])
        return .object(body)
    }

    /// The outer model's second call: the conversation plus its fusion call and the tool result;
    /// the fusion tool is gone (fusion runs at most once per request).
    public static func outerFinalBody(_ request: FusionRequest, upstreamModel: String, assistantContent: String,
                                      call: ToolCall, toolResult: String) -> JSONValue {
        var body = request.body
        body["model"] = .string(upstreamModel)
        body["stream"] = .bool(true)
        body["stream_options"] = .object(["include_usage": .bool(true)])
        body["messages"] = .array(request.messages + [
            .object(["role": .string("assistant"),
                     "content": assistantContent.isEmpty ? .null : .string(assistantContent),
                     "tool_calls": .array([call.json])]),
            .object(["role": .string("tool"), "tool_call_id": .string(call.id), "content": .string(toolResult)]),
        ])
        if request.callerTools.isEmpty {
            body["tools"] = nil
            body["tool_choice"] = nil
        } else {
            body["tools"] = .array(request.callerTools)
            // "required" was satisfied by the fusion call; forcing another tool call now would loop.
            if body["tool_choice"]?.stringValue == "required" || body["tool_choice"]?["function"] != nil {
                body["tool_choice"] = .string("auto")
            }
        }
        return .object(body)
    }
}
