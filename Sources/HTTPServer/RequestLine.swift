/// Reads a request line http_parser refused for its method (it knows a fixed list, and reports an
/// unknown method and garbage alike), to tell the two apart: a well-formed line with a method the
/// server does not know is RFC 9110 §9.1's 501, anything else a 400.
enum RequestLine {
    /// The longest method named back to the client.
    static let maxMethodBytes = 32

    enum Verdict: Equatable {
        /// `method SP target SP HTTP/d.d CRLF` (RFC 9112 §3), the method a token.
        case unknownMethod(String)
        /// Not such a line, whatever follows.
        case malformed
        /// Such a line so far; the rest has not arrived.
        case incomplete
    }

    /// The verdict on `bytes`, the start of a message. Empty lines (CRLF or LF) before the line
    /// are skipped, as http_parser does (RFC 9112 §2.2); a bare CR is not an empty line. Decided as
    /// soon as a byte rules the line out (a first byte that is no token's, a method past
    /// `maxMethodBytes`), so garbage is refused at once.
    static func verdict(_ bytes: UnsafeRawBufferPointer) -> Verdict {
        var index = 0
        while index < bytes.count {
            if bytes[index] == 0x0A {
                index += 1
            } else if bytes[index] == 0x0D {
                guard index + 1 < bytes.count else { return .incomplete }
                guard bytes[index + 1] == 0x0A else { return .malformed }
                index += 2
            } else {
                break
            }
        }
        let methodStart = index
        while index < bytes.count, HTTPToken.isTokenByte(bytes[index]) {
            index += 1
            if index - methodStart > maxMethodBytes { return .malformed }
        }
        let methodEnd = index
        guard index < bytes.count else { return .incomplete }
        guard methodEnd > methodStart, bytes[index] == 0x20 else { return .malformed }
        index += 1
        let targetStart = index
        while index < bytes.count, bytes[index] > 0x20, bytes[index] < 0x7F { index += 1 }
        guard index < bytes.count else { return .incomplete }
        guard index > targetStart, bytes[index] == 0x20 else { return .malformed }
        index += 1
        // `HTTP/d.d` then CRLF: each byte checked as far as it has arrived.
        let version = Array("HTTP/".utf8)
        for offset in 0..<(version.count + 5) {
            guard index + offset < bytes.count else { return .incomplete }
            let byte = bytes[index + offset]
            let fits = switch offset {
            case 0..<version.count: byte == version[offset]
            case version.count, version.count + 2: isDigit(byte)
            case version.count + 1: byte == 0x2E
            case version.count + 3: byte == 0x0D
            default: byte == 0x0A
            }
            guard fits else { return .malformed }
        }
        return .unknownMethod(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[methodStart..<methodEnd]), as: UTF8.self))
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }
}
