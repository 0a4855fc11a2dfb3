import GatewayCore
import Providers

/// The web tools panel members and the judge may call (run by the gateway, not the client).
public enum WebToolNames {
    public static let search = "web_search"
    public static let fetch = "web_fetch"
}

/// One panel member's (or the judge's) turn-taking with tools: call the model; if it calls
/// tools, the gateway runs them and calls the model again with the results; after `maxSteps`
/// tool-calling turns the model is called once more with tools refused (`tool_choice: "none"`
/// and a note) and must answer in text. Pure: the session feeds it events and tool results.
public struct ToolLoop: Sendable {
    public private(set) var messages: [ModelMessage]
    /// Function definitions offered; empty when tools are off.
    public let tools: [ToolDefinition]
    public let maxSteps: Int
    /// Tool-calling turns completed.
    public private(set) var steps = 0
    /// Tool calls run so far (a turn may make several).
    public private(set) var callCount = 0
    private var calls = ToolCallAccumulator()
    private var turnText = ""
    private var pending: [ToolCall] = []

    public init(messages: [ModelMessage], tools: [ToolDefinition], maxSteps: Int) {
        self.messages = messages
        self.tools = tools
        self.maxSteps = maxSteps
    }

    public var toolsEnabled: Bool { !tools.isEmpty }
    /// The cap is reached: the next call refuses tools.
    public var mustAnswer: Bool { toolsEnabled && steps >= maxSteps }

    /// Feeds one event of the current turn.
    public mutating func received(_ event: ModelEvent) {
        switch event {
        case .text(let text): turnText += text
        case .toolCall(let fragment): calls.add(fragment)
        default: break
        }
    }

    public enum TurnEnd: Sendable, Equatable {
        /// The model answered in text (or called tools it was not offered: ignored).
        case answered
        /// Run these, then `complete(results:)`.
        case callTools([ToolCall])
    }

    public mutating func endTurn() -> TurnEnd {
        let made = calls.calls.filter { !$0.name.isEmpty }
        guard toolsEnabled, !mustAnswer, !made.isEmpty else {
            resetTurn()
            return .answered
        }
        pending = made.enumerated().map { position, call in
            var call = call
            if call.id.isEmpty { call.id = "call_\(steps)_\(position)" }  // some servers omit ids
            return call
        }
        return .callTools(pending)
    }

    /// The results of the pending calls, in their order: the turn and the results join the
    /// conversation, and the next call may be made.
    public mutating func complete(results: [String]) {
        precondition(results.count == pending.count, "one result per pending tool call")
        messages.append(ModelMessage(role: .assistant, content: turnText.isEmpty ? [] : [.text(turnText)], toolCalls: pending))
        for (call, result) in zip(pending, results) {
            messages.append(ModelMessage(role: .tool, content: [.text(result)], toolCallID: call.id, name: call.name))
        }
        callCount += pending.count
        steps += 1
        pending = []
        resetTurn()
        if mustAnswer {
            messages.append(ModelMessage(role: .user, text:
                "You have used all \(maxSteps) of your tool-calling steps. Answer now, in text, from what you have found."))
        }
    }

    private mutating func resetTurn() {
        calls = ToolCallAccumulator()
        turnText = ""
    }

    /// The next call's request: the conversation so far, tools offered or (at the cap) refused.
    public func request(_ base: ModelRequest) -> ModelRequest {
        var request = base
        request.messages = messages
        if toolsEnabled {
            // Tools stay declared (some providers reject tool messages without them) but are refused.
            request.tools = tools
            request.toolChoice = mustAnswer ? ToolChoice.none : .auto
        }
        return request
    }

    /// The function definitions of the web tools, as offered to models.
    public static func webToolDefinitions(search: Bool, fetch: Bool) -> [ToolDefinition] {
        var tools: [ToolDefinition] = []
        if search {
            tools.append(function(
                WebToolNames.search,
                "Search the web. Returns a list of results, each with title, url and snippet. Use it for facts that "
                    + "may be recent or that you are unsure of.",
                properties: ["query": .object(["type": .string("string"), "description": .string("The search query.")]),
                             "max_results": .object(["type": .string("integer"), "description": .string("How many results (1-10).")])],
                required: ["query"]))
        }
        if fetch {
            tools.append(function(
                WebToolNames.fetch,
                "Fetch a web page (http or https) and return its readable text, title and final URL.",
                properties: ["url": .object(["type": .string("string"), "description": .string("The absolute URL to read.")])],
                required: ["url"]))
        }
        return tools
    }

    private static func function(_ name: String, _ description: String, properties: [String: JSONValue], required: [String]) -> ToolDefinition {
        .function(name: name, description: description,
                  parameters: .object(["type": .string("object"), "properties": .object(properties),
                                       "required": .array(required.map(JSONValue.string))]),
                  strict: nil)
    }
}
