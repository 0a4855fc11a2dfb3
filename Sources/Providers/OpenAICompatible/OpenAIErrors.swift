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
            report.flaggedContent = isModeration(error)
        }
        return UpstreamErrors.map(status: meaningOfStatus(status, body: body), sentStatus: status, report: report, body: body,
                                  headers: headers, provider: provider, redactor: redactor)
    }

    /// What an error status means, where the body says more than the status (review 74A #4):
    /// a 429 `insufficient_quota` (OpenAI: no credit left, documented as not to be retried) is
    /// a 402, as OpenRouter says it, so it is neither retried nor told as a rate limit.
    static func meaningOfStatus(_ status: Int, body: [UInt8]) -> Int {
        guard status == 429, body.count <= 64 << 10, let error = (try? JSONValue.parse(body))?["error"] else { return status }
        return [error["code"], error["type"]].contains(.string("insufficient_quota")) ? 402 : status
    }

    /// OpenRouter's moderation refusal (a 403 with `metadata.reasons` / `flagged_input`): about
    /// the client's content, not the gateway's credentials.
    private static func isModeration(_ error: JSONValue) -> Bool {
        guard let metadata = error["metadata"]?.objectValue else { return false }
        return metadata["reasons"]?.arrayValue != nil || metadata["flagged_input"] != nil
    }

    /// An error object in a 2xx body or an event, with the status it stands for
    /// (`inBandStatus`) and its type and code kept as the client's labels, as a status error's
    /// are (review 81B #2: every one was a 502 `upstream_error`, retried, a context too long
    /// included).
    static func streamError(_ error: JSONValue, redactor: Redactor) -> APIError {
        var report = UpstreamErrors.Report(message: error["message"]?.stringValue ?? error.stringValue)
        report.type = error["type"]?.stringValue
        report.code = codeString(error["code"])
        return UpstreamErrors.streamError(status: inBandStatus(error), report: report, redactor: redactor)
    }

    /// OpenAI's in-band errors carry no status. OpenRouter's numeric `code` is the HTTP status it
    /// stands for (429, 502, 503…), and LiteLLM's is the same as a string (`"429"`); else
    /// OpenAI's own labels say it: a request the model cannot take (`context_length_exceeded`,
    /// `invalid_request_error`) is a 400, neither retried nor passed to a fallback; a rate limit
    /// a 429; no credit left a 402. Anything else is a 502.
    static func inBandStatus(_ error: JSONValue) -> Int {
        let labels = [error["code"]?.stringValue, error["type"]?.stringValue]
        // No credit left says so whatever number comes with it (a 429 `insufficient_quota` is a
        // 402 as a status error too: `meaningOfStatus`).
        if labels.contains("insufficient_quota") { return 402 }
        switch error["code"] {
        case .int(let number)? where (400...599).contains(number): return Int(number)
        case .string(let text)? where text.utf8.count == 3 && text.utf8.allSatisfy({ (0x30...0x39).contains($0) }):
            if let number = Int(text), (400...599).contains(number) { return number }
        default: break
        }
        if labels.contains("rate_limit_exceeded") || labels.contains("rate_limit_error") { return 429 }
        if labels.contains("context_length_exceeded") || labels.contains("invalid_request_error") { return 400 }
        return 502
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
        guard let finishReason, finishIsFailure(finishReason) else { return nil }
        return .object(["message": .string("the upstream ended its answer with finish_reason \"\(finishReason)\"")])
    }

    /// Whether a choice's `finish_reason` says its answer failed.
    static func finishIsFailure(_ reason: String) -> Bool { reason == "error" || reason == "abort" }

    private static func codeString(_ value: JSONValue?) -> String? {
        switch value {
        case .string(let text)?: text
        case .int(let number)?: String(number)
        default: nil
        }
    }
}
