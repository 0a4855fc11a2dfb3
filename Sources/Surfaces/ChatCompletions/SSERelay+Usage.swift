import GatewayCore
import Providers

/// How `SSERelay` vouches for an upstream's usage object, and the member names it writes.
extension SSERelay {
    static let usageName = Array("usage".utf8)
    static let idName = Array("id".utf8)
    static let modelName = Array("model".utf8)
    static let createdName = Array("created".utf8)

    /// The usage the stream's accounting keeps when `new` comes after `old` (`Usage.kept`). The
    /// client still sees each report as it came.
    static func kept(_ old: JSONValue?, _ new: JSONValue) -> JSONValue {
        guard let old else { return new }
        func said(_ usage: JSONValue) -> (Int64, Int64, Double) {
            (Usage.count(usage["prompt_tokens"]), Usage.count(usage["completion_tokens"]), Usage.clampCost(usage["cost"]?.doubleValue ?? 0))
        }
        return Usage.shrinks(from: said(old), to: said(new)) ? old : new
    }

    /// The `usage` object as the gateway vouches for it, or nil when it needs no change. Its
    /// numbers are an upstream's, so untrusted: token counts become whole numbers in
    /// `0...Usage.maxTokens` (a `-5` or `1e308` would reach the client's SDK as it came, whose
    /// models want integers), the total their sum; a cost gets the places the gateway
    /// states (`Usage.roundedCost`); either that is no number is left out. Other members are
    /// left as they came.
    static func checkedUsage(_ usage: JSONValue?) -> JSONValue? {
        guard case .object(var object)? = usage else { return nil }
        var changed = false
        /// The count as it should be, or nil when it already is (or is absent or not a number).
        func count(_ value: JSONValue?) -> JSONValue? {
            guard let value, value.doubleValue != nil else { return nil }
            let clamped = JSONValue.int(Usage.count(value))
            return value == clamped ? nil : clamped
        }
        // A count or cost that is no number ("5", {…}, or beyond a double's range: `1e400` reads
        // as null and would go out as it came) is not one the gateway can vouch for: left out, as
        // an unknown one is, rather than relayed for the SDK to choke on (review 21 F2).
        func dropNonNumbers(_ keys: [String], in object: inout [String: JSONValue]) -> Bool {
            var dropped = false
            for key in keys where object[key] != nil && object[key]?.doubleValue == nil {
                object[key] = nil
                dropped = true
            }
            return dropped
        }
        // With another count readable, an unreadable one of OpenAI's three is 0, as the record
        // counts it, not a member gone from the object (an SDK's `prompt_tokens=None`: review
        // 68A #5); with none readable the usage is no usage (estimated at the end).
        func unreadable(_ key: String) -> Bool { object[key] != nil && object[key]?.doubleValue == nil }
        let badPrompt = unreadable("prompt_tokens"), badCompletion = unreadable("completion_tokens"), badTotal = unreadable("total_tokens")
        if (badPrompt || badCompletion || badTotal)
            && (object["prompt_tokens"]?.doubleValue != nil || object["completion_tokens"]?.doubleValue != nil || object["total_tokens"]?.doubleValue != nil) {
            if badPrompt { object["prompt_tokens"] = .int(0) }
            if badCompletion { object["completion_tokens"] = .int(0) }
            if badTotal { object["total_tokens"] = .int(0) }
            changed = true
            // One of prompt and completion unreadable beside a readable total: it is the rest
            // of the total, not 0 (review 69 #4: the total 13 became 0 + 3).
            if badPrompt != badCompletion, !badTotal, let total = object["total_tokens"].map(Usage.count) {
                let (missing, other) = badPrompt ? ("prompt_tokens", "completion_tokens") : ("completion_tokens", "prompt_tokens")
                object[missing] = .int(max(0, total - Usage.count(object[other])))
            }
        }
        if dropNonNumbers(["prompt_tokens", "completion_tokens", "total_tokens", "cost"], in: &object) { changed = true }
        for (container, keys) in [("prompt_tokens_details", ["cached_tokens", "cache_write_tokens", "audio_tokens"]),
                                  ("completion_tokens_details", ["reasoning_tokens", "audio_tokens", "accepted_prediction_tokens",
                                                                 "rejected_prediction_tokens"])] {
            if case .object(var details)? = object[container], dropNonNumbers(keys, in: &details) {
                object[container] = .object(details)
                changed = true
            }
        }
        for key in ["prompt_tokens", "completion_tokens", "total_tokens"] {
            if let fixed = count(object[key]) { object[key] = fixed; changed = true }
        }
        // The total is at least the sum (the key's tokens-per-minute limit is charged by it), and
        // a larger one is kept (Google's OpenAI endpoint counts thoughts outside the completion):
        // the rule `Usage(openAI:)` reads every usage by, so the client, the record and the key's
        // limits say one figure, streamed or whole (review 71B #4: 13 told, 50 recorded).
        if let prompt = object["prompt_tokens"]?.intValue, let completion = object["completion_tokens"]?.intValue {
            let reported = object["total_tokens"]?.intValue ?? 0
            let total = JSONValue.int(min(max(prompt + completion, reported), Usage.maxTokens))  // each ≤ 2^40 here: no overflow
            if object["total_tokens"] != total {
                object["total_tokens"] = total
                changed = true
            }
        }
        for (container, key) in [("prompt_tokens_details", "cached_tokens"), ("completion_tokens_details", "reasoning_tokens")] {
            if case .object(var details)? = object[container], let fixed = count(details[key]) {
                details[key] = fixed
                object[container] = .object(details)
                changed = true
            }
        }
        if let cost = object["cost"]?.doubleValue {
            let rounded = Usage.roundedCost(cost)
            if rounded != cost {
                object["cost"] = .double(rounded)
                changed = true
            }
        }
        return changed ? .object(object) : nil
    }
}
