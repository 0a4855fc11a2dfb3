/// Where in the client's request a neutral message came from, so that a refusal names a field
/// the client sent (review 48 surfaces #7: a provider's check named `messages[1].content[0]` on
/// every surface, a path a Responses request does not have, and on Messages the wrong turn).
/// Set by the surfaces whose messages are not chat's `messages[i]` one to one: Responses (an
/// `instructions` message first; function calls joined into one assistant turn) and Messages
/// (`system` first; `tool_result` blocks split out as tool messages). A message without one is
/// chat's, or the gateway's own (a deliberation's prompts), and is named in chat's syntax.
public struct MessageOrigin: Sendable {
    /// The client API's field names, where they differ from chat's.
    public enum Syntax: Sendable {
        /// OpenAI Responses: `input[3].call_id`, a call's `arguments` on its item.
        case responses
        /// Anthropic Messages: `messages.1.content.0.tool_use_id`, a call's `input` on its block.
        case messages
    }

    public var syntax: Syntax
    /// The path of the item or block the message is (`input[2]`, `messages.1`, `system`).
    public var path: String
    /// Each content part's path, in the order of `ModelMessage.content`.
    public var parts: [String]
    /// Each tool call's path (its item or block), in the order of `ModelMessage.toolCalls`.
    public var calls: [String]

    public init(_ syntax: Syntax, path: String, parts: [String] = [], calls: [String] = []) {
        self.syntax = syntax
        self.path = path
        self.parts = parts
        self.calls = calls
    }
}

extension MessageOrigin {
    /// A message's origin as it stores it: where a message came from is not part of what it
    /// says, so two messages alike in every other field are equal wherever the client put them.
    struct Slot: Sendable, Equatable {
        var origin: MessageOrigin?
        static func == (lhs: Slot, rhs: Slot) -> Bool { true }
    }
}

extension ModelMessage {
    /// The message's path in the client's request; `index` is its position among the neutral
    /// messages (chat's `messages[index]`).
    public func path(at index: Int) -> String { origin?.path ?? "messages[\(index)]" }

    /// The path of its content.
    public func contentPath(at index: Int) -> String { path(at: index) + ".content" }

    /// The path of its content part `part`.
    public func partPath(_ part: Int, at index: Int) -> String {
        if let origin, origin.parts.indices.contains(part) { return origin.parts[part] }
        return origin == nil ? "messages[\(index)].content[\(part)]" : contentPath(at: index)
    }

    /// The path of its tool call `call`.
    public func callPath(_ call: Int, at index: Int) -> String {
        if let origin, origin.calls.indices.contains(call) { return origin.calls[call] }
        return origin == nil ? "messages[\(index)].tool_calls[\(call)]" : path(at: index)
    }

    /// The path of tool call `call`'s arguments.
    public func argumentsPath(_ call: Int, at index: Int) -> String {
        switch origin?.syntax {
        case nil: callPath(call, at: index) + ".function.arguments"
        case .responses?: callPath(call, at: index) + ".arguments"
        case .messages?: callPath(call, at: index) + ".input"
        }
    }

    /// For a tool result, the path of the id of the call it answers.
    public func toolCallIDPath(at index: Int) -> String {
        switch origin?.syntax {
        case nil: path(at: index) + ".tool_call_id"
        case .responses?: path(at: index) + ".call_id"
        case .messages?: path(at: index) + ".tool_use_id"
        }
    }
}
