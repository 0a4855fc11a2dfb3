import FixtureFiles
import Foundation
import GatewayCore
import PropertyBased
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

    /// Lines of a hostile stream: one- and multi-line events, names, comments, blank lines, every
    /// line ending, long lines, a lone CR at a chunk's end.
    static let streamPieces = Gen.element(of: [
        "data: {\"a\":1}\n\n", "data: x\r\n\r\n", "data: y\r\r", "data:\n\n", "data: one\ndata: two\n\n", "event: e\n",
        ": comment\n", "\n", "\r\n", "\r", "data: " + String(repeating: "z", count: 300) + "\n\n", "data: é🙂\u{2028}\n\n",
        "id: 1\n", "data", "data: partial", "retry: 5\n", "data:  lead\n\n",
    ]).map { $0 ?? "" }.array(of: 0...20).map { Array($0.joined().utf8) }

    /// A one-line event is dispatched straight from the caller's buffer, copied only when it spans
    /// reads: wherever the reads split the stream, the events are the same as fed whole.
    @Test func eventsAreTheSameWhereverReadsSplit() async {
        await propertyCheck(count: 400, input: Self.streamPieces, Gen.int(in: 1...40).array(of: 0...8)) { bytes, cuts in
            let whole = try? decodeAll([bytes])
            var chunks: [[UInt8]] = []
            var start = 0
            for cut in cuts where start < bytes.count {
                let end = min(bytes.count, start + cut)
                chunks.append(Array(bytes[start..<end]))
                start = end
            }
            if start < bytes.count { chunks.append(Array(bytes[start...])) }
            #expect(whole != nil)
            let split = try? Self.decodeReusingOneBuffer(chunks)
            let byByte = try? Self.decodeReusingOneBuffer(bytes.map { [$0] })
            #expect(split == whole, "split into \(chunks.map(\.count))")
            #expect(byByte == whole, "byte by byte")
        }
    }

    /// As a socket's reads arrive: every chunk in the same buffer, scribbled over after each feed,
    /// so an event that kept pointing into an earlier read would decode garbage.
    static func decodeReusingOneBuffer(_ chunks: [[UInt8]]) throws -> [DecodedEvent] {
        var decoder = SSEDecoder()
        var events: [DecodedEvent] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(chunks.map(\.count).max() ?? 0, 1), alignment: 1)
        defer { buffer.deallocate() }
        for chunk in chunks {
            buffer.copyBytes(from: chunk)
            try decoder.feed(UnsafeRawBufferPointer(rebasing: buffer[..<chunk.count])) {
                events.append(DecodedEvent(event: $0.nameString, data: $0.dataString))
            }
            for index in buffer.indices { buffer[index] = 0x3F }
        }
        return events
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

    /// One byte order mark at the stream's start is ignored (WHATWG), however the reads split
    /// it; a second one, or one later, or the mark's first bytes alone, are data.
    @Test func aLeadingByteOrderMarkIsIgnored() throws {
        let mark: [UInt8] = [0xEF, 0xBB, 0xBF]
        let stream = mark + Array("data: a\n\n".utf8)
        for split in 0...stream.count {
            let events = try decodeAll([Array(stream[..<split]), Array(stream[split...])])
            #expect(events == [DecodedEvent(event: "", data: "a")], "split at \(split)")
        }
        #expect(try decodeAll([mark + mark + Array("\ndata: b\n\n".utf8)]) == [DecodedEvent(event: "", data: "b")],
                "a second mark is a line that is no field")
        #expect(try decodeAll([Array("data: c\n\n".utf8) + mark + Array("data: d\n\n".utf8)]).map(\.data) == ["c"],
                "a mark later starts a line that is no field")
        var lines: [[UInt8]] = []
        var decoder = SSEDecoder()
        try (Array(mark[..<2]) + Array("x\n".utf8)).withUnsafeBytes { bytes in
            try decoder.feed(bytes, onEvent: { _ in }, onOtherLine: { lines.append(Array($0)) })
        }
        #expect(lines == [Array(mark[..<2]) + Array("x".utf8)], "a mark's first bytes alone are kept")
    }

    @Test func oversizedEventIsRejectedWhetherOrNotItsLineEnded() {
        let big = Array(("data: " + String(repeating: "x", count: 300) + "\n\n").utf8)
        #expect(throws: SSEDecoder.EventTooLarge(limit: 256)) { try decodeAll([big], maxEventBytes: 256) }
        #expect(throws: SSEDecoder.EventTooLarge(limit: 256)) { try decodeAll(big.map { [$0] }, maxEventBytes: 256) }
        // Many small data lines adding up count too.
        let many = Array(String(repeating: "data: 0123456789\n", count: 40).utf8)
        #expect(throws: SSEDecoder.EventTooLarge(limit: 256)) { try decodeAll([many], maxEventBytes: 256) }
    }

    @Test func linesThatAreNoFieldReachOnlyACallerThatAsks() throws {
        // Gemini's mid-stream errors: raw JSON lines without `data:`.
        let bytes = Array("data: a\r\n\r\n{\r\n  \"error\": {\"code\": 503}\r\n}\r\nid: 7\nretry: 1\n: comment\nevent: e\ndata: b\n\n".utf8)
        for chunks in [[bytes], bytes.map { [$0] }] {
            var events: [DecodedEvent] = []
            var lines: [String] = []
            var counting = SSEDecoder()
            for chunk in chunks {
                try chunk.withUnsafeBytes { buffer in
                    try counting.feed(buffer, onEvent: { events.append(DecodedEvent(event: $0.nameString, data: $0.dataString)) },
                                      onOtherLine: { lines.append(String(decoding: $0, as: UTF8.self)) })
                }
            }
            #expect(events == [DecodedEvent(event: "", data: "a"), DecodedEvent(event: "e", data: "b")])
            #expect(lines == ["{", "  \"error\": {\"code\": 503}", "}"])
        }
        #expect(try decodeAll([bytes]).count == 2, "ignored by default, as WHATWG says")
    }

    /// At the body's end a last line without its line end is read: one that is no field reaches
    /// `onOtherLine` (Gemini's raw JSON error ending at its brace: review 52A #5); an event
    /// whose blank line never came is dropped, as WHATWG says; nothing is left for later.
    @Test func theBodysEndReadsALastLineWithoutItsLineEnd() throws {
        for (body, expected) in [("data: a\n\n}", ["}"]), ("data: a\n\ndata: b", []), ("data: a\n\n", []), ("data: a\n\n: comment", [])] {
            var decoder = SSEDecoder()
            var events: [String] = []
            var lines: [String] = []
            try decoder.feed(Array(body.utf8)) { events.append($0.dataString) }
            try decoder.finish { lines.append(String(decoding: $0, as: UTF8.self)) }
            try decoder.finish { lines.append(String(decoding: $0, as: UTF8.self)) }
            #expect(events == ["a"] && lines == expected, "\(body): \(events) \(lines)")
        }
    }

    @Test func doneSentinel() throws {
        var decoder = SSEDecoder()
        var done: [Bool] = []
        try decoder.feed(Array("data: [DONE]\n\ndata: [DONE] \t\n\ndata: [DONE]x\n\ndata: [DONE\n\n".utf8)) { done.append($0.isDone) }
        #expect(done == [true, true, false, false])
    }
}

@Suite struct SSEEncoderTests {
    @Test func dataIsFramedOnOneLine() {
        var out: [UInt8] = []
        SSEEncoder.appendData(Array("{\"a\":1}".utf8), to: &out)
        // JSON whitespace CR/LF becomes a space; line separators inside strings become escapes.
        SSEEncoder.appendData(Array("{\"a\":\r\n[1,\n2],\"b\"\t:\"x\u{2028}y\u{85}\"}".utf8), to: &out)
        #expect(String(decoding: out, as: UTF8.self) == "data: {\"a\":1}\n\ndata: {\"a\":  [1, 2],\"b\"\t:\"x\\u2028y\\u0085\"}\n\n")
        let events = try? decodeAll([out])
        #expect(events?.count == 2)
        let second = try? JSONSerialization.jsonObject(with: Data(events?.last?.data.utf8 ?? "".utf8)) as? [String: Any]
        #expect(second?["b"] as? String == "x\u{2028}y\u{85}")
    }

    @Test func commentsAndNamedEventsRoundTrip() throws {
        var out: [UInt8] = []
        SSEEncoder.appendComment("fusion: panel started\nsecond line\r\nthird\u{2028}", to: &out)
        SSEEncoder.appendEvent(name: "member.delta", data: Array("{\"i\":1}".utf8), to: &out)
        #expect(String(decoding: out, as: UTF8.self).hasPrefix(": fusion: panel started\\nsecond line\\r\\nthird\\u2028\n\n"))
        let events = try decodeAll([out])
        #expect(events == [DecodedEvent(event: "member.delta", data: "{\"i\":1}")])
    }

    @Test func jsonStringsEscapeEveryLineBreak() throws {
        let text = "a\"b\\c\nd\re\tf\u{0}g\u{1F}h\u{85}i\u{2028}j\u{2029}k\u{7F}é🙂"
        let quoted = JSONWriting.quoted(text)
        #expect(quoted == #""a\"b\\c\nd\re\tf\u0000g\u001fh\u0085i\u2028j\u2029k\#u{7F}é🙂""#)
        let decoded = try JSONSerialization.jsonObject(with: Data(quoted.utf8), options: .fragmentsAllowed) as? String
        #expect(decoded == text)
    }
}
