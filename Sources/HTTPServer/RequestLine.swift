/// Reads a request line http_parser refused for its method (it knows a fixed list, and reports an
/// unknown method and garbage alike), to tell the two apart: a well-formed line with a method the
/// server does not know is RFC 9110 §9.1's 501, anything else a 400.
enum RequestLine {
    /// The longest method named back to the client.
    static let maxMethodBytes = 32

    /// The method of `bytes`' first line when that line is `method SP target SP HTTP/d.d CRLF`
    /// (RFC 9112 §3), the method a token; nil otherwise, or when the line has not all arrived.
    /// Empty lines (CRLF or LF) before it are skipped, as http_parser does (RFC 9112 §2.2); a bare
    /// CR is not an empty line.
    static func unknownMethod(_ bytes: UnsafeRawBufferPointer) -> String? {
        var index = 0
        while index < bytes.count {
            if bytes[index] == 0x0A {
                index += 1
            } else if bytes[index] == 0x0D, index + 1 < bytes.count, bytes[index + 1] == 0x0A {
                index += 2
            } else {
                break
            }
        }
        let methodStart = index
        while index < bytes.count, isTokenByte(bytes[index]) { index += 1 }
        let methodEnd = index
        guard methodEnd > methodStart, methodEnd - methodStart <= maxMethodBytes, index < bytes.count, bytes[index] == 0x20 else { return nil }
        index += 1
        let targetStart = index
        while index < bytes.count, bytes[index] > 0x20, bytes[index] < 0x7F { index += 1 }
        guard index > targetStart, index < bytes.count, bytes[index] == 0x20 else { return nil }
        index += 1
        let version = Array("HTTP/".utf8)
        guard bytes.count - index >= version.count + 5, bytes[index..<(index + version.count)].elementsEqual(version) else { return nil }
        index += version.count
        guard isDigit(bytes[index]), bytes[index + 1] == 0x2E, isDigit(bytes[index + 2]),
              bytes[index + 3] == 0x0D, bytes[index + 4] == 0x0A else { return nil }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[methodStart..<methodEnd]), as: UTF8.self)
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    /// RFC 9110 §5.6.2's tchar.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "*"),
             UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"),
             UInt8(ascii: "~"): true
        default: false
        }
    }
}
