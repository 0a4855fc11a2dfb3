import GatewayCore

/// Errors from OpenAI-compatible upstreams (`{"error":{"message","type","code"}}`), as the
/// errors our clients see (the policy: `UpstreamErrors`).
enum OpenAIErrors {
    static func map(status: Int, body: [UInt8], headers: [(String, String)], provider: String, redactor: Redactor) -> APIError {
        var report = UpstreamErrors.Report()
        if let json = try? JSONValue.parse(body), let error = json["error"] {
            report.message = error["message"]?.stringValue ?? error.stringValue
            report.type = error["type"]?.stringValue
            report.code = codeString(error["code"])
            report.param = error["param"]?.stringValue
        }
        return UpstreamErrors.map(status: status, report: report, body: body, headers: headers, provider: provider, redactor: redactor)
    }

    /// An error object inside a stream (or a 200 body): OpenAI's carries no status, so it is a 502.
    /// An error object in a 2xx body or an event. OpenRouter's numeric `code` is the HTTP status
    /// it stands for (429, 502, 503…): kept, so a rate limit is told from an outage and retried
    /// as one; anything else is a 502.
    static func streamError(_ error: JSONValue, redactor: Redactor) -> APIError {
        let code = error["code"]?.intValue.flatMap { (400...599).contains($0) ? Int($0) : nil }
        return UpstreamErrors.streamError(status: code ?? 502, report: .init(message: error["message"]?.stringValue ?? error.stringValue),
                                          redactor: redactor)
    }

    /// The error an event named `error` carries: its data's `error` member, or the data itself
    /// (an object with a `message`, or text). Servers send both shapes (review 68A #4: one
    /// without the member reached clients as a chunk without `choices`).
    static func namedEventError(_ data: UnsafeRawBufferPointer) -> JSONValue {
        guard let json = try? JSONValue.parse(Array(data)) else { return .string(String(decoding: data, as: UTF8.self)) }
        if let error = json["error"], error != .null { return error }
        return json
    }

    /// The error of a choice that says it failed (OpenRouter's `finish_reason: "error"`, vLLM's
    /// `"abort"` for a request the engine gave up on, or an `error` of its own) without a
    /// top-level `error`: that answer failed, and must not pass as a complete one (review 45
    /// proxy #4, 71C #6). Nil for a choice that did not.
    static func choiceError(error: JSONValue?, finishReason: String?) -> JSONValue? {
        if let error, error != .null { return error }
        guard let finishReason, finishReason == "error" || finishReason == "abort" else { return nil }
        return .object(["message": .string("the upstream ended its answer with finish_reason \"\(finishReason)\"")])
    }

    private static func codeString(_ value: JSONValue?) -> String? {
        switch value {
        case .string(let text)?: text
        case .int(let number)?: String(number)
        default: nil
        }
    }
}
