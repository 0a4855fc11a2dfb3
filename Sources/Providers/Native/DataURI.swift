import Foundation

/// A `data:` URI (RFC 2397) as the media type and base64 payload that Anthropic's and Gemini's
/// inline sources take. Non-base64 payloads are percent-decoded and re-encoded.
struct DataURI: Equatable {
    /// Lowercased, e.g. `image/png`; `text/plain` when the URI names none.
    var mediaType: String
    var base64: String

    init?(_ uri: String) {
        guard uri.utf8.count > 5, uri.prefix(5).lowercased() == "data:", let comma = uri.firstIndex(of: ",") else { return nil }
        let header = uri[uri.index(uri.startIndex, offsetBy: 5)..<comma].split(separator: ";", omittingEmptySubsequences: false)
        let type = header.first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        guard type.isEmpty || Self.isMediaType(type) else { return nil }
        mediaType = type.isEmpty ? "text/plain" : Self.aliases[type] ?? type
        let payload = uri[uri.index(after: comma)...]
        if header.dropFirst().contains(where: { $0.lowercased() == "base64" }) {
            guard !payload.isEmpty, payload.utf8.allSatisfy(Self.isBase64Byte) else { return nil }
            base64 = String(payload)
        } else {
            guard let text = payload.removingPercentEncoding else { return nil }
            base64 = Data(text.utf8).base64EncodedString()
        }
    }

    /// Names OpenAI's API takes for a registered type that Anthropic's refuses and Gemini's
    /// does not know (review 77A #5: `data:image/jpg` was a 400 for Claude).
    static let aliases = ["image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"]

    /// `type/subtype` of RFC 6838 name characters.
    private static func isMediaType(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        return parts.count == 2 && parts.allSatisfy { part in
            (1...127).contains(part.utf8.count) && part.utf8.allSatisfy { byte in
                (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) || "!#$&-^_.+".utf8.contains(byte)
            }
        }
    }

    private static func isBase64Byte(_ byte: UInt8) -> Bool {
        (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte)
            || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "=")
            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
    }
}
