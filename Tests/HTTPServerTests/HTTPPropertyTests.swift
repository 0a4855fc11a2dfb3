import Foundation
import HTTPServer
import PropertyBased
import Testing

/// Numbers that reach our code from the request head: whatever their text, decoding
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

    @Test func contentLengthsNeverTrap() async {
        var limits = HTTPServerLimits()
        limits.maxBodyBytes = 64
        await propertyCheck(count: 500, input: Self.numberish) { length in
            let request = Array("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \(length)\r\n\r\n".utf8) + Array(repeating: UInt8(ascii: "a"), count: 70)
            switch firstRequest([request], limits: limits) {
            case .success(let request?):
                // Accepted: the length was plain decimal digits within the limit (up to a bare LF,
                // which may end a header line), and the body is that long.
                let trimmed = String(length.prefix { $0 != "\n" }).trimmingCharacters(in: .whitespaces)
                #expect(trimmed.allSatisfy(\.isASCIIDigit) && Int(trimmed) == request.body.count, "\(length.debugDescription)")
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
                case .success(let request?):
                    // Accepted only when the chunk held the bytes its size (hex, before any extension) says.
                    let digits = size.prefix { $0.isHexDigit }
                    #expect(Int(digits, radix: 16) == request.body.count, "\(size.debugDescription) for \(payload)")
                    #expect(request.body.count == payload || request.body.isEmpty, "\(size.debugDescription) for \(payload)")
                case .success(nil):
                    break  // a zero size ends the body early: the rest waits for more bytes
                case .failure(let rejection):
                    #expect([400, 413].contains(rejection.status))
                }
            }
        }
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
