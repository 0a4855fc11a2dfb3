import GatewayCore
import Providers

/// Whole (non-streamed) chat completions: one upstream's answer as the client's
/// `chat.completion`, with the completion's own `id` and the model the client asked for.
public enum ChatCompletionBody {
    /// An OpenAI-format body relayed with `id`, `model` and `created` replaced and its usage's
    /// `cost` rounded as the gateway states costs (everything else kept byte for byte); nil when
    /// it is not a JSON object.
    public static func rewriting(_ body: [UInt8], id: String, model: String, created: Int) -> [UInt8]? {
        var idValue: [UInt8] = []
        JSONWriting.appendString(id, to: &idValue)
        var modelValue: [UInt8] = []
        JSONWriting.appendString(model, to: &modelValue)
        var leading = [(key: Array("id".utf8), value: idValue), (Array("model".utf8), modelValue),
                       (Array("created".utf8), Array(String(created).utf8))]
        // Its usage, checked (`SSERelay.checkedUsage`): only that member is built, the rest of the
        // body is scanned.
        let (usage, choices) = body.withUnsafeBytes { bytes -> (JSONValue?, JSONValue?) in
            guard let view = JSONView(validating: bytes), view.isObject(view.root) else { return (nil, nil) }
            return (view.member("usage", in: view.root).map(view.value), view.member("choices", in: view.root).map(view.value))
        }
        // Calls sharing one id (DeepSeek's, GLM's, Kimi's) each under an id of its own, as on the
        // other routes (review 68A #2).
        if let choices, let unique = ChatToolCallRenumbering.uniqueIDs(choices: choices) {
            leading.append((Array("choices".utf8), unique.serialized()))
        }
        let checked = SSERelay.checkedUsage(usage)
        if let usage, case .object = usage, !Usage.hasCount(checked ?? usage) {
            // No count that is a number: no usage, as the record says (review 21 F2).
            leading.append((SSERelay.usageName, Array("null".utf8)))
        } else if let checked {
            leading.append((SSERelay.usageName, checked.serialized()))
        }
        var out: [UInt8] = []
        out.reserveCapacity(body.count + 64)
        let ok = body.withUnsafeBytes {
            JSONScanner.appendObject($0, leading: leading, to: &out)
        }
        return ok ? out : nil
    }

    /// The `chat.completion` a stream of `events` amounts to (another provider's answer, translated).
    public static func make(id: String, model: String, created: Int, events: [ModelEvent]) -> [UInt8] {
        var content = ""
        var reasoning = ""
        var refusal = ""
        var calls = ToolCallAccumulator()
        var finish: FinishReason?
        var usage: Usage?
        var blocks = ReasoningBlockBuilder()
        var details: [JSONValue] = []
        for event in events {
            if let block = blocks.add(event) { details.append(ReasoningDetail.json(block, index: details.count)) }
            switch event {
            case .text(let text): content += text
            case .reasoning(let text): reasoning += text
            case .refusal(let text): refusal += text
            case .toolCall(let fragment): calls.add(fragment)
            case .finish(let reason): finish = reason
            case .usage(let reported): usage = reported
            case .error, .reasoningSignature, .redactedReasoning, .stopDetail, .messageExtras, .providerBlock: break
            }
        }
        var message: [String: JSONValue] = ["role": .string("assistant"),
                                            "content": content.isEmpty && !calls.calls.isEmpty ? .null : .string(content)]
        if !reasoning.isEmpty { message["reasoning"] = .string(reasoning) }
        if !refusal.isEmpty {
            message["refusal"] = .string(refusal)
            if content.isEmpty { message["content"] = .null }
        }
        if !calls.calls.isEmpty { message["tool_calls"] = .array(calls.calls.map(\.json)) }
        if !details.isEmpty { message["reasoning_details"] = .array(details) }
        var body: [String: JSONValue] = [
            "id": .string(id), "object": .string("chat.completion"), "created": .int(Int64(created)), "model": .string(model),
            "choices": .array([.object(["index": .int(0), "message": .object(message),
                                        "finish_reason": .string(finish?.rawValue ?? "stop")])]),
        ]
        if let usage { body["usage"] = usage.json }
        return JSONValue.object(body).serialized()
    }
}
