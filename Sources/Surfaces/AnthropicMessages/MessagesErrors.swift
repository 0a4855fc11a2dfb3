import GatewayCore

/// Errors for Anthropic clients: `{"type":"error","error":{"type","message"}}` with the HTTP
/// status (the SDKs pick their exception, and whether to retry, from the status), or an `error`
/// event once a stream has begun (the SDKs raise on it).
public enum MessagesErrors {
    /// Anthropic's error type for a status (docs.claude.com/en/api/errors). The gateway's 503s
    /// (an upstream overloaded or unavailable, a shutdown) read as `overloaded_error`.
    public static func type(forStatus status: Int) -> String {
        switch status {
        case 401: "authentication_error"
        case 402: "billing_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 413: "request_too_large"
        case 429: "rate_limit_error"
        case 503, 529: "overloaded_error"
        case 504: "timeout_error"
        case 500...: "api_error"
        default: "invalid_request_error"
        }
    }

    /// The error's JSON, for a response body or an event's data. Anthropic's shape has no
    /// `param`: the field goes before the message, as Anthropic's API writes it
    /// (`messages.1.content: …`), unless the message names it already, or the path is in chat's
    /// syntax (`tools[0].function.name`, from checks shared with chat: a field this API does not
    /// have; review 56 #8).
    public static func body(_ error: APIError) -> [UInt8] {
        var message = error.message
        if let param = error.param, !param.isEmpty, !param.contains("["), !message.hasPrefix(param), !message.contains("'\(param)'") {
            message = "\(param): \(message)"
        }
        var out: [UInt8] = []
        out.reserveCapacity(64 + message.utf8.count)
        out.append(contentsOf: #"{"type":"error","error":{"type":"#.utf8)
        JSONWriting.appendString(type(forStatus: error.status), to: &out)
        out.append(contentsOf: #","message":"#.utf8)
        JSONWriting.appendString(message, to: &out)
        out.append(contentsOf: "}}".utf8)
        return out
    }

    /// The headers of a response whose body is `body(error)` (`Retry-After` and the like kept).
    public static func responseHeaders(_ error: APIError) -> [(String, String)] {
        [("Content-Type", "application/json")] + error.headers
    }

    /// A tool call whose arguments are not a JSON object (an upstream model wrote broken JSON):
    /// a `tool_use` block's `input` is an object, so it cannot be carried, and is not silently
    /// emptied either. A whole message is this 502; a stream ends with it in-band.
    public static func invalidToolArguments(name: String) -> APIError {
        APIError(status: 502, type: "upstream_error", code: "invalid_tool_arguments",
                 message: "The model called '\(name)' with arguments that are not a JSON object; a tool_use block cannot carry them.")
    }

    /// `event: error` for a failure after the stream began.
    public static func appendEvent(_ error: APIError, to out: inout [UInt8]) {
        SSEEncoder.appendEvent(name: "error", data: body(error), to: &out)
    }
}
