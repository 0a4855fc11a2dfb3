import GatewayCore

/// Token counts and cost of one upstream call (OpenAI's `usage`, plus OpenRouter's `cost`).
public struct Usage: Sendable, Equatable {
    public var promptTokens: Int64 = 0
    public var completionTokens: Int64 = 0
    public var totalTokens: Int64 = 0
    public var cost: Double = 0

    public init(promptTokens: Int64 = 0, completionTokens: Int64 = 0, totalTokens: Int64 = 0, cost: Double = 0) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = totalTokens
        self.cost = cost
    }

    public init?(json: JSONValue?) {
        guard let json, case .object = json else { return nil }
        promptTokens = json["prompt_tokens"]?.intValue ?? 0
        completionTokens = json["completion_tokens"]?.intValue ?? 0
        totalTokens = json["total_tokens"]?.intValue ?? promptTokens + completionTokens
        cost = json["cost"]?.doubleValue ?? 0
    }

    public static func + (lhs: Usage, rhs: Usage) -> Usage {
        Usage(promptTokens: lhs.promptTokens + rhs.promptTokens, completionTokens: lhs.completionTokens + rhs.completionTokens,
              totalTokens: lhs.totalTokens + rhs.totalTokens, cost: lhs.cost + rhs.cost)
    }

    public var json: JSONValue {
        .object(["prompt_tokens": .int(promptTokens), "completion_tokens": .int(completionTokens),
                 "total_tokens": .int(totalTokens), "cost": .double(cost)])
    }
}

/// One fragment of a streamed tool call (`delta.tool_calls[i]`).
public struct ToolCallFragment: Sendable, Equatable {
    public var index: Int
    public var id: String?
    public var name: String?
    public var arguments: String?

    public init(index: Int, id: String? = nil, name: String? = nil, arguments: String? = nil) {
        self.index = index
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

/// What one `chat.completion.chunk` says, for the inner calls Fusion reads (panel, judge, outer).
public struct ChunkDelta: Sendable, Equatable {
    public var content: String?
    /// Reasoning text (`reasoning` or `reasoning_content`): not visible text.
    public var reasoning: String?
    public var toolCalls: [ToolCallFragment] = []
    public var finishReason: String?
    public var usage: Usage?
    /// A mid-stream error object.
    public var error: JSONValue?

    public init(chunk: JSONValue) {
        usage = Usage(json: chunk["usage"])
        if let error = chunk["error"], error != .null { self.error = error }
        guard let choice = chunk["choices"]?.arrayValue?.first else { return }
        finishReason = choice["finish_reason"]?.stringValue
        guard let delta = choice["delta"] else { return }
        content = delta["content"]?.stringValue
        reasoning = delta["reasoning"]?.stringValue ?? delta["reasoning_content"]?.stringValue
        for (position, call) in (delta["tool_calls"]?.arrayValue ?? []).enumerated() {
            toolCalls.append(ToolCallFragment(
                index: Int(call["index"]?.intValue ?? Int64(position)),
                id: call["id"]?.stringValue,
                name: call["function"]?["name"]?.stringValue,
                arguments: call["function"]?["arguments"]?.stringValue))
        }
    }
}

/// A tool call assembled from its fragments.
public struct ToolCall: Sendable, Equatable {
    public var index: Int
    public var id: String
    public var name: String
    public var arguments: String

    public init(index: Int, id: String, name: String, arguments: String) {
        self.index = index
        self.id = id
        self.name = name
        self.arguments = arguments
    }

    public var json: JSONValue {
        .object(["id": .string(id), "type": .string("function"),
                 "function": .object(["name": .string(name), "arguments": .string(arguments)])])
    }
}

/// Concatenates streamed tool-call fragments by index, the way OpenAI clients do.
public struct ToolCallAccumulator: Sendable {
    public private(set) var calls: [ToolCall] = []

    public init() {}

    public mutating func add(_ fragment: ToolCallFragment) {
        if let position = calls.firstIndex(where: { $0.index == fragment.index }) {
            if let id = fragment.id, calls[position].id.isEmpty { calls[position].id = id }
            if let name = fragment.name { calls[position].name += calls[position].name.isEmpty ? name : "" }
            calls[position].arguments += fragment.arguments ?? ""
        } else {
            calls.append(ToolCall(index: fragment.index, id: fragment.id ?? "", name: fragment.name ?? "",
                                  arguments: fragment.arguments ?? ""))
        }
    }

    /// The name of the call at `index`, once its first fragment has arrived.
    public func name(at index: Int) -> String? {
        calls.first { $0.index == index }?.name
    }
}
