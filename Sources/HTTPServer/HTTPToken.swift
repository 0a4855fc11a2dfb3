/// RFC 9110's tokens, as the request decoder and `RequestLine` read them.
enum HTTPToken {
    /// RFC 9110 §5.6.2 `tchar`.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// A `close` option in `Connection` wins whatever else it lists (RFC 9112 §9.6): http_parser
    /// keeps an HTTP/1.0 connection alive on `keep-alive, close` (review 61 #4).
    /// Per request, so without allocating: names and tokens compared byte by byte, ignoring case.
    static func asksToClose(_ headers: [(name: String, value: String)]) -> Bool {
        headers.contains { header in
            header.name.utf8.elementsEqual("connection".utf8) { $0 | 0x20 == $1 }
                && header.value.utf8.split(separator: UInt8(ascii: ",")).contains { token in
                    token.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed()
                        .elementsEqual("close".utf8) { $0 | 0x20 == $1 }
                }
        }
    }
}
