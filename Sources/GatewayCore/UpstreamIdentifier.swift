/// An identifier an upstream gave a request or its answer (OpenAI's `x-request-id`, Anthropic's
/// `request-id`, a completion's `id` such as OpenRouter's `gen-…`), kept on the record so an
/// operator can find the call in the provider's own logs and bills (review 74A #5: the gateway's
/// own id replaced it everywhere). An upstream's bytes: kept only when short and plain.
public enum UpstreamIdentifier {
    public static let maxBytes = 128

    /// `text` when it is 1–128 bytes of letters, digits and `-_.:/+=`, else nil.
    public static func sanitized<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> String? {
        guard (1...maxBytes).contains(bytes.count), bytes.allSatisfy(isAllowed) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `bytes` sanitized, and nil when it holds a secret the gateway knows (a key fits the
    /// characters allowed; the record is read by the key's holder).
    public static func sanitized<Bytes: Collection<UInt8>>(_ bytes: Bytes, redactor: Redactor) -> String? {
        guard let text = sanitized(bytes), redactor(text) == text else { return nil }
        return text
    }

    /// The request id among an upstream's response headers.
    public static func requestID(in headers: [(String, String)], redactor: Redactor) -> String? {
        for (name, value) in headers where name.utf8.count <= 12 {
            let lower = name.lowercased()
            if lower == "x-request-id" || lower == "request-id" { return sanitized(Array(value.utf8), redactor: redactor) }
        }
        return nil
    }

    private static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "/"), UInt8(ascii: "+"),
             UInt8(ascii: "="):
            true
        default:
            false
        }
    }
}
