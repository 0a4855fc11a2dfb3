import Foundation
@testable import HTTPServer
import PropertyBased
import Testing

/// The response head: whatever a caller puts in a header value, no CR or LF reaches the wire
/// (no response splitting), and every other byte does, in order.
@Suite struct HTTPResponseHeadTests {
    static let valueText = Gen.element(of: ["a", "Z", " ", ":", "\r", "\n", "\r\n", "\r\n\r\nHTTP/1.1 200 OK", "ä", "€", "\0", "\t", "x-injected: 1"])
        .array(of: 0...10).map { $0.compactMap { $0 }.joined() }

    @Test func headerValuesLoseTheirCRAndLFAndKeepEveryOtherByte() async {
        await propertyCheck(count: 500, input: Self.valueText, Self.valueText) { first, second in
            let head = HTTPResponseWriter.head(status: 200, headers: [("X-A", first), ("X-B", second)], keepAlive: true)
            let clean = { (value: String) in value.utf8.filter { $0 != 0x0D && $0 != 0x0A } }
            let expected = Array("HTTP/1.1 200 OK\r\n".utf8) + Self.date(in: head) + Array("X-A: ".utf8) + clean(first) + Array("\r\nX-B: ".utf8) + clean(second) + Array("\r\n".utf8)
            #expect(head == expected)
        }
    }

    @Test func aClosingResponseSaysSo() {
        let head = HTTPResponseWriter.head(status: 404, headers: [("Content-Length", "0")], keepAlive: false)
        #expect(String(decoding: head, as: UTF8.self) == "HTTP/1.1 404 Not Found\r\n" + String(decoding: Self.date(in: head), as: UTF8.self)
            + "Content-Length: 0\r\nConnection: close\r\n")
    }

    /// The head's `Date` line (the second), checked for its form.
    static func date(in head: [UInt8]) -> [UInt8] {
        let lines = String(decoding: head, as: UTF8.self).components(separatedBy: "\r\n")
        guard lines.count > 1, lines[1].hasPrefix("Date: "), lines[1].hasSuffix(" GMT"), lines[1].utf8.count == 35 else { return [] }
        return Array((lines[1] + "\r\n").utf8)
    }

    /// Every response says when (RFC 9110 §6.6.1), in IMF-fixdate, whatever the locale.
    @Test func theDateIsIMFFixdate() {
        var head: [UInt8] = []
        HTTPResponseWriter.appendDate(to: &head, now: 784_111_777)
        #expect(String(decoding: head, as: UTF8.self) == "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n")
        head = []
        HTTPResponseWriter.appendDate(to: &head, now: 1_709_251_199)
        #expect(String(decoding: head, as: UTF8.self) == "Date: Thu, 29 Feb 2024 23:59:59 GMT\r\n")
    }
}
