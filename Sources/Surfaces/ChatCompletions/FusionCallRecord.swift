import Fusion
import GatewayCore
import Providers

/// A fusion call the gateway answered, carried in an assistant message's `reasoning_details`
/// the way OpenRouter records server tool calls on chat completions ("so a prior tool call can
/// be rehydrated into a later turn"):
/// `{"type":"reasoning.server_tool_call","tool_name":"openrouter:fusion","tool_call_id":…,
///   "arguments":"…","result":"…","index":n}`.
///
/// It is how a parallel turn (the caller's tool calls and fusion, in one turn of the outer
/// model) survives the round trip through a client: the turn goes back with the caller's calls
/// and these records; the client sends the message back as it got it, with its tool results; the
/// gateway restores each record as a fusion call of that turn and its tool result, so the next
/// request's conversation holds the whole turn (every call answered, as chat requires).
public enum FusionCallRecord {
    public static let type = "reasoning.server_tool_call"
    public static let toolName = "openrouter:fusion"
    /// Names a client may have kept (ours, and the outer model's function name).
    static let acceptedToolNames: Set<String> = [toolName, FusionPlan.toolName]

    /// The `reasoning_details` entry for `answered`, at position `index` of the array.
    public static func json(_ answered: FusionSessionMachine.ServerToolCall, index: Int) -> JSONValue {
        .object([
            "type": .string(type), "tool_name": .string(toolName), "tool_call_id": .string(answered.call.id),
            "arguments": .string(objectArguments(answered.call)), "result": .string(answered.result), "index": .int(Int64(index)),
        ])
    }

    /// A call's arguments as a record keeps them: a JSON object, or `{}` for what the outer model
    /// wrote that is none (a deliberation ran on its question all the same). Restored into a
    /// turn for an Anthropic or Gemini model, anything else is refused, at a path the client
    /// never sent (review 59C #3).
    static func objectArguments(_ call: ToolCall) -> String {
        call.argumentsObject == nil ? "{}" : call.arguments
    }

    static func objectArguments(_ arguments: String) -> String {
        objectArguments(ToolCall(index: 0, id: "", name: "", arguments: arguments))
    }

    /// Whether a `reasoning_details` entry is a fusion call's record.
    static func isRecord(_ entry: JSONValue) -> Bool {
        entry["type"]?.stringValue == type && entry["tool_name"]?.stringValue.map(acceptedToolNames.contains) == true
    }

    /// Checks an assistant message's `reasoning_details` (at `path`): a 400 naming the field for
    /// a record that cannot be restored, or whose id is another call's of the same turn (its
    /// result would answer both). Entries of other types are OpenRouter's business: left as they are.
    static func validate(_ details: JSONValue, of message: JSONValue, path: String) throws(APIError) {
        guard let entries = details.arrayValue else {
            throw ChatRequest.invalidType(path, expected: "an array", got: details)
        }
        var ids = Set((message["tool_calls"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue })
        for (index, entry) in entries.enumerated() where isRecord(entry) {
            for field in ["arguments", "result"] where entry[field]?.stringValue == nil {
                throw .invalidRequest("'\(path)[\(index)].\(field)' must be a string (a fusion call's record).",
                                      param: "\(path)[\(index)].\(field)")
            }
            guard let id = entry["tool_call_id"], id != .null else { continue }
            guard let text = id.stringValue, !text.isEmpty else {
                throw ChatRequest.invalidType("\(path)[\(index)].tool_call_id", expected: "a non-empty string", got: id)
            }
            guard ids.insert(text).inserted else {
                throw .invalidRequest("'\(path)[\(index)].tool_call_id' repeats the id of another call of this turn.",
                                      param: "\(path)[\(index)].tool_call_id")
            }
        }
    }

    /// The message `message` (an assistant turn) with its fusion records restored: each a tool
    /// call added to the turn, and the tool messages answering them, to follow the turn.
    /// `position` (the message's index) makes ids for records that lost theirs.
    static func restore(_ message: inout ModelMessage, from json: JSONValue, position: Int) -> [ModelMessage] {
        guard message.role == .assistant, let entries = json["reasoning_details"]?.arrayValue else { return [] }
        var results: [ModelMessage] = []
        for (index, entry) in entries.enumerated() where isRecord(entry) {
            guard let arguments = entry["arguments"]?.stringValue, let result = entry["result"]?.stringValue else { continue }
            let id = entry["tool_call_id"]?.stringValue ?? "call_fusion_\(position)_\(index)"
            let call = ToolCall(index: message.toolCalls.count, id: id, name: FusionPlan.toolName, arguments: arguments)
            message.toolCalls.append(ToolCall(index: call.index, id: id, name: call.name, arguments: objectArguments(call)))
            results.append(ModelMessage(role: .tool, content: [.text(result)], toolCallID: id))
        }
        return results
    }
}
