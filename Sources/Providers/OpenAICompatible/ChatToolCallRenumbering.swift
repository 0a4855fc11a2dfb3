import GatewayCore

/// The tool calls of OpenAI chat chunks relayed as they came (the chat route's pass-through),
/// numbered and named as `OpenAIStreamDecoder` numbers them for the other routes: each call its
/// own index and its own id, whatever the server sent (DeepSeek's, GLM's and Kimi's parallel
/// calls sharing one id; every call at index 0; indexes left out), so the SDKs' stream helpers
/// build one call per call (review 68A #2: merged into `fg` with `{"a":1}{"b":2}`, or an
/// `IndexError`). Only chunks that carry `tool_calls` come here: the per-token text path never
/// does.
public struct ChatToolCallRenumbering {
    /// One numbering per choice (`n` > 1 streams number each choice's calls apart), for at most
    /// `maxChoices` choices: a hostile stream naming a new choice index in every chunk would
    /// otherwise keep one per chunk, for as long as its 256 MiB allow.
    private var numberings: [Int64: ToolCallNumbering] = [:]
    static let maxChoices = 128  // OpenAI's most for `n`

    public init() {}

    public enum Outcome: Equatable {
        /// Nothing to change: relay the chunk as it came.
        case unchanged
        /// The chunk's `choices`, renumbered.
        case renumbered(JSONValue)
        /// More calls (or choices) than any answer makes, or an unreadable index: the stream's error.
        case refused(APIError)
    }

    /// `choices` (a chunk's) with each choice's `delta.tool_calls` renumbered.
    public mutating func renumber(choices: JSONValue) -> Outcome {
        guard case .array(var list) = choices else { return .unchanged }
        var changed = false
        for (position, choice) in list.enumerated() {
            guard case .object(var fields) = choice, case .object(var delta)? = fields["delta"],
                  case .array(var calls)? = delta["tool_calls"] else { continue }
            let key = fields["index"]?.intValue ?? Int64(position)
            if numberings[key] == nil && numberings.count >= Self.maxChoices {
                return .refused(.upstreamProtocol("The upstream sent tool calls for more than \(Self.maxChoices) choices."))
            }
            var numbering = numberings[key] ?? ToolCallNumbering(limit: Int(OpenAIChunk.maxToolCallIndex) + 1, dense: true)
            for (callPosition, call) in calls.enumerated() {
                guard case .object(var callFields) = call else { continue }
                if let refusal = OpenAIChunk.indexRefusal(call) { return .refused(refusal) }
                let fragment = OpenAIChunk.fragment(call, position: callPosition)
                guard let numbered = numbering.number(fragment) else {
                    return .refused(.upstreamProtocol("The upstream sent more than \(numbering.limit) tool calls."))
                }
                var rewritten = callFields
                rewritten["index"] = .int(Int64(numbered.index))
                rewritten["id"] = numbered.id.map(JSONValue.string)
                if case .object(var function)? = callFields["function"] {
                    function["name"] = numbered.name.map(JSONValue.string)
                    rewritten["function"] = .object(function)
                }
                if rewritten != callFields {
                    callFields = rewritten
                    calls[callPosition] = .object(callFields)
                    changed = true
                }
            }
            numberings[key] = numbering
            delta["tool_calls"] = .array(calls)
            fields["delta"] = .object(delta)
            list[position] = .object(fields)
        }
        return changed ? .renumbered(.array(list)) : .unchanged
    }

    /// A whole answer's calls, each under an id of its own (`UniqueToolCallIDs`), as the other
    /// routes give them; nil when none needed a change.
    public static func uniqueIDs(choices: JSONValue) -> JSONValue? {
        guard case .array(var list) = choices else { return nil }
        var changed = false
        for (position, choice) in list.enumerated() {
            guard case .object(var fields) = choice, case .object(var message)? = fields["message"],
                  case .array(var calls)? = message["tool_calls"] else { continue }
            var ids = UniqueToolCallIDs()
            for (index, call) in calls.enumerated() {
                guard case .object(var callFields) = call, let id = callFields["id"]?.stringValue else { continue }
                let unique = ids.claim(id)
                guard unique != id else { continue }
                callFields["id"] = .string(unique)
                calls[index] = .object(callFields)
                changed = true
            }
            message["tool_calls"] = .array(calls)
            fields["message"] = .object(message)
            list[position] = .object(fields)
        }
        return changed ? .array(list) : nil
    }
}
