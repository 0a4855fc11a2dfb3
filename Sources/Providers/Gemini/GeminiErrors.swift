import GatewayCore

/// Google's error bodies (`{"error":{"code","message","status"}}`) as the errors our clients see
/// (the policy: `UpstreamErrors`); the code is Google's status name (`resource_exhausted`).
enum GeminiErrors {
    static func map(status: Int, body: [UInt8], headers: [(String, String)], provider: String, redactor: Redactor) -> APIError {
        UpstreamErrors.map(status: status, report: report((try? JSONValue.parse(body))?["error"]), body: body, headers: headers,
                           provider: provider, redactor: redactor)
    }

    /// An error inside a 200 stream: its `code` when it is an HTTP status, else the status its
    /// name stands for.
    static func streamError(_ error: JSONValue, redactor: Redactor) -> APIError {
        let code = error["code"]?.intValue.flatMap { (400...599).contains($0) ? Int($0) : nil }
        let status = code ?? httpStatus(error["status"]?.stringValue)
        return UpstreamErrors.streamError(status: status, report: report(error), redactor: redactor)
    }

    /// google.rpc.Code names as HTTP statuses (ai.google.dev/gemini-api/docs/troubleshooting).
    static func httpStatus(_ name: String?) -> Int {
        switch name {
        case "INVALID_ARGUMENT"?, "FAILED_PRECONDITION"?, "OUT_OF_RANGE"?: 400
        case "UNAUTHENTICATED"?: 401
        case "PERMISSION_DENIED"?: 403
        case "NOT_FOUND"?: 404
        case "RESOURCE_EXHAUSTED"?: 429
        case "UNAVAILABLE"?: 503
        case "DEADLINE_EXCEEDED"?: 504
        default: 500  // INTERNAL, UNKNOWN, names yet to come
        }
    }

    private static func report(_ error: JSONValue?) -> UpstreamErrors.Report {
        guard let error else { return UpstreamErrors.Report() }
        return UpstreamErrors.Report(message: error["message"]?.stringValue ?? error.stringValue,
                                     code: error["status"]?.stringValue?.lowercased())
    }
}
