/// Turns an upstream's error response into the error our client sees.
///
/// The upstream's own OpenAI-shaped message is kept (it is usually the most useful text), its
/// status is kept where it describes the client's request, and statuses that describe the
/// gateway's relationship with the provider (its credentials) become 502 so a client does not
/// think its own key is wrong. Provider secrets are scrubbed from any text passed on.
public enum UpstreamErrorMapping {
    public static func map(status: Int, body: [UInt8], headers: [(String, String)], provider: String,
                           secrets: [String] = []) -> APIError {
        var message: String?
        var type: String?
        var code: String?
        if JSONScanner.isValid(body), let json = try? JSONValue.parse(body), let error = json["error"] {
            message = error["message"]?.stringValue ?? error.stringValue
            type = error["type"]?.stringValue
            switch error["code"] {
            case .string(let value)?: code = value
            case .int(let value)?: code = String(value)
            default: break
            }
        }
        let snippet = String(decoding: body.prefix(200), as: UTF8.self)
        let detail = message ?? (snippet.isEmpty ? "no details" : snippet)
        var error: APIError
        switch status {
        case 401, 403:
            error = APIError(status: 502, type: "upstream_error", code: "upstream_auth_failed",
                             message: "Provider '\(provider)' rejected the gateway's credentials (HTTP \(status)): \(detail)")
        case 429:
            error = APIError(status: 429, type: type ?? "rate_limit_error", code: code ?? "rate_limited",
                             message: "Provider '\(provider)' is rate limiting requests: \(detail)")
        case 400..<500:
            error = APIError(status: status, type: type ?? "invalid_request_error", code: code ?? "upstream_rejected",
                             message: "Provider '\(provider)' rejected the request (HTTP \(status)): \(detail)")
        case 500..<600:
            error = APIError(status: status == 500 ? 502 : status, type: "upstream_error", code: code ?? "upstream_error",
                             message: "Provider '\(provider)' failed (HTTP \(status)): \(detail)")
        default:
            error = APIError(status: 502, type: "upstream_error", code: "upstream_bad_status",
                             message: "Provider '\(provider)' answered with unexpected HTTP \(status)")
        }
        for (name, value) in headers {
            let lower = name.lowercased()
            if lower == "retry-after" || lower == "retry-after-ms" { error.headers.append((name, value)) }
        }
        error.message = scrub(error.message, secrets: secrets)
        return error
    }

    /// Replaces every occurrence of a secret with `[redacted]`.
    public static func scrub(_ text: String, secrets: [String]) -> String {
        var text = text
        for secret in secrets where secret.count >= 4 {
            text = text.replacingOccurrences(of: secret, with: "[redacted]")
        }
        return text
    }
}

extension String {
    /// Foundation-free replace (GatewayCore stays light).
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.range(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}

extension Substring {
    func range(of target: String) -> Range<Index>? {
        let needle = Array(target.utf8)
        let haystack = Array(utf8)
        guard needle.count <= haystack.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start..<(start + needle.count)].elementsEqual(needle) {
            let lower = utf8.index(utf8.startIndex, offsetBy: start)
            let upper = utf8.index(lower, offsetBy: needle.count)
            return lower..<upper
        }
        return nil
    }
}
