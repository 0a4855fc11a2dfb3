import Foundation
import GatewayCore

/// How an upstream's error becomes the error our client sees: one policy for every provider,
/// each provider only parsing its own body shape into a `Report`.
///
/// The upstream's own message is kept (usually the most useful text), trimmed to one line of at
/// most `maxMessageCharacters` (no multi-KB validation dumps) and redacted. Its status is kept
/// where it describes the client's request; statuses about the gateway's own standing with the
/// provider (its credentials) become 502, so a client does not think its key is wrong.
/// Anthropic's 529 ("overloaded") becomes 503 `overloaded`: clients and their SDKs know 503 as
/// transient (the gateway's RetryPolicy retries the upstream's 529 itself).
public enum UpstreamErrors {
    static let maxMessageCharacters = 300

    /// What an error body says, in the provider's own words.
    struct Report {
        var message: String?
        var type: String?
        var code: String?
        /// The request field an upstream's 4xx names (OpenAI's `param`): the client's field too,
        /// since its request went up as it was sent (review 68A #7).
        var param: String?
        /// The error is a moderation refusal of the request's content (OpenRouter's 403 with
        /// `metadata.reasons`): the client's to know, not a credential failure.
        var flaggedContent = false

        /// The type and code, which reach the client as they are (`safeLabel`), left out when a
        /// secret is in them: a key fits a label's characters.
        func redactingLabels(_ redactor: Redactor) -> Report {
            var report = self
            if let type, redactor(type) != type { report.type = nil }
            if let code, redactor(code) != code { report.code = nil }
            if let param, redactor(param) != param || UpstreamErrors.safeParam(param) == nil { report.param = nil }
            return report
        }
    }

    /// An error response (any non-2xx status) from provider `provider`; `sentStatus`: the status
    /// on the wire, when `status` is what it was read as.
    static func map(status: Int, sentStatus: Int? = nil, report: Report, body: [UInt8], headers: [(String, String)], provider: String,
                    redactor: Redactor) -> APIError {
        // Redacted, then shortened (`trimmed`): a key cut in half is not recognised as one.
        let detail = trimmed(redactor(report.message ?? String(decoding: body.prefix(16 << 10), as: UTF8.self)))
        let said = detail.isEmpty ? "no details" : detail
        let kind = classify(status: status, report: report.redactingLabels(redactor))
        let message = kind.phrase.map { "Provider '\(provider)' \($0) (HTTP \(sentStatus ?? status)): \(said)" }
            ?? "Provider '\(provider)' answered with unexpected HTTP \(sentStatus ?? status)"
        var error = APIError(status: kind.status, type: kind.type, code: kind.code, message: message)
        if (400..<500).contains(kind.status) && kind.status != 429 { error.param = report.redactingLabels(redactor).param }
        error.headers = retryHeaders(headers)
        error.origin = .upstream
        return error
    }

    /// The upstream's `Retry-After` / `retry-after-ms`, passed on as the numbers they were read as
    /// (`RetryPolicy`: digits or a finite millisecond count, clamped to a day), never its bytes: a
    /// hostile `1e400`, `-5` or a control character does not reach the client's head.
    static func retryHeaders(_ headers: [(String, String)]) -> [(String, String)] {
        var out: [(String, String)] = []
        let milliseconds = headers.filter { $0.0.lowercased() == "retry-after-ms" }
        if let value = RetryPolicy.retryAfterMilliseconds(milliseconds) { out.append(("retry-after-ms", String(value))) }
        let seconds = headers.filter { $0.0.lowercased() == "retry-after" }
        if let value = RetryPolicy.retryAfterMilliseconds(seconds) { out.append(("Retry-After", String(value / 1000))) }
        return out
    }

    /// An error an upstream reported inside a stream or a whole 200 body (not said "mid-stream":
    /// review 71C #12), with the HTTP status its kind corresponds to (Anthropic's error type,
    /// Gemini's `code`).
    static func streamError(status: Int, report: Report, redactor: Redactor) -> APIError {
        let kind = classify(status: status, report: report.redactingLabels(redactor))
        let message = trimmed(redactor(report.message ?? "the upstream reported an error"))
        var error = APIError(status: kind.status, type: kind.type, code: kind.code,
                             message: "The upstream reported an error: \(message.isEmpty ? "no details" : message)")
        error.origin = .upstream
        return error
    }

    /// The status, type and code the client sees, and what the provider did (nil: a status no
    /// error should have).
    private static func classify(status: Int, report: Report) -> (status: Int, type: String, code: String, phrase: String?) {
        switch status {
        case 403 where report.flaggedContent:
            (403, "invalid_request_error", "content_flagged", "refused the request's content")
        case 401, 403:
            (502, "upstream_error", "upstream_auth_failed", "rejected the gateway's credentials")
        case 402 where report.code == "insufficient_quota" || report.type == "insufficient_quota":
            (402, "insufficient_quota", "insufficient_quota", "has no quota left")
        case 429:
            (429, "rate_limit_error", "rate_limited", "is rate limiting requests")
        case 529:
            (503, "upstream_error", "overloaded", "is overloaded")
        case 400..<500:
            (status, safeLabel(report.type) ?? "invalid_request_error", safeLabel(report.code) ?? "upstream_rejected",
             "rejected the request")
        case 500..<600:
            (status == 500 ? 502 : status, "upstream_error", safeLabel(report.code) ?? "upstream_error", "failed")
        default:
            (502, "upstream_error", "upstream_bad_status", nil)
        }
    }

    /// One line, at most `maxMessageCharacters` Unicode scalars: counted in grapheme clusters, one
    /// cluster of 10,000 marks (U+0600 prepends to whatever follows) passed 20 KB (review 85 #2).
    /// Control and format characters (an error body of raw bytes; bidi overrides and zero-width
    /// marks that reorder or hide text) become spaces: the message is text for a person, a log
    /// line and a terminal (review 98 #8, review 99 #4).
    static func trimmed(_ text: String) -> String {
        let visible = String(String.UnicodeScalarView(text.unicodeScalars.lazy.map { isUnsafeInText($0) || $0 == "\t" ? " " : $0 }))
        let line = visible.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }.joined(separator: " ")
        guard line.unicodeScalars.count > maxMessageCharacters else { return line }
        return String(String.UnicodeScalarView(line.unicodeScalars.prefix(maxMessageCharacters))) + "…"
    }

    /// A character of an upstream's text that has no place in a message for a person: a control
    /// character other than a tab or a line end, a format character (bidi overrides, zero-width
    /// marks that reorder or hide text), a line or paragraph separator.
    public static func isUnsafeInText(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control: !["\n", "\r", "\t"].contains(scalar)
        case .format, .lineSeparator, .paragraphSeparator: true
        default: false
        }
    }

    /// An upstream's `type`/`code` passed on only when it looks like an identifier (it ends up in
    /// metrics labels and client code paths).
    /// A field path as OpenAI's errors name one (`messages[0].content`, `tools.1.name`), else nil.
    static func safeParam(_ text: String) -> String? {
        guard (1...128).contains(text.utf8.count), text.utf8.allSatisfy({
            $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "]")
                || (0x30...0x39).contains($0) || (0x61...0x7A).contains($0) || (0x41...0x5A).contains($0)
        }) else { return nil }
        return text
    }

    static func safeLabel(_ text: String?) -> String? {
        guard let text, (1...64).contains(text.utf8.count),
              text.utf8.allSatisfy({ $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-")
                  || (0x30...0x39).contains($0) || (0x61...0x7A).contains($0) || (0x41...0x5A).contains($0) })
        else { return nil }
        return text
    }
}
