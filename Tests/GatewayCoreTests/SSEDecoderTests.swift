import Foundation
import GatewayCore
import Testing

@Suite struct SSEDecoderTests {
    static let fixtureNames = (try? Fixtures.names(in: "sse", withExtension: "sse")) ?? []

    @Test func fixturesAreFound() {
        #expect(Self.fixtureNames.count >= 5)
    }

    @Test(arguments: fixtureNames)
    func fixtureDecodesIdenticallyHoweverSplit(name: String) throws {
        let input = try Fixtures.bytes("sse/\(name).sse")
        let expected = try JSONSerialization.jsonObject(with: Data(try Fixtures.bytes("sse/\(name).expected.json"))) as! [String: Any]
        let expectedEvents = (expected["events"] as! [[String: String]]).map { DecodedEvent(event: $0["event"]!, data: $0["data"]!) }
        for chunks in splits(input) {
            let events = try decodeAll(chunks)
            #expect(events == expectedEvents, "split into \(chunks.map(\.count))")
            if events != expectedEvents { return }
        }
    }

    @Test func commentsIdsAndRetryAreNotEvents() throws {
        let events = try decodeAll([Array(": keep-alive\n\nid: 42\nretry: 10\n\n: x\ndata: a\n\n".utf8)])
        #expect(events == [DecodedEvent(event: "", data: "a")])
    }

    @Test func multipleDataLinesJoinWithNewline() throws {
        let events = try decodeAll([Array("data: one\ndata:two\ndata:  three\n\n".utf8)])
        #expect(events == [DecodedEvent(event: "", data: "one\ntwo\n three")])
    }

    @Test func eventWithoutTrailingBlankLineIsNotDispatched() throws {
        let events = try decodeAll([Array("data: complete\n\ndata: incomplete\n".utf8)])
        #expect(events == [DecodedEvent(event: "", data: "complete")])
    }

    @Test func loneCRAndCRLFSplitAcrossChunks() throws {
        // A CR at the end of one chunk and LF at the start of the next is one line ending.
        let events = try decodeAll([Array("data: a\r".utf8), Array("\n\r".utf8), Array("\ndata: b\r\r".utf8)])
        #expect(events == [DecodedEvent(event: "", data: "a"), DecodedEvent(event: "", data: "b")])
    }

    @Test func oversizedEventIsRejectedWhetherOrNotItsLineEnded() {
        let big = Array(("data: " + String(repeating: "x", count: 300) + "\n\n").utf8)
        #expect(throws: SSEDecoder.EventTooLarge(limit: 256)) { try decodeAll([big], maxEventBytes: 256) }
        #expect(throws: SSEDecoder.EventTooLarge(limit: 256)) { try decodeAll(big.map { [$0] }, maxEventBytes: 256) }
        // Many small data lines adding up count too.
        let many = Array(String(repeating: "data: 0123456789\n", count: 40).utf8)
        #expect(throws: SSEDecoder.EventTooLarge(limit: 256)) { try decodeAll([many], maxEventBytes: 256) }
    }

    @Test func doneSentinel() throws {
        var decoder = SSEDecoder()
        var done: [Bool] = []
        try decoder.feed(Array("data: [DONE]\n\ndata: [DONE] \n\n".utf8)) { done.append($0.isDone) }
        #expect(done == [true, false])
    }
}

@Suite struct SSEEncoderTests {
    @Test func dataIsFramedAndMultilinePayloadsSplit() {
        var out: [UInt8] = []
        SSEEncoder.appendData(Array("{\"a\":1}".utf8), to: &out)
        SSEEncoder.appendData(Array("x\ny".utf8), to: &out)
        #expect(String(decoding: out, as: UTF8.self) == "data: {\"a\":1}\n\ndata: x\ndata: y\n\n")
    }

    @Test func commentsAndNamedEventsRoundTrip() throws {
        var out: [UInt8] = []
        SSEEncoder.appendComment("fusion: panel started\nsecond line", to: &out)
        SSEEncoder.appendEvent(name: "member.delta", data: Array("{\"i\":1}".utf8), to: &out)
        #expect(String(decoding: out, as: UTF8.self).hasPrefix(": fusion: panel started\n: second line\n\n"))
        let events = try decodeAll([out])
        #expect(events == [DecodedEvent(event: "member.delta", data: "{\"i\":1}")])
    }
}
