import GatewayCore

/// Signed reasoning on chat completions, in OpenRouter's `reasoning_details` shape: a chat client
/// carries an Anthropic model's thinking block back on its next request this way (what extended
/// thinking with tools needs), as with OpenRouter.
/// - a signed thinking block: `{"type":"reasoning.text","text":…,"signature":…,
///   "format":"anthropic-claude-v1","index":n}`, sent once, whole, when its signature arrives
///   (the text streamed before it as `delta.reasoning`);
/// - `redacted_thinking`: `{"type":"reasoning.encrypted","data":…,"format":"anthropic-claude-v1","index":n}`.
/// Entries of other types or formats (OpenAI's encrypted reasoning, fusion records) are not this
/// type's: an OpenAI-compatible upstream gets the client's message as it was sent.
public enum ReasoningDetail {
    public static let format = "anthropic-claude-v1"

    public static func json(_ block: ReasoningBlock, index: Int) -> JSONValue {
        switch block {
        case .thinking(let text, let signature):
            .object(["type": .string("reasoning.text"), "text": .string(text), "signature": .string(signature),
                     "format": .string(format), "index": .int(Int64(index))])
        case .redacted(let data):
            .object(["type": .string("reasoning.encrypted"), "data": .string(data), "format": .string(format),
                     "index": .int(Int64(index))])
        }
    }

    /// The blocks an assistant message's `reasoning_details` carries, in order. Entries sharing an
    /// `index` (a client that kept streamed pieces unmerged) are joined first; entries that are
    /// not Anthropic's, or have no signature or data, are left out.
    public static func blocks(_ details: JSONValue?) -> [ReasoningBlock] {
        guard let entries = details?.arrayValue, !entries.isEmpty else { return [] }
        var merged: [(index: JSONValue?, type: String, text: String, signature: String, data: String)] = []
        for entry in entries {
            guard let type = entry["type"]?.stringValue, type == "reasoning.text" || type == "reasoning.encrypted" else { continue }
            if let format = entry["format"], format != .null, format.stringValue != Self.format { continue }
            let index = entry["index"].flatMap { $0 == .null ? nil : $0 }
            let text = entry["text"]?.stringValue ?? ""
            let signature = entry["signature"]?.stringValue ?? ""
            let data = entry["data"]?.stringValue ?? ""
            if let index, let last = merged.indices.last, merged[last].index == index, merged[last].type == type {
                merged[last].text += text
                if !signature.isEmpty { merged[last].signature = signature }
                if !data.isEmpty { merged[last].data = data }
            } else {
                merged.append((index, type, text, signature, data))
            }
        }
        return merged.compactMap { entry in
            if entry.type == "reasoning.text" {
                entry.signature.isEmpty ? nil : .thinking(text: entry.text, signature: entry.signature)
            } else {
                entry.data.isEmpty ? nil : .redacted(data: entry.data)
            }
        }
    }
}
