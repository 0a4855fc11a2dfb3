/// An identifier an upstream gave a request or its answer (OpenAI's `x-request-id`, Anthropic's
/// `request-id`, a completion's `id` such as OpenRouter's `gen-…`), kept on the record so an
/// operator can find the call in the provider's own logs and bills (review 74A #5: the gateway's
/// own id replaced it everywhere). An upstream's bytes: kept only when short and plain.
public enum UpstreamIdentifier {
    public static let maxBytes = 128

    /// `bytes` when they are 1–128 bytes of letters, digits and `-_.:/+=`, else nil. A byte
    /// loop over a buffer: it runs on every request (the debug build's generic algorithms
    /// allocated per byte: the perf gate's count grew by 117 a request).
    public static func sanitized(_ bytes: UnsafeRawBufferPointer) -> String? {
        guard (1...maxBytes).contains(bytes.count) else { return nil }
        for index in 0..<bytes.count where !isAllowed(bytes[index]) { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    public static func sanitized(_ bytes: [UInt8]) -> String? { bytes.withUnsafeBytes { sanitized($0) } }

    /// `bytes` sanitized, and nil when it holds a secret the gateway knows (a key fits the
    /// characters allowed; the record is read by the key's holder).
    public static func sanitized(_ bytes: UnsafeRawBufferPointer, redactor: Redactor) -> String? {
        guard let text = sanitized(bytes), redactor(text) == text else { return nil }
        return text
    }

    /// `text` sanitized, as above (an id read from a decoded JSON value).
    public static func sanitized(_ text: String, redactor: Redactor) -> String? {
        var text = text
        return text.withUTF8 { sanitized(UnsafeRawBufferPointer($0), redactor: redactor) }
    }

    /// A whole answer's id: its top-level `id` (OpenAI's, Anthropic's) or Gemini's
    /// `responseId` (review 79 #3), sanitized; nil when neither is a plain string.
    public static func answerID(inWholeBody body: [UInt8], redactor: Redactor) -> String? {
        guard let range = JSONScanner.rangeOfTopLevelValue(forKey: "id", in: body) ?? JSONScanner.rangeOfTopLevelValue(forKey: "responseId", in: body),
              range.count > 2, body[range.lowerBound] == UInt8(ascii: "\"") else { return nil }
        return body.withUnsafeBytes {
            sanitized(UnsafeRawBufferPointer(rebasing: $0[(range.lowerBound + 1)..<(range.upperBound - 1)]), redactor: redactor)
        }
    }

    /// The request id among an upstream's response headers.
    public static func requestID(in headers: [(String, String)], redactor: Redactor) -> String? {
        for index in headers.indices {
            var name = headers[index].0
            guard name.utf8.count == 10 || name.utf8.count == 12 else { continue }
            let matches = name.withUTF8 { bytes in
                let wanted: StaticString = bytes.count == 12 ? "x-request-id" : "request-id"
                for position in 0..<bytes.count where bytes[position] | 0x20 != wanted.utf8Start[position] | 0x20 { return false }
                return true
            }
            guard matches else { continue }
            var value = headers[index].1
            return value.withUTF8 { sanitized(UnsafeRawBufferPointer($0), redactor: redactor) }
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
