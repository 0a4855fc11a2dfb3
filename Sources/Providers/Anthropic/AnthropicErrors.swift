import GatewayCore

/// Anthropic's error bodies (`{"type":"error","error":{"type","message"}}`, also the data of a
/// stream's `error` event) as the errors our clients see (the policy: `UpstreamErrors`).
enum AnthropicErrors {
    /// The HTTP status each error type stands for (docs.claude.com/en/api/errors), for errors
    /// that arrive inside a 200 stream. `overloaded_error` is 529, which the client sees as 503.
    static func status(forType type: String?) -> Int {
        switch type {
        case "invalid_request_error": 400
        case "authentication_error": 401
        case "billing_error": 402
        case "permission_error": 403
        case "not_found_error": 404
        case "request_too_large": 413
        case "rate_limit_error": 429
        case "timeout_error": 504
        case "overloaded_error": 529
        default: 500  // api_error and types yet to come
        }
    }

    static func map(status: Int, body: [UInt8], headers: [(String, String)], provider: String, redactor: Redactor) -> APIError {
        UpstreamErrors.map(status: status, report: report(try? JSONValue.parse(body)), body: body, headers: headers,
                           provider: provider, redactor: redactor)
    }

    /// An error event in a stream, or an error as a 200 body.
    static func streamError(_ json: JSONValue, redactor: Redactor) -> APIError {
        let report = report(json)
        return UpstreamErrors.streamError(status: status(forType: report.type), report: report, redactor: redactor)
    }

    private static func report(_ json: JSONValue?) -> UpstreamErrors.Report {
        guard let error = json?["error"] else { return UpstreamErrors.Report() }
        // Newer errors name a finer code in `error.details.error_code`.
        return UpstreamErrors.Report(message: error["message"]?.stringValue ?? error.stringValue, type: error["type"]?.stringValue,
                                     code: error["details"]?["error_code"]?.stringValue)
    }
}
