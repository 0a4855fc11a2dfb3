/// What a request's whole header section must be, checked once it is read: framing and
/// credentials unambiguous, nothing the server cannot undo. Socket-free; the decoder refuses the
/// request with what it returns.
enum HeaderSectionRules {
    // One pass over the fields with byte loops: this runs for every request, and the generic
    // sequence algorithms (`count(where:)`, `filter`, lazy `drop`) allocated ~50 times a request
    // in the debug build the perf gate counts.
    static func refusal(_ headers: [(name: String, value: String)], minor: Int) -> HTTPRejection? {
        var transferEncodings = 0, authorizations = 0, apiKeys = 0
        for (name, value) in headers {
            if name.asciiCaseInsensitiveEquals("content-length") {
                // http_parser takes an empty Content-Length as none at all; RFC 9110 §8.6 allows
                // digits only.
                guard isDecimal(value) else { return .malformed("Content-Length is not a decimal number") }
            } else if name.asciiCaseInsensitiveEquals("transfer-encoding") {
                transferEncodings += 1
            } else if name.asciiCaseInsensitiveEquals("authorization") {
                authorizations += 1
            } else if name.asciiCaseInsensitiveEquals("x-api-key") {
                apiKeys += 1
            }
        }
        // Framing and credentials must be unambiguous: one Transfer-Encoding line (a second one
        // is a list a front proxy may read differently), none at all on HTTP/1.0 (RFC 9112
        // §6.1: its framing is faulty), one Authorization, one X-Api-Key.
        if transferEncodings > 1 || (transferEncodings == 1 && minor == 0) {
            return .malformed(minor == 0 ? "Transfer-Encoding in an HTTP/1.0 request" : "more than one Transfer-Encoding header")
        }
        if let host = headers.first(where: { $0.name.asciiCaseInsensitiveEquals("host") }), !isHost(host.value) {
            return .malformed("the Host header is not a host and port")
        }
        if authorizations > 1 { return .malformed("more than one Authorization header") }
        if apiKeys > 1 { return .malformed("more than one X-Api-Key header") }
        for (name, value) in headers {
            if name.asciiCaseInsensitiveEquals("expect") {
                guard value.asciiCaseInsensitiveEquals("100-continue") else { return .expectationFailed(String(value.prefix(40))) }
                break
            }
        }
        for (name, value) in headers {
            if name.asciiCaseInsensitiveEquals("content-encoding") {
                guard value.asciiCaseInsensitiveEquals("identity") else { return .unsupportedContentEncoding(String(value.prefix(40))) }
                break
            }
        }
        // http_parser reads a body whose last coding is chunked and ignores the codings before it
        // (`gzip, chunked`): a coding it cannot undo is refused instead (a chunked one that is not
        // last is http_parser's 400).
        if transferEncodings == 1, let coding = headers.first(where: { $0.name.asciiCaseInsensitiveEquals("transfer-encoding") }) {
            let codings = coding.value.utf8.split(separator: UInt8(ascii: ","))
                .map { String(decoding: $0.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed(), as: UTF8.self).lowercased() }
            if codings.last == "chunked", let other = codings.first(where: { $0 != "chunked" }) {
                return .unsupportedTransferCoding(String(other.prefix(40)))
            }
        }
        return nil
    }

    /// RFC 9112 §3.2: a Host that is no `uri-host [":" port]` is a 400 (a front proxy or cache
    /// may read a `Host: a b/c@d` otherwise). Empty is allowed (a target without authority); a
    /// port is at most 65535 (review 112: `localhost:99999` was taken).
    static func isHost(_ value: String) -> Bool {
        var bytes = Substring(value).utf8.drop { $0 == 0x20 || $0 == 0x09 }
        while let last = bytes.last, last == 0x20 || last == 0x09 { bytes = bytes.dropLast() }
        guard !bytes.isEmpty else { return true }
        var host = bytes[...], port: Substring.UTF8View.SubSequence?
        if bytes.first == UInt8(ascii: "[") {
            // An IP literal: hex digits, `:` and `.` (and IPvFuture's `v`), then `]`.
            guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return false }
            host = bytes[bytes.index(after: bytes.startIndex)..<close]
            guard !host.isEmpty, host.allSatisfy({ isHexDigit($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "v") }) else { return false }
            let rest = bytes[bytes.index(after: close)...]
            if !rest.isEmpty {
                guard rest.first == UInt8(ascii: ":") else { return false }
                port = rest.dropFirst()
            }
        } else {
            if let colon = bytes.firstIndex(of: UInt8(ascii: ":")) {
                host = bytes[..<colon]
                port = bytes[bytes.index(after: colon)...]
            }
            // A reg-name: unreserved, sub-delims and percent escapes.
            guard host.allSatisfy({ byte in
                (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || "-._~!$&'()*+,;=%".utf8.contains(byte)
            }) else { return false }
        }
        if let port, !port.isEmpty {
            guard port.count <= 5, port.allSatisfy({ (0x30...0x39).contains($0) }), let number = Int(String(decoding: port, as: UTF8.self)),
                  number <= 65_535 else { return false }
        }
        return true
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x46).contains(byte) || (0x61...0x66).contains(byte)
    }

    /// Digits only, between optional blanks (`" 12 "`), and at least one.
    static func isDecimal(_ value: String) -> Bool {
        var digits = 0, trailingBlank = false
        for byte in value.utf8 {
            switch byte {
            case 0x30...0x39:
                guard !trailingBlank else { return false }
                digits += 1
            case 0x20, 0x09:
                if digits > 0 { trailingBlank = true }
            default:
                return false
            }
        }
        return digits > 0
    }
}
