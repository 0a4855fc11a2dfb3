import GatewayCore
import Providers

/// The two chunks nearly every stream ends with, read where they stand: the finish
/// (`choices: [{index: 0, delta: {}, finish_reason: "stop"}]`) and the usage (`choices: []`,
/// `usage: {prompt_tokens, completion_tokens, total_tokens}` in whole numbers). `relayEvent`
/// parsed each into a `JSONValue` tree and checked its usage through string-keyed dictionaries:
/// ~60,000 instructions a request, a tenth of a proxied request's
/// (`Benchmarks/scripts/instructions-per-request.py`).
///
/// A `PlainChunk` exists only for a chunk the full path would relay unchanged, reading what it
/// reads: one choice at index 0 with no error, no tool calls to renumber, a finish that is not
/// an error; or no choice and a usage `checkedUsage` would leave as it is. Anything else (an
/// error, tool calls, `n` > 1, a usage riding on an answer, a count that is not a whole number
/// in range, a cost with more places than the gateway states) is nil, and the full path reads it. Read with `JSONView`, so duplicate and
/// escaped keys read as `JSONValue.parse` reads them. `PlainChunkTests` holds the two paths to
/// the same output over generated chunks.
struct PlainChunk {
    /// The choice's finish (nil: none, or an empty one).
    var finishReason: String?
    /// The usage, as the full path would keep it (nil: the chunk has none).
    var usage: JSONValue?

    init?(_ bytes: UnsafeRawBufferPointer) {
        guard let view = JSONView(validating: bytes), view.isObject(view.root) else { return nil }
        var choices: Range<Int>?
        var usage: Range<Int>?
        var error: Range<Int>?
        view.forEachMember(in: view.root) { key, value in
            if key.matches("choices") {
                choices = value
            } else if key.matches("usage") {
                usage = value
            } else if key.matches("error") {
                error = value
            }
        }
        if let error, !view.isNull(error) { return nil }
        guard let choices, view.bytes[choices.lowerBound] == UInt8(ascii: "[") else { return nil }
        if let usage, !view.isNull(usage) {
            // The usage chunk: no choice beside it.
            guard view.firstElement(in: choices) == nil, Self.isPlainUsage(usage, in: view) else { return nil }
            self.usage = view.value(usage)
            return
        }
        guard let choice = view.firstElement(in: choices), view.element(after: choice) == nil,
              let finish = Self.plainChoice(choice, in: view) else { return nil }
        finishReason = finish.isEmpty ? nil : finish
    }

    /// The finish of a choice the full path relays as it is ("" when it has none); nil when it
    /// must read the choice itself.
    private static func plainChoice(_ choice: Range<Int>, in view: JSONView) -> String? {
        guard view.isObject(choice) else { return nil }
        var index: Range<Int>?
        var error: Range<Int>?
        var finish: Range<Int>?
        var delta: Range<Int>?
        view.forEachMember(in: choice) { key, value in
            if key.matches("index") {
                index = value
            } else if key.matches("error") {
                error = value
            } else if key.matches("finish_reason") {
                finish = value
            } else if key.matches("delta") {
                delta = value
            }
        }
        // Choice 0 (no index is choice 0); any other index is read in full (and refused).
        if let index, !(index.count == 1 && view.bytes[index.lowerBound] == UInt8(ascii: "0")) { return nil }
        if let error, !view.isNull(error) { return nil }
        // Tool calls are renumbered (`ChatToolCallRenumbering`): read in full.
        if let delta, view.isObject(delta), let calls = view.member("tool_calls", in: delta),
           view.bytes[calls.lowerBound] == UInt8(ascii: "[") { return nil }
        guard let finish, view.bytes[finish.lowerBound] == UInt8(ascii: "\"") else { return "" }
        guard let text = view.string(finish), !OpenAICompatibleProvider.finishIsFailure(text) else { return nil }
        return text
    }

    /// Whether `checkedUsage` would leave the usage at `range` as it is, and it has a count:
    /// OpenAI's three counts all there, whole numbers in `0...Usage.maxTokens`, the total at least
    /// their sum; the details' counts whole numbers in range too; a cost a number already rounded.
    private static func isPlainUsage(_ range: Range<Int>, in view: JSONView) -> Bool {
        guard view.isObject(range) else { return false }
        var prompt: Int64?, completion: Int64?, total: Int64?
        var cost: Range<Int>?
        var plain = true
        view.forEachMember(in: range) { key, value in
            if key.matches("prompt_tokens") {
                prompt = count(value, in: view)
            } else if key.matches("completion_tokens") {
                completion = count(value, in: view)
            } else if key.matches("total_tokens") {
                total = count(value, in: view)
            } else if key.matches("cost") {
                cost = value
            } else if key.matches("prompt_tokens_details") {
                plain = plain && detailsArePlain(value, in: view, keys: promptDetails)
            } else if key.matches("completion_tokens_details") {
                plain = plain && detailsArePlain(value, in: view, keys: completionDetails)
            }
        }
        // A duplicate read last wins, as the full path reads it: a bad first spelling and a good
        // last one is plain (both paths keep the last); `count` is nil for any bad one read last.
        guard plain, let prompt, let completion, let total, total >= prompt + completion else { return false }  // each ≤ 2^40
        // A cost already at the places the gateway states (OpenRouter's, the mock's).
        if let cost {
            guard let number = view.value(cost).doubleValue, Usage.roundedCost(number) == number else { return false }
        }
        return true
    }

    private static let promptDetails: [StaticString] = ["cached_tokens", "cache_write_tokens", "audio_tokens"]
    private static let completionDetails: [StaticString] = ["reasoning_tokens", "audio_tokens", "accepted_prediction_tokens",
                                                            "rejected_prediction_tokens"]

    /// Whether the details the full path checks (`keys`) are each absent or a plain count; a
    /// details value that is not an object is left as it is by both paths.
    private static func detailsArePlain(_ range: Range<Int>, in view: JSONView, keys: [StaticString]) -> Bool {
        guard view.isObject(range) else { return true }
        for key in keys {
            if let value = view.member(key, in: range), count(value, in: view) == nil { return false }
        }
        return true
    }

    /// A whole number in `0...Usage.maxTokens` written as plain digits; nil for anything else.
    private static func count(_ range: Range<Int>, in view: JSONView) -> Int64? {
        guard range.count <= 13 else { return nil }  // 2^40 has 13 digits
        var value: Int64 = 0
        for index in range {
            let byte = view.bytes[index]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int64(byte - UInt8(ascii: "0"))
        }
        return value <= Usage.maxTokens ? value : nil
    }
}
