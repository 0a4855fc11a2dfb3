import Foundation
import HTTPServer
import PropertyBased
import Testing

/// Numbers and escapes that reach our code from the request head: whatever their text, decoding
/// never traps and always ends in a request or a typed rejection.
@Suite struct HTTPPropertyTests {
    /// Text a hostile client might put where a number goes.
    static let numberish = Gen.element(of: ["0", "1", "9", "f", "F", "-", "+", " ", ".", "e", "x", "\t", "18446744073709551615",
                                            "18446744073709551616", "99999999999999999999999", "ffffffffffffffff", "7fffffffffffffff",
                                            "00000000000000000000", ";ext", ";a=b", "\r", "\n", "\0", "%", "ä"])
        .array(of: 0...12).map { $0.compactMap { $0 }.joined() }

    /// The first request `bytes` hold (later bytes are ignored), or the rejection.
    func firstRequest(_ chunks: [[UInt8]], limits: HTTPServerLimits) -> Result<HTTPRequest?, HTTPRejection> {
        let decoder = HTTPRequestDecoder(limits: limits)
        var pending: [UInt8] = []
        for chunk in chunks {
            pending += chunk
            while true {
                do {
                    let (consumed, event) = try decoder.decode(pending)
                    pending.removeFirst(consumed)
                    if case .request(let request) = event { return .success(request) }
                    if case .none = event { break }
                } catch {
                    return .failure(error)
                }
            }
        }
        return .success(nil)
    }

    /// Found by the property below: a bare CR or a CRLF before a folded value is read as a
    /// space (RFC 9112 §2.2, §5.2), so the length is the digits after it, never a guess.
    @Test(arguments: [("\r  00000000000000000000", 0), ("\r\n 5", 5), ("\n\t7", 7)])
    func foldedContentLengthsReadAsTheirDigits(length: String, expected: Int) {
        var limits = HTTPServerLimits()
        limits.maxBodyBytes = 64
        let request = Array("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \(length)\r\n\r\n".utf8) + Array(repeating: UInt8(ascii: "a"), count: 70)
        switch firstRequest([request], limits: limits) {
        case .success(let request?): #expect(request.body.count == expected)
        case .success(nil): Issue.record("incomplete")
        case .failure(let rejection): #expect([400, 413].contains(rejection.status), "or refused outright")
        }
    }


    /// Any token as a method, in a well-formed request line: a request when http_parser knows
    /// the method, else a 501 naming it, however the head after the line is split; any other
    /// byte in the method makes the line malformed (400).
    @Test func anyMethodIsARequestANotImplementedOrMalformed() async {
        let tokenBytes = Array("!#$%&'*+-.^_`|~09AZaz".utf8)
        // No CR or LF: empty lines before a request line are skipped (a test of their own).
        let byte = Gen.element(of: tokenBytes + Array(" \t\0(),/:;<=>?@[]{}\"\u{7f}".utf8) + [0xC3, 0xFF])
        let known = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT"]
        let method = Gen.oneOf(byte.array(of: 1...12).map { $0.compactMap { $0 } }, Gen.element(of: known).map { Array(($0 ?? "GET").utf8) })
        await propertyCheck(count: 500, input: method, Gen.int(in: 1...40)) { method, piece in
            let line = method + Array(" /v1/models HTTP/1.1\r\n".utf8)
            let head = Array("Host: h\r\n\r\n".utf8)
            let text = String(decoding: line + head, as: UTF8.self).debugDescription
            let result = firstRequest([line] + stride(from: 0, to: head.count, by: piece).map { Array(head[$0..<min($0 + piece, head.count)]) },
                                      limits: HTTPServerLimits())
            let isToken = { (byte: UInt8) in tokenBytes.contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) }
            if !method.allSatisfy(isToken) {
                if case .failure(let rejection) = result { #expect(rejection.status == 400, "\(text)") } else { Issue.record("read \(text)") }
            } else if case .failure(let rejection) = result {
                #expect(method.count <= 32 && rejection == .methodNotImplemented(String(decoding: method, as: UTF8.self)) || method.count > 32 && rejection.status == 400,
                        "\(text): \(rejection)")
            } else if case .success(let request) = result {
                #expect(request?.method == String(decoding: method, as: UTF8.self), "\(text)")
            }
        }
    }

    /// A CR not followed by LF anywhere in a head (request line, names, values, the blank line)
    /// or a trailer section is refused, however the bytes are split: never read with a byte
    /// swallowed (lenient http_parser takes any byte after a CR as its LF).
    @Test func aBareCRInAHeadIsRefusedWherever() async {
        let heads = ["GET /a HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n",
                     "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n",
                     "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: t\r\n\r\n"]
        let byte = Gen.element(of: Array("aZ0 \t:;\r\u{0}\u{7f}".utf8) + [0xC3, 0xFF])
        await propertyCheck(count: 500, input: Gen.int(in: 0...2), Gen.int(in: 0...200), byte, Gen.int(in: 1...40)) { which, at, after, piece in
            var bytes = Array(heads[which].utf8)
            // Inside the head or the trailers, never in a body's data.
            let bodyStart = bytes.firstRange(of: Array("\r\n\r\n".utf8))!.upperBound
            let positions = which == 2 ? Array(0..<bodyStart) + Array((bodyStart + 3)..<bytes.count) : Array(0..<bodyStart)
            bytes.insert(contentsOf: [0x0D, after!], at: positions[at % positions.count])
            if which == 1 { bytes += Array("ok".utf8) }
            let chunks = stride(from: 0, to: bytes.count, by: piece).map { Array(bytes[$0..<min($0 + piece, bytes.count)]) }
            switch firstRequest(chunks, limits: HTTPServerLimits()) {
            case .failure(let rejection): #expect(rejection.status == 400)
            case .success(let request): Issue.record("read as \(String(describing: request)) from \(String(decoding: bytes, as: UTF8.self).debugDescription)")
            }
        }
    }

    @Test func contentLengthsNeverTrap() async {
        var limits = HTTPServerLimits()
        limits.maxBodyBytes = 64
        await propertyCheck(count: 500, input: Self.numberish) { length in
            let request = Array("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \(length)\r\n\r\n".utf8) + Array(repeating: UInt8(ascii: "a"), count: 70)
            switch firstRequest([request], limits: limits) {
            case .success(let request?):
                // Accepted: the length was plain decimal digits within the limit, and the body is
                // that long. The value ends at a CR or a bare LF (which ends a header line), except
                // that an LF followed by a space or tab folds the line: RFC 9112 §5.2 lets a server
                // read that fold as a space, which is what http_parser does after an empty value,
                // with a bare LF or a CRLF before the space.
                // A bare CR (not before an LF) reads as a space, as RFC 9112 §2.2 allows.
                var scalars = Array(length.unicodeScalars)
                for i in scalars.indices where scalars[i] == "\r" && (i + 1 == scalars.count || scalars[i + 1] != "\n") {
                    scalars[i] = " "
                }
                func isFold(_ at: Int) -> Int? {
                    var end = at
                    if scalars[end] == "\r", end + 1 < scalars.count { end += 1 }
                    guard scalars[end] == "\n", end + 1 < scalars.count, scalars[end + 1] == " " || scalars[end + 1] == "\t" else { return nil }
                    return end + 1 - at
                }
                while let fold = scalars.indices.first(where: { isFold($0) != nil }), let width = isFold(fold),
                      !scalars[..<fold].contains(where: { $0 != " " && $0 != "\t" }) {
                    scalars.removeSubrange(fold..<(fold + width))
                }
                let line = String(String.UnicodeScalarView(scalars.prefix { $0 != "\n" && $0 != "\r" }))
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                #expect(trimmed.allSatisfy(\.isASCIIDigit) && Int(trimmed) == request.body.count, "\(length.debugDescription) \(length.unicodeScalars.map(\.value)) body \(request.body.count)")
            case .success(nil):
                Issue.record("70 body bytes complete any acceptable request: \(length.debugDescription)")
            case .failure(let rejection):
                #expect([400, 413].contains(rejection.status))
            }
        }
    }

    @Test func chunkSizesNeverTrap() async {
        var limits = HTTPServerLimits()
        limits.maxBodyBytes = 64
        await propertyCheck(count: 500, input: Self.numberish, Gen.int(in: 0...40)) { size, payload in
            let request = Array("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\(size)\r\n".utf8)
                + Array(repeating: UInt8(ascii: "a"), count: payload) + Array("\r\n0\r\n\r\n".utf8)
            for chunks in [[request], [Array(request.prefix(request.count / 2)), Array(request.dropFirst(request.count / 2))]] {
                switch firstRequest(chunks, limits: limits) {
                case .success(let decoded?):
                    // Accepted only when the chunk held the bytes its size (hex, before any extension) says.
                    let digits = size.prefix { $0.isHexDigit }
                    #expect(Int(digits, radix: 16) == decoded.body.count, "\(size.debugDescription) for \(payload)")
                    // Those bytes, from just after the size line's CRLF: a size text that holds a
                    // CRLF itself (`e\r\n`) makes the test's own CRLF part of the chunk's data.
                    let head = Array("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".utf8).count
                    let lineEnd = request[head...].firstRange(of: Array("\r\n".utf8))!.upperBound
                    #expect(decoded.body[...] == request[lineEnd..<min(lineEnd + decoded.body.count, request.count)],
                            "\(size.debugDescription) for \(payload)")
                case .success(nil):
                    break  // a zero size ends the body early: the rest waits for more bytes
                case .failure(let rejection):
                    #expect([400, 413].contains(rejection.status))
                }
            }
        }
    }

    /// Strings mixing what percent-decoding must get right: escapes, '+', multi-byte UTF-8.
    static let formText = Gen.element(of: ["a", "Z", "0", " ", "+", "%", "&", "=", "?", "/", "é", "日", "🙂", "\u{0}", "\n", "%2B", "%zz", "%4", "%+f", "%ff"])
        .array(of: 0...10).map { $0.compactMap { $0 }.joined() }

    @Test func queryValuesRoundTripOrAreRejectedWhole() async {
        await propertyCheck(count: 500, input: Self.formText) { text in
            // Encoded by a well-behaved client: decodes back to exactly the same text.
            let encoded = text.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            let request = HTTPRequest(method: "GET", target: "/p?x=1&v=\(encoded)&v=second")
            #expect(request.queryItem("v") == text)
            #expect(request.queryItem("x") == "1")
            // Sent raw: either the form decoding of every byte, or nil when an escape is broken;
            // never a value with bytes dropped or made up.
            let raw = HTTPRequest(method: "GET", target: "/p?v=\(text.replacingOccurrences(of: "&", with: "").replacingOccurrences(of: "=", with: ""))")
            let decoded = raw.queryItem("v")
            let expected = text.replacingOccurrences(of: "&", with: "").replacingOccurrences(of: "=", with: "")
                .replacingOccurrences(of: "+", with: " ").removingPercentEncoding
            #expect(decoded == expected)
        }
    }

    @Test func brokenEscapesMakeTheValueUnusable() {
        for target in ["/p?v=%zz", "/p?v=%4", "/p?v=a%+f", "/p?v=%ff", "/p?v=%", "/p?v=ok%2"] {
            #expect(HTTPRequest(method: "GET", target: target).queryItem("v") == nil, "\(target)")
        }
        let request = HTTPRequest(method: "GET", target: "/p?a=x+y&b=%2B&c=caf%C3%A9&d&e=")
        #expect(request.queryItem("a") == "x y")
        #expect(request.queryItem("b") == "+")
        #expect(request.queryItem("c") == "café")
        #expect(request.queryItem("d") == "")
        #expect(request.queryItem("e") == "")
        #expect(request.queryItem("f") == nil)
    }

    /// A target's delimiters are bytes: a `?`, `&`, `=` or `/` with a combining mark after it
    /// still splits where it stands, in the path, the query and an absolute-form target alike
    /// (review 88 F1: `?` was found by bytes and `&` by Characters, so `id=…&\u{301}x=1` read as
    /// one value of `id`).
    @Test func aTargetsDelimitersSplitWhateverFollowsThem() {
        let request = HTTPRequest(method: "GET", target: "/p?\u{301}=0&id=gen-1&\u{301}x=1&y=\u{301}")
        #expect(request.path == "/p")
        #expect(request.queryItem("id") == "gen-1")
        #expect(request.queryItem("\u{301}x") == "1")
        #expect(request.queryItem("y") == "\u{301}")
        let absolute = HTTPRequest.originForm(of: "http://127.0.0.1?\u{301}")
        #expect(absolute?.authority == "127.0.0.1" && absolute?.target == "/?\u{301}")
        #expect(HTTPRequest.originForm(of: "http://h/\u{301}a?b")?.target == "/\u{301}a?b")
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
