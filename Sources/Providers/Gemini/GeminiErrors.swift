import GatewayCore

/// Google's error bodies (`{"error":{"code","message","status"}}`, also as a one-element array)
/// as the errors our clients see (the policy: `UpstreamErrors`); the code is Google's status name
/// (`resource_exhausted`). Google says when to retry in the body (`google.rpc.RetryInfo`'s
/// `retryDelay`, e.g. `"7s"`), not in a header: it becomes the `retry-after-ms` the gateway's
/// retries and the client's SDK read, unless a header already said.
enum GeminiErrors {
    /// `status` as read (`meaningOfStatus`); `sentStatus`, the one on the wire, is what the
    /// message names (review 64D #7: a 400 `API_KEY_INVALID` read "HTTP 401").
    static func map(status: Int, sentStatus: Int? = nil, body: [UInt8], headers: [(String, String)], provider: String,
                    redactor: Redactor) -> APIError {
        let parsed = try? JSONValue.parse(body)
        let error = parsed?["error"] ?? parsed?.arrayValue?.first?["error"]
        return UpstreamErrors.map(status: status, sentStatus: sentStatus, report: report(error), body: body,
                                  headers: retryHeaders(error, headers: headers), provider: provider, redactor: redactor)
    }

    /// `headers` with `retry-after-ms` from the body's `RetryInfo`, unless a header already said.
    static func retryHeaders(body: [UInt8], headers: [(String, String)]) -> [(String, String)] {
        guard body.count <= 64 << 10, let parsed = try? JSONValue.parse(body) else { return headers }
        return retryHeaders(parsed["error"] ?? parsed.arrayValue?.first?["error"], headers: headers)
    }

    private static func retryHeaders(_ error: JSONValue?, headers: [(String, String)]) -> [(String, String)] {
        let named = headers.contains { ["retry-after", "retry-after-ms"].contains($0.0.lowercased()) }
        guard !named, let delay = retryDelayMilliseconds(error) else { return headers }
        return headers + [("retry-after-ms", String(delay))]
    }

    /// Google's 400s about the gateway's own standing, not the client's request, as the statuses
    /// that say so: a key it refuses (`ErrorInfo.reason` `API_KEY_INVALID`, `API_KEY_EXPIRED`…:
    /// Google answers a bad key with 400 `INVALID_ARGUMENT`) is a 401, and `FAILED_PRECONDITION`
    /// (the API not offered where the gateway runs, or its project without billing) a 403. Both
    /// then reach the client as the gateway's problem (502), and a route's next model is tried;
    /// as a 400 the client was told its own request was wrong and nothing fell back (review 44
    /// Gemini F1). Only a body of at most 64 KiB is read for it.
    static func meaningOfStatus(_ status: Int, body: [UInt8]) -> Int {
        guard status == 400, body.count <= 64 << 10, let parsed = try? JSONValue.parse(body),
              let error = parsed["error"] ?? parsed.arrayValue?.first?["error"] else { return status }
        if error["status"]?.stringValue == "FAILED_PRECONDITION" { return 403 }
        for detail in error["details"]?.arrayValue ?? [] where detail["@type"]?.stringValue?.hasSuffix("google.rpc.ErrorInfo") == true {
            if detail["reason"]?.stringValue?.hasPrefix("API_KEY_") == true { return 401 }
        }
        return status
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
