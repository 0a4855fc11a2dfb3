import GatewayCore
import Providers

/// Whole (non-streamed) chat completions: one upstream's answer as the client's
/// `chat.completion`, with the completion's own `id` and the model the client asked for.
public enum ChatCompletionBody {
    /// An OpenAI-format body relayed with `id`, `model` and `created` replaced and its usage's
    /// `cost` rounded as the gateway states costs (everything else kept byte for byte, but bytes
    /// that are not UTF-8 and lone surrogate escapes, which become U+FFFD as on every other route:
    /// review 80B #1, the SDK raised `UnicodeDecodeError`); nil when it is not a JSON object.
    /// Its choices' `index`es must be distinct integers below the `choices` asked for (the
    /// client's `n`); otherwise the choices are numbered by their place and at most `choices` are
    /// kept, as a whole answer to a streamed request's are (review 83B #3: a float, a string, a
    /// negative or a duplicate `index` reached the SDKs, and a request for one choice got three).
    public static func rewriting(_ body: [UInt8], id: String, model: String, created: Int, choices limit: Int = 1) -> [UInt8]? {
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
        var kept = choices
        var changed = false
        if let choices, let unique = ChatToolCallRenumbering.uniqueIDs(choices: choices) {
            kept = unique
            changed = true
        }
        if case .array(let items)? = kept, let numbered = numberedByPlace(items, limit: limit) {
            kept = .array(numbered)
            changed = true
        }
        if changed, let kept { leading.append((Array("choices".utf8), kept.serialized())) }
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
        guard ok else { return nil }
        SSERelay.repairUTF8(&out, from: 0)
        SSERelay.repairSurrogateEscapes(&out, from: 0)
        return out
    }

    /// The choices numbered by their place, at most `limit` of them, the objects only; nil when
    /// they are fine as they are: at most `limit` objects, each with an `index` (none is 0) that
    /// is an integer below `limit` no other has. Something else in the array (a string, a null)
    /// is no choice: dropped, never kept in an answer's place (review 84 #2: `["x", {…}]` for one
    /// choice became `["x"]`).
    static func numberedByPlace(_ choices: [JSONValue], limit: Int) -> [JSONValue]? {
        var seen = Set<Int64>()
        let fine = choices.count <= max(1, limit) && choices.allSatisfy { choice in
            guard case .object(let fields) = choice,
                  case .int(let index) = fields["index"] ?? .int(0), (0..<Int64(max(1, limit))).contains(index) else { return false }
            return seen.insert(index).inserted
        }
        guard !fine else { return nil }
        let objects = choices.compactMap { choice -> [String: JSONValue]? in
            guard case .object(let fields) = choice else { return nil }
            return fields
        }
        return objects.prefix(max(1, limit)).enumerated().map { place, fields in
            var fields = fields
            fields["index"] = .int(Int64(place))
            return .object(fields)
        }
    }

    /// An OpenAI-format whole answer to a streamed request (some servers ignore `stream`), as the
    /// SSE stream the server would have sent: per choice one chunk whose `delta` is the choice's
    /// whole `message` (every member kept), with its `logprobs` and `finish_reason`; then a usage
    /// chunk; then `[DONE]`. The other top-level members (`system_fingerprint`, `service_tier`,
    /// `provider`, …) ride on the first chunk. Relayed like a stream (`SSERelay`: ids, usage and
    /// finishes checked), so nothing of the answer is lost (review 74A #6: choices after the
    /// first and every member the neutral events do not model were dropped).
    ///
    /// The stream is about the body's size (review 78 #1: members copied onto every chunk of a
    /// thousand empty choices made 1 GB of 1 MB): at most `choices` choices (the client's `n`)
    /// are taken, in order, numbered by their place (a hostile index, negative, a string or a
    /// duplicate, would crash or merge in the SDKs: review 78 #7). A tool call gets its place as
    /// its `index` and, without an id, `call_<token>_<n>` (review 78 #4), `token` a short random
    /// one per answer. `outputBytes`: the taken choices' text, reasoning and call bytes, for
    /// an estimate when no usage came (review 78 #5: choice 0's alone was counted). Nil when
    /// the body is not an object with a `choices` array.
    public static func asStream(_ body: [UInt8], choices limit: Int = 1) -> (stream: [UInt8], outputBytes: Int)? {
        guard case .object(let fields)? = try? JSONValue.parse(body), let choices = fields["choices"]?.arrayValue else { return nil }
        var shared = fields
        shared["choices"] = nil
        shared["usage"] = nil
        shared["object"] = .string("chat.completion.chunk")
        // Short, and the answer's own: an id made of a 128-byte upstream id for each of thousands
        // of `{}` calls made a 537 KB body 21 MB (review 79 #4).
        let answerID = String(UInt64.random(in: .min ... .max), radix: 16)
        var out: [UInt8] = []
        out.reserveCapacity(body.count + 256)
        var outputBytes = 0
        var first = true
        func append(_ members: [String: JSONValue]) {
            var chunk = first ? shared : ["object": .string("chat.completion.chunk")]
            first = false
            for (key, value) in members { chunk[key] = value }
            out.append(contentsOf: "data: ".utf8)
            out.append(contentsOf: JSONValue.object(chunk).serialized())
            out.append(contentsOf: "\n\n".utf8)
        }
        // What the calls' made ids and indexes add, bounded as it grows: a body of millions of
        // `{}` calls is refused before it is built, not after.
        var added = 0
        let maxAdded = body.count + (1 << 20)
        var taken = 0
        for choice in inIndexOrder(choices) where taken < max(limit, 1) {
            guard case .object(var member) = choice else { continue }
            var delta = member["message"]?.objectValue ?? [:]
            outputBytes += messageOutputBytes(delta)
            if case .array(let calls)? = delta["tool_calls"] {
                var numbered: [JSONValue] = []
                for (position, call) in calls.enumerated() {
                    // A call that is no object no client can read (review 79 #5: the SDK raised).
                    guard case .object(var call) = call else { return nil }
                    added += 48  // `"index":N,"id":"call_<16 hex>_<N>",` at most
                    guard added <= maxAdded else { return nil }
                    call["index"] = .int(Int64(position))
                    if (call["id"]?.stringValue ?? "").isEmpty { call["id"] = .string("call_\(answerID)_\(position)") }
                    numbered.append(.object(call))
                }
                delta["tool_calls"] = .array(numbered)
            }
            member["message"] = nil
            member["delta"] = .object(delta)
            member["index"] = .int(Int64(taken))
            if member["finish_reason"] == nil { member["finish_reason"] = .null }
            append(["choices": .array([.object(member)])])
            taken += 1
        }
        if let usage = fields["usage"], usage != .null {
            append(["choices": .array([]), "usage": usage])
        }
        out.append(contentsOf: "data: [DONE]\n\n".utf8)
        // Never much more than the body (each call's made id and index are the only additions).
        guard out.count <= 2 * body.count + (1 << 20) else { return nil }
        return (out, outputBytes)
    }

    /// `choices` in the order of their `index` when every one has a distinct integer index (a
    /// server that lists them out of order keeps its numbering: review 79 #9); else as listed.
    static func inIndexOrder(_ choices: [JSONValue]) -> [JSONValue] {
        var indexed: [(Int64, JSONValue)] = []
        for choice in choices {
            guard case .int(let index)? = choice["index"] else { return choices }
            indexed.append((index, choice))
        }
        guard Set(indexed.map(\.0)).count == indexed.count else { return choices }
        return indexed.sorted { $0.0 < $1.0 }.map(\.1)
    }

    /// The output of a whole answer's first `choices` choices, in bytes (what an estimate without
    /// usage counts: review 79 #6, choice 0's alone was charged for `n` of them); nil when the
    /// body is no chat completion.
    public static func outputBytes(_ body: [UInt8], choices limit: Int) -> Int? {
        guard let choices = (try? JSONValue.parse(body))?["choices"]?.arrayValue else { return nil }
        return inIndexOrder(choices).prefix(max(limit, 1)).reduce(0) { $0 + messageOutputBytes($1["message"]?.objectValue ?? [:]) }
    }

    /// A message's text, reasoning (once: servers that send both names send the same text, as
    /// the decoder reads it), refusal and calls, in bytes: a string's bytes, anything else (a
    /// list of content parts, arguments as an object) as written (review 79 #1: counted as
    /// nothing, 8 KB was one token).
    static func messageOutputBytes(_ message: [String: JSONValue]) -> Int {
        func size(_ value: JSONValue?) -> Int {
            guard let value, value != .null else { return 0 }
            return value.stringValue?.utf8.count ?? value.serialized().count
        }
        var bytes = size(message["content"]) + size(message["reasoning"] ?? message["reasoning_content"]) + size(message["refusal"])
        for call in message["tool_calls"]?.arrayValue ?? [] {
            bytes += size(call["function"]?["name"]) + size(call["function"]?["arguments"])
        }
        return bytes
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
