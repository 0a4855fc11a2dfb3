/// What a request's whole header section must be, checked once it is read: framing and
/// credentials unambiguous, nothing the server cannot undo. Socket-free; the decoder refuses the
/// request with what it returns.
enum HeaderSectionRules {
    static func refusal(_ headers: [(name: String, value: String)], minor: Int) -> HTTPRejection? {
        // http_parser takes an empty Content-Length as none at all; RFC 9110 §8.6 allows digits only.
        for (name, value) in headers where name.asciiCaseInsensitiveEquals("content-length") {
            let digits = value.utf8.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }
            guard !digits.isEmpty, digits.allSatisfy({ (0x30...0x39).contains($0) }) else {
                return .malformed("Content-Length is not a decimal number")
            }
        }
        // Framing and credentials must be unambiguous: one Transfer-Encoding line (a second one
        // is a list a front proxy may read differently), none at all on HTTP/1.0 (RFC 9112
        // §6.1: its framing is faulty), one Authorization, one X-Api-Key.
        let transferEncodings = headers.count(where: { $0.name.asciiCaseInsensitiveEquals("transfer-encoding") })
        if transferEncodings > 1 || (transferEncodings == 1 && minor == 0) {
            return .malformed(minor == 0 ? "Transfer-Encoding in an HTTP/1.0 request" : "more than one Transfer-Encoding header")
        }
        if headers.count(where: { $0.name.asciiCaseInsensitiveEquals("authorization") }) > 1 {
            return .malformed("more than one Authorization header")
        }
        if headers.count(where: { $0.name.asciiCaseInsensitiveEquals("x-api-key") }) > 1 {
            return .malformed("more than one X-Api-Key header")
        }
        if let expect = headers.first(where: { $0.name.asciiCaseInsensitiveEquals("expect") }),
           !expect.value.asciiCaseInsensitiveEquals("100-continue") {
            return .expectationFailed(String(expect.value.prefix(40)))
        }
        if let encoding = headers.first(where: { $0.name.asciiCaseInsensitiveEquals("content-encoding") }),
           !encoding.value.asciiCaseInsensitiveEquals("identity") {
            return .unsupportedContentEncoding(String(encoding.value.prefix(40)))
        }
        // http_parser reads a body whose last coding is chunked and ignores the codings before it
        // (`gzip, chunked`): a coding it cannot undo is refused instead (a chunked one that is not
        // last is http_parser's 400).
        let codings = headers.filter { $0.name.asciiCaseInsensitiveEquals("transfer-encoding") }
            .flatMap { $0.value.utf8.split(separator: UInt8(ascii: ",")) }
            .map { String(decoding: $0.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed(), as: UTF8.self).lowercased() }
        if codings.last == "chunked", let other = codings.first(where: { $0 != "chunked" }) {
            return .unsupportedTransferCoding(String(other.prefix(40)))
        }
        return nil
    }
}
