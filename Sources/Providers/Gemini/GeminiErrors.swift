import GatewayCore

/// Google's error bodies (`{"error":{"code","message","status"}}`, also as a one-element array)
/// as the errors our clients see (the policy: `UpstreamErrors`); the code is Google's status name
/// (`resource_exhausted`). Google says when to retry in the body (`google.rpc.RetryInfo`'s
/// `retryDelay`, e.g. `"7s"`), not in a header: it becomes the `retry-after-ms` the gateway's
/// retries and the client's SDK read, unless a header already said.
enum GeminiErrors {
    static func map(status: Int, body: [UInt8], headers: [(String, String)], provider: String, redactor: Redactor) -> APIError {
        let parsed = try? JSONValue.parse(body)
        let error = parsed?["error"] ?? parsed?.arrayValue?.first?["error"]
        var headers = headers
        let named = headers.contains { ["retry-after", "retry-after-ms"].contains($0.0.lowercased()) }
        if !named, let delay = retryDelayMilliseconds(error) { headers.append(("retry-after-ms", String(delay))) }
        return UpstreamErrors.map(status: status, report: report(error), body: body, headers: headers, provider: provider, redactor: redactor)
    }

    /// `RetryInfo.retryDelay` (a protobuf Duration in JSON: seconds with an `s`, maybe a
    /// fraction) in whole milliseconds; nil when absent or not such a number.
    static func retryDelayMilliseconds(_ error: JSONValue?) -> Int64? {
        for detail in error?["details"]?.arrayValue ?? [] where detail["@type"]?.stringValue?.hasSuffix("google.rpc.RetryInfo") == true {
            guard let text = detail["retryDelay"]?.stringValue, text.hasSuffix("s"), text.utf8.count <= 24 else { continue }
            let number = text.dropLast()
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                  let seconds = Double(number), seconds.isFinite, seconds >= 0 else { continue }
            return Int64(min(seconds, 86_400) * 1000)
        }
        return nil
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
