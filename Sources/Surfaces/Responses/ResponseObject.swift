import GatewayCore
import Providers

/// What every Response object of one request shares: its id, creation time, model, and the
/// fields that repeat the request (`ResponsesRequest.echoedFields`). Builds the object itself for
/// `response.created` / `.in_progress` / `.completed` / `.incomplete` / `.failed` and for the
/// non-streamed answer, with every field openai-python's `Response` has no default for, and
/// those OpenAI always sends (null when unknown).
///
/// Ids derive from the gateway's generation id (`gen-<hex>`), so one request's ids are related
/// and the generation record stays findable: `resp_<hex>`, and `<prefix>_<hex>_<output index>`
/// for items (`msg_`, `rs_`, `fc_`, `fu_`), unique within the response.
public struct ResponseEnvelope: Sendable {
    public let id: String
    public let createdAt: Int
    public let model: String
    public let echoed: [String: JSONValue]
    private let idBase: String

    public init(generationID: String, createdAt: Int, model: String, echoed: [String: JSONValue]) {
        idBase = generationID.hasPrefix("gen-") ? String(generationID.dropFirst(4)) : generationID
        id = "resp_" + idBase
        self.createdAt = createdAt
        self.model = model
        self.echoed = echoed
    }

    public func itemID(_ prefix: String, outputIndex: Int) -> String {
        "\(prefix)_\(idBase)_\(outputIndex)"
    }

    /// The Response object. `status`: `in_progress`, `completed`, `incomplete` or `failed`.
    public func json(status: String, output: [JSONValue], usage: JSONValue = .null, error: JSONValue = .null,
                     incompleteDetails: JSONValue = .null, completedAt: Int? = nil) -> JSONValue {
        var object = echoed
        object["id"] = .string(id)
        object["object"] = .string("response")
        object["created_at"] = .int(Int64(createdAt))
        object["model"] = .string(model)
        object["status"] = .string(status)
        object["output"] = .array(output)
        object["usage"] = usage
        object["error"] = error
        object["incomplete_details"] = incompleteDetails
        object["completed_at"] = completedAt.map { .int(Int64(max($0, createdAt))) } ?? .null  // never before its start
        return .object(object)
    }
}

/// Responses' names for token counts (openai-python `response_usage.py`), from the gateway's.
public enum ResponsesUsage {
    /// `extra` adds fields of our own (`cost`, as OpenRouter reports it, is always there; Fusion
    /// adds its per-call breakdown).
    public static func json(_ usage: Usage, extra: [String: JSONValue] = [:]) -> JSONValue {
        var object = extra
        object["input_tokens"] = .int(usage.promptTokens)
        // `cache_write_tokens` is required in openai-python 3.57's types: 0 when nobody reported it.
        object["input_tokens_details"] = .object(["cached_tokens": .int(usage.cachedTokens), "cache_write_tokens": .int(usage.cacheWriteTokens)])
        object["output_tokens"] = .int(usage.completionTokens)
        object["output_tokens_details"] = .object(["reasoning_tokens": .int(usage.reasoningTokens)])
        object["total_tokens"] = .int(usage.totalTokens)
        object["cost"] = .double(usage.cost)
        return .object(object)
    }
}

extension APIError {
    /// The Response object's `error`: `code` in the SDK's vocabulary (`response_error.py`: a
    /// rate limit is `rate_limit_exceeded`, anything else that ends a started response is
    /// `server_error`), our message.
    var responseError: JSONValue {
        .object(["code": .string(status == 429 ? "rate_limit_exceeded" : "server_error"), "message": .string(message)])
    }
}

/// One item of a response's `output` as it builds up (openai-python `response_output_item.py`).
/// A struct whose `text` grows in place: deltas append to it per token, so it must never be
/// copied whole on the way (an enum's payload would be).
struct ResponseItem: Sendable {
    enum Kind: Sendable {
        case message
        /// A message whose one part is the model's refusal (`{"type":"refusal"}`).
        case refusal
        /// The model's reasoning, as a summary (what Responses clients show of it).
        case reasoning
        case functionCall(callID: String, name: String)
        /// An item its renderer gives whole (a server tool's run, e.g. `openrouter:fusion`).
        case other(JSONValue)
    }

    let id: String
    var kind: Kind
    /// The message's text, the reasoning summary's, or the call's arguments.
    var text = ""
    var annotations: [JSONValue] = []
    var status = "in_progress"
    /// A reasoning item's signed block, for the client to send back (`ReasoningBlock.token`).
    var encryptedContent: String?

    init(id: String, kind: Kind) {
        self.id = id
        self.kind = kind
    }

    /// The item as `output_item.added` shows it: nothing in it yet.
    var initialJSON: JSONValue {
        switch kind {
        case .message, .refusal:
            .object(["id": .string(id), "type": .string("message"), "status": .string("in_progress"), "role": .string("assistant"),
                     "content": .array([])])
        case .reasoning:
            .object(["id": .string(id), "type": .string("reasoning"), "summary": .array([])])
        case .functionCall(let callID, let name):
            Self.functionCall(id, callID, name, "", "in_progress")
        case .other(let json):
            json
        }
    }

    /// The item as it stands (final once closed).
    var json: JSONValue {
        switch kind {
        case .message:
            .object(["id": .string(id), "type": .string("message"), "status": .string(status), "role": .string("assistant"),
                     "content": .array([Self.textPart(text, annotations)])])
        case .refusal:
            .object(["id": .string(id), "type": .string("message"), "status": .string(status), "role": .string("assistant"),
                     "content": .array([Self.refusalPart(text)])])
        case .reasoning:
            Self.reasoning(id, status, text, encryptedContent)
        case .functionCall(let callID, let name):
            Self.functionCall(id, callID, name, text, status)
        case .other(let json):
            json
        }
    }

    static func reasoning(_ id: String, _ status: String, _ text: String, _ encryptedContent: String?) -> JSONValue {
        var object: [String: JSONValue] = ["id": .string(id), "type": .string("reasoning"), "status": .string(status),
                                           "summary": .array([summaryPart(text)])]
        if let encryptedContent { object["encrypted_content"] = .string(encryptedContent) }
        return .object(object)
    }

    static func textPart(_ text: String, _ annotations: [JSONValue]) -> JSONValue {
        .object(["type": .string("output_text"), "text": .string(text), "annotations": .array(annotations), "logprobs": .array([])])
    }

    static func refusalPart(_ text: String) -> JSONValue {
        .object(["type": .string("refusal"), "refusal": .string(text)])
    }

    static func summaryPart(_ text: String) -> JSONValue {
        .object(["type": .string("summary_text"), "text": .string(text)])
    }

    static func functionCall(_ id: String, _ callID: String, _ name: String, _ arguments: String, _ status: String) -> JSONValue {
        .object(["id": .string(id), "type": .string("function_call"), "status": .string(status), "call_id": .string(callID),
                 "name": .string(name), "arguments": .string(arguments)])
    }
}
