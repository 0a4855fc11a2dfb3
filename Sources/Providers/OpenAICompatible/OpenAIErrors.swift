import Foundation
import GatewayCore

/// Errors from OpenAI-compatible upstreams, as the errors our clients see.
///
/// The upstream's own message is kept (usually the most useful text), trimmed to one line of at
/// most `maxMessageCharacters` (no multi-KB validation dumps) and redacted. Its status is kept
/// where it describes the client's request; statuses about the gateway's own standing with the
/// provider (its credentials) become 502, so a client does not think its key is wrong.
enum OpenAIErrors {
    static let maxMessageCharacters = 300

    static func map(status: Int, body: [UInt8], headers: [(String, String)], provider: String, redactor: Redactor) -> APIError {
        var message: String?
        var type: String?
        var code: String?
        if let json = try? JSONValue.parse(body), let error = json["error"] {
            message = error["message"]?.stringValue ?? error.stringValue
            type = error["type"]?.stringValue
            code = codeString(error["code"])
        }
        let detail = trimmed(redactor(message ?? String(decoding: body.prefix(1024), as: UTF8.self)))
        let said = detail.isEmpty ? "no details" : detail
        var error: APIError
        switch status {
        case 401, 403:
            error = APIError(status: 502, type: "upstream_error", code: "upstream_auth_failed",
                             message: "Provider '\(provider)' rejected the gateway's credentials (HTTP \(status)): \(said)")
        case 429:
            error = APIError(status: 429, type: "rate_limit_error", code: "rate_limited",
                             message: "Provider '\(provider)' is rate limiting requests: \(said)")
        case 400..<500:
            error = APIError(status: status, type: safeLabel(type) ?? "invalid_request_error", code: safeLabel(code) ?? "upstream_rejected",
                             message: "Provider '\(provider)' rejected the request (HTTP \(status)): \(said)")
        case 500..<600:
            error = APIError(status: status == 500 ? 502 : status, type: "upstream_error", code: safeLabel(code) ?? "upstream_error",
                             message: "Provider '\(provider)' failed (HTTP \(status)): \(said)")
        default:
            error = APIError(status: 502, type: "upstream_error", code: "upstream_bad_status",
                             message: "Provider '\(provider)' answered with unexpected HTTP \(status)")
        }
        for (name, value) in headers {
            let lower = name.lowercased()
            if lower == "retry-after" || lower == "retry-after-ms" { error.headers.append((name, value)) }
        }
        return error
    }

    /// An error object inside a stream (or a 200 body).
    static func streamError(_ error: JSONValue, redactor: Redactor) -> APIError {
        let message = trimmed(redactor(error["message"]?.stringValue ?? error.stringValue ?? "the upstream reported an error"))
        return APIError(status: 502, type: "upstream_error", code: "upstream_error",
                        message: "The upstream failed mid-stream: \(message.isEmpty ? "no details" : message)")
    }

    /// One line, at most `maxMessageCharacters` characters.
    static func trimmed(_ text: String) -> String {
        let line = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }.joined(separator: " ")
        return line.count > maxMessageCharacters ? String(line.prefix(maxMessageCharacters)) + "…" : line
    }

    private static func codeString(_ value: JSONValue?) -> String? {
        switch value {
        case .string(let text)?: text
        case .int(let number)?: String(number)
        default: nil
        }
    }

    /// An upstream's `type`/`code` passed on only when it looks like an identifier (it ends up in
    /// metrics labels and client code paths).
    private static func safeLabel(_ text: String?) -> String? {
        guard let text, (1...64).contains(text.utf8.count),
              text.utf8.allSatisfy({ $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-")
                  || (0x30...0x39).contains($0) || (0x61...0x7A).contains($0) || (0x41...0x5A).contains($0) })
        else { return nil }
        return text
    }
}
