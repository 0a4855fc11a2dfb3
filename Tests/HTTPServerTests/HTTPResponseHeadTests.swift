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
            let expected = Array("HTTP/1.1 200 OK\r\nX-A: ".utf8) + clean(first) + Array("\r\nX-B: ".utf8) + clean(second) + Array("\r\n".utf8)
            #expect(head == expected)
        }
    }

    @Test func aClosingResponseSaysSo() {
        let head = HTTPResponseWriter.head(status: 404, headers: [("Content-Length", "0")], keepAlive: false)
        #expect(String(decoding: head, as: UTF8.self) == "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n")
    }
}
