import GatewayCore
import Providers

/// The texts and requests of Fusion's inner calls.
public enum FusionPrompts {
    /// Marks the judge's system prompt (the simulated models recognise their role by it).
    public static let judgeMarker = "You are the judge of a fusion-gateway deliberation."

    /// The fusion tool as the outer model sees it: an ordinary function.
    public static func toolDefinition(panelSize: Int) -> ToolDefinition {
        .function(
            name: FusionPlan.toolName,
            description: "Consult a panel of \(panelSize) AI models that answer the question in parallel; a judge compares "
                + "their answers and returns a structured analysis (consensus, contradictions, partial coverage, "
                + "unique insights, blind spots). Use it for research questions, critiques, comparisons, or "
                + "whenever being wrong is costly. Then write the final answer from the analysis.",
            parameters: .object([
                "type": .string("object"),
                "properties": .object([
                    "question": .object([
                        "type": .string("string"),
                        "description": .string("The question for the panel; defaults to the user's last message."),
                    ]),
                ]),
            ]),
            strict: nil)
    }

    /// The panel's messages: the conversation with tool traffic rendered as text (members are
    /// not given the caller's tools), or only the question.
    public static func panelMessages(_ request: FusionRequest, question: String, context: FusionSettings.PanelContext) -> [ModelMessage] {
        guard context == .conversation else { return [ModelMessage(role: .user, text: question)] }
        var messages: [ModelMessage] = []
        // Anthropic's own blocks (a client's server-tool turns, cited text) as their text: members
        // run on any provider and read the conversation as text (review 20 B1).
        for message in request.messages.map(\.portable) {
            switch message.role {
            case .tool:
                messages.append(ModelMessage(role: .user, text: "[tool result]\n" + message.text))
            case .assistant:
                var content = message.text
                for call in message.toolCalls {
                    content += (content.isEmpty ? "" : "\n") + "[called \(call.name) with \(call.arguments)]"
                }
                messages.append(ModelMessage(role: .assistant, text: content))
            default:
                messages.append(ModelMessage(role: message.role, content: message.content, name: message.name))
            }
        }
        if question != request.lastUserText {
            messages.append(ModelMessage(role: .user, text: question))
        }
        return messages
    }

    /// A panel member's or the judge's streamed request, with the fusion parameters that apply
    /// to them. `defaultMaxTokens` bounds a call whose request sets no limit (a rambling model
    /// must not hold a deliberation for minutes).
    public static func innerRequest(model: String, messages: [ModelMessage], parameters: FusionParameters,
                                    defaultMaxTokens: Int64?, judge: Bool = false) -> ModelRequest {
        var request = ModelRequest(model: model, messages: messages, stream: true)
        request.includeUsage = true
        request.maxOutputTokens = innerOutputLimit(parameters, defaultMaxTokens: defaultMaxTokens)
        // The judge compares; it does not create: deterministic unless the request says otherwise.
        request.temperature = parameters.temperature ?? (judge ? 0 : nil)
        request.reasoning = parameters.reasoning
        if judge { request.responseFormat = .object(["type": .string("json_object")]) }
        return request
    }

    /// The output limit of a panel or judge call: the request's `max_completion_tokens`, else
    /// the gateway's default for visible text plus the thinking budget the request's `reasoning`
    /// asks for (the default bounds a rambling answer; it must not eat the reasoning: 4,096 with
    /// a 16,384 budget left one visible token).
    public static func innerOutputLimit(_ parameters: FusionParameters, defaultMaxTokens: Int64?) -> Int64? {
        if let limit = parameters.maxCompletionTokens { return limit }
        guard let limit = defaultMaxTokens else { return nil }
        return min(Usage.saturatingAdd(limit, parameters.reasoning?.thinkingBudget ?? 0), Usage.maxTokens)
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

    public static func judgeSystemPrompt(neutral: Bool = false) -> String {
        let labelled = neutral
            ? "with a neutral label (Response A, Response B, …) that says nothing of which model wrote it or how good it is"
            : "with its model name"
        let cite = neutral
            ? "Cite answers only by their exact labels (\"Response A\"), in the \"model\" fields too."
            : "Cite models only by the exact names in the labels."
        return """
            \(judgeMarker) Several models answered the same question; their answers follow, each labelled \
            \(labelled). Compare them; do not merge them or answer the question yourself. Reply with \
            ONLY a JSON object with exactly these fields:
            - "consensus": array of strings, the points all or most models agree on;
            - "contradictions": array of {"topic": string, "stances": [{"model": string, "stance": string}]}, where models disagree;
            - "partial_coverage": array of {"models": [string], "point": string}, points only some models covered;
            - "unique_insights": array of {"model": string, "insight": string}, valuable points made by one model only;
            - "blind_spots": array of strings, important aspects no model addressed.
            \(cite) Use empty arrays where nothing applies.
            """
    }

    /// The judge's messages: the question, each answer under its label (`neutral`: "Response A"
    /// rather than a model name, see `NeutralLabels`), and the members whose answer is missing
    /// (cut for latency, failed), so the judge knows the panel was partial.
    public static func judgeMessages(question: String, answers: [(label: String, content: String)], missing: [(label: String, why: String)] = [],
                                     neutral: Bool = false, tools: Bool = false) -> [ModelMessage] {
        var user = "Question:\n\(neutralizingAnswerTags(question))\n\nPanel answers:\n"
        for answer in answers {
            user += neutral ? "<answer label=\"\(answer.label)\">\n" : "<answer model=\"\(answer.label)\">\n"
            user += "\(neutralizingAnswerTags(answer.content))\n</answer>\n"
        }
        if !missing.isEmpty {
            user += "\nNot included (the panel is partial; compare only the answers above):\n"
            for member in missing { user += "- \(member.label): \(member.why)\n" }
        }
        return [
            ModelMessage(role: .system, text: judgeSystemPrompt(neutral: neutral) + (tools ? judgeToolNote : "")),
            ModelMessage(role: .user, text: user),
        ]
    }

    /// `text` with every `<` that would open an `answer` tag (`<answer`, `</answer`, any case,
    /// blanks allowed) written as `&lt;`: a member's answer (or a page it quotes, or the question
    /// it repeats) cannot close its own block and open one labelled as another member's.
    static func neutralizingAnswerTags(_ text: String) -> String {
        let bytes = Array(text.utf8)
        guard bytes.contains(UInt8(ascii: "<")) else { return text }
        func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }
        let name = Array("answer".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 16)
        for (index, byte) in bytes.enumerated() {
            guard byte == UInt8(ascii: "<") else {
                out.append(byte)
                continue
            }
            var next = index + 1
            while next < bytes.count, isBlank(bytes[next]) { next += 1 }
            if next < bytes.count, bytes[next] == UInt8(ascii: "/") { next += 1 }
            while next < bytes.count, isBlank(bytes[next]) { next += 1 }
            let opensTag = next + name.count <= bytes.count && zip(bytes[next..<next + name.count], name).allSatisfy { $0 | 0x20 == $1 }
            out.append(contentsOf: opensTag ? Array("&lt;".utf8) : [byte])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The judge's retry: its invalid reply and what was wrong with it.
    public static func judgeRetryMessages(_ previous: [ModelMessage], reply: String, problem: String) -> [ModelMessage] {
        // The reply quoted back at most 8 KiB of it (its start and end): a 200 KB invalid reply
        // made the retry's prompt 50,000 tokens (review 68C #3).
        let quoted = reply.utf8.count <= 8 << 10 ? reply
            : String(decoding: reply.utf8.prefix(4 << 10), as: UTF8.self) + "\n[…]\n" + String(decoding: reply.utf8.suffix(4 << 10), as: UTF8.self)
        return previous + [
            ModelMessage(role: .assistant, text: quoted),
            ModelMessage(role: .user, text:
                "That reply is not valid: \(problem). Reply again with only the JSON object described, nothing else."),
        ]
    }

    /// The outer model's first call: the client's request with the fusion tool added.
    public static func outerFirstRequest(_ request: FusionRequest) -> ModelRequest {
        var outer = request.base
        outer.tools = request.base.tools + [toolDefinition(panelSize: request.parameters.analysisModels.count)]
        outer.stream = true
        outer.includeUsage = true
        return outer
    }

    /// The outer model's second call: the conversation plus its turn (text and every tool call
    /// it made) and the fusion tool's result; the fusion tool is gone (fusion runs at most once
    /// per request).
    /// `reasoning`: the first turn's signed reasoning blocks, which an Anthropic outer model with
    /// thinking needs back at the head of the turn that called the tool.
    /// `assistantContent`: the turn's text, with any of Anthropic's own blocks (a server tool's)
    /// where they came (`OuterTurn.content`).
    public static func outerFinalRequest(_ request: FusionRequest, assistantContent: [ContentPart], calls: [ToolCall],
                                         results: [(callID: String, content: String)], reasoning: [ReasoningBlock] = []) -> ModelRequest {
        var outer = request.base
        outer.stream = true
        outer.includeUsage = true
        outer.messages = request.messages + [
            ModelMessage(role: .assistant, content: assistantContent, toolCalls: calls, reasoning: reasoning),
        ] + results.map { ModelMessage(role: .tool, content: [.text($0.content)], toolCallID: $0.callID) }
        if outer.tools.isEmpty {
            outer.toolChoice = nil
        } else if outer.toolChoice == .required || { if case .function = outer.toolChoice { true } else { false } }() {
            // "required" was satisfied by the fusion call; forcing another tool call now would loop.
            outer.toolChoice = .auto
        }
        return outer
    }
}
