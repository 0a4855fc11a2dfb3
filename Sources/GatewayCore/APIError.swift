/// An error in OpenAI's shape: `{"error":{"message","type","param","code"}}`, with its HTTP status.
///
/// Every failure a client can see goes through this type, before the first byte as the body of
/// a response with `status`, after it as a final stream chunk.
public struct APIError: Error, Equatable, Sendable {
    public var status: Int
    public var type: String
    public var code: String
    public var message: String
    public var param: String?
    /// Extra response headers (e.g. `Retry-After`).
    public var headers: [(String, String)] = []
    /// Who gave the error: the gateway, or an upstream whose error is passed on (its code may be
    /// one of the gateway's own, `invalid_api_key`: metrics and records tell them apart).
    public var origin: Origin = .gateway
    /// What the operator's log gets besides `message` and the client does not (curl's text,
    /// naming the provider's host and address): never encoded into a response.
    public var detail: String?

    public enum Origin: String, Sendable {
        case gateway, upstream
    }

    public init(status: Int, type: String, code: String, message: String, param: String? = nil, headers: [(String, String)] = []) {
        self.status = status
        self.type = type
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers
    }

    public static func == (lhs: APIError, rhs: APIError) -> Bool {
        lhs.status == rhs.status && lhs.type == rhs.type && lhs.code == rhs.code && lhs.message == rhs.message
            && lhs.param == rhs.param
    }

    /// `{"error":{…}}`
    public var body: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(96 + message.utf8.count)
        out.append(contentsOf: #"{"error":"#.utf8)
        appendObject(to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// The error as a final chat.completion.chunk, for failures after streaming began:
    /// OpenAI SDKs raise `APIError` on a chunk carrying `error`.
    /// `created`: the stream's creation time, as in its other chunks.
    public func streamChunk(id: String = "", model: String = "", created: Int? = nil) -> [UInt8] {
        var out: [UInt8] = []
        out.append(contentsOf: #"{"id":"#.utf8)
        JSONWriting.appendString(id, to: &out)
        out.append(contentsOf: #","object":"chat.completion.chunk","#.utf8)
        if let created { out.append(contentsOf: #""created":\#(created),"#.utf8) }
        out.append(contentsOf: #""model":"#.utf8)
        JSONWriting.appendString(model, to: &out)
        out.append(contentsOf: #","error":"#.utf8)
        appendObject(to: &out)
        out.append(contentsOf: #","choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}"#.utf8)
        return out
    }

    private func appendObject(to out: inout [UInt8]) {
        out.append(contentsOf: #"{"message":"#.utf8)
        JSONWriting.appendString(message, to: &out)
        out.append(contentsOf: #","type":"#.utf8)
        JSONWriting.appendString(type, to: &out)
        out.append(contentsOf: #","param":"#.utf8)
        if let param { JSONWriting.appendString(param, to: &out) } else { out.append(contentsOf: "null".utf8) }
        out.append(contentsOf: #","code":"#.utf8)
        JSONWriting.appendString(code, to: &out)
        out.append(UInt8(ascii: "}"))
    }
}

extension APIError {
    public static func invalidRequest(_ message: String, param: String? = nil, code: String = "invalid_request") -> APIError {
        APIError(status: 400, type: "invalid_request_error", code: code, message: message, param: param)
    }

    public static func invalidJSON(_ detail: String) -> APIError {
        APIError(status: 400, type: "invalid_request_error", code: "invalid_json",
                 message: "The request body is not valid JSON: \(detail)")
    }

    public static func modelNotFound(_ model: String, detail: String) -> APIError {
        APIError(status: 404, type: "invalid_request_error", code: "model_not_found",
                 message: "The model '\(model.shortened(toBytes: 256))' does not exist: \(detail)", param: "model")
    }

    public static func notFound(path: String) -> APIError {
        APIError(status: 404, type: "invalid_request_error", code: "not_found", message: "No route for \(path)")
    }

    public static func methodNotAllowed(_ method: String, path: String, allowed: String) -> APIError {
        APIError(status: 405, type: "invalid_request_error", code: "method_not_allowed",
                 message: "\(method) is not allowed on \(path); use \(allowed)", headers: [("Allow", allowed)])
    }

    /// A request still running, or still waiting to start, when the gateway's shutdown grace
    /// period ended.
    public static let cutOnShutdown = APIError(
        status: 503, type: "server_error", code: "shutting_down",
        message: "The gateway is shutting down and this response did not finish within its grace period (server.shutdown_grace_ms); send the request again.")

    public static func upstreamUnavailable(_ message: String, code: String = "upstream_unavailable", status: Int = 502) -> APIError {
        APIError(status: status, type: "upstream_error", code: code, message: message)
    }
}

extension APIError {
    /// A request the HTTP server rejected before any handler saw it (unreadable, over a limit,
    /// too slow), in OpenAI's shape: the server's own status, code and message.
    public static func httpRejection(status: Int, code: String, message: String) -> APIError {
        APIError(status: status, type: "invalid_request_error", code: code, message: message)
    }

    /// The headers of a response whose body is this error.
    public var responseHeaders: [(String, String)] { [("Content-Type", "application/json")] + headers }
}

extension APIError {
    public static func upstreamProtocol(_ message: String) -> APIError {
        APIError(status: 502, type: "upstream_error", code: "upstream_protocol_error", message: message)
    }

    /// An upstream response (or a deliberation's responses together) passed its byte bound.
    public static func upstreamTooLarge(_ message: String) -> APIError {
        APIError(status: 502, type: "upstream_error", code: "upstream_too_large", message: message)
    }

    /// The upstream's stream ended with neither its end marker nor a finish reason.
    /// `whole`: a non-streamed answer (not called a stream: review 72A).
    public static func upstreamTruncated(whole: Bool = false) -> APIError {
        APIError(status: 502, type: "upstream_error", code: "upstream_truncated",
                 message: whole ? "The upstream's answer gave no finish reason (it may be incomplete)."
                                : "The upstream's stream ended before the answer was complete (it gave no finish reason).")
    }
}
