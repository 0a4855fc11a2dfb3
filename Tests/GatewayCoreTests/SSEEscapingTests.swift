import Foundation
import GatewayCore
import PropertyBased
import SSEReference
import Testing

/// Text from outside (a model's output, a URL, an error message) written into an SSE stream must
/// not be able to end a line for any reader: checked against a reference SSE parser written from
/// the WHATWG rules (independent of `SSEDecoder`) and against a splitter that ends lines where
/// Python's `str.splitlines` does.
@Suite struct SSEEscapingTests {
    /// Pieces that have broken line-based parsers, mixed with random scalars.
    static let adversarial = zip(
        Gen.int(in: 0...3),
        Gen.element(of: ["\r\n", "\r", "\n", "\n\n", "\r\r", "\0", "\u{0B}", "\u{0C}", "\u{1C}", "\u{1D}", "\u{1E}", "\u{85}",
                         "\u{2028}", "\u{2029}", "\u{202E}", "\u{2067}", "\u{7F}", "\u{9B}", "\u{1B}[31m", "\u{FEFF}", "data: [DONE]", "event: x",
                         "id: 1", ":", " ", "\t", "\\", "\\n", "\"", "e\u{301}", "é", "🙂", "a", "fusion.final"]),
        Gen.unicodeScalar(in: "\u{0}"..."\u{2FF}"),
        Gen.unicodeScalar(in: "\u{E000}"..."\u{10FFFF}")
    ).map { choice, piece, low, high -> String in
        switch choice {
        case 0, 1: piece ?? ""
        case 2: String(Character(low))
        default: String(Character(high))
        }
    }.array(of: 0...24).map { $0.joined() }

    @Test func aCommentIsOneCommentAndOneLineWhateverItCarries() async {
        await propertyCheck(count: 400, input: Self.adversarial) { text in
            var out: [UInt8] = []
            SSEEncoder.appendComment(text, to: &out)
            let items = WHATWGEventStream.parse(out)
            #expect(items.count == 1, "\(text.debugDescription) → \(items)")
            guard case .comment(let comment)? = items.first else {
                Issue.record("not a comment: \(items)")
                return
            }
            #expect(comment == " " + SSEEncoder.lineSafe(text))
            #expect(PythonLines.split(out) == [": " + SSEEncoder.lineSafe(text), ""], "\(text.debugDescription)")
            #expect(!out.contains(0), "no NUL for C-string readers")
            // No bidi control reaches a watcher's terminal to reorder the line (review 62C #9).
            let bidi: Set<Unicode.Scalar> = ["\u{202A}", "\u{202B}", "\u{202C}", "\u{202D}", "\u{202E}", "\u{2066}", "\u{2067}", "\u{2068}", "\u{2069}"]
            #expect(!String(decoding: out, as: UTF8.self).unicodeScalars.contains { bidi.contains($0) }, "\(text.debugDescription)")
        }
    }

    @Test func bidiControlsAreEscapedInComments() {
        #expect(SSEEncoder.lineSafe("a\u{202E}b\u{2066}c\u{2069}\u{202A}") == "a\\u202eb\\u2066c\\u2069\\u202a")
    }

    @Test func aNamedEventCarriesAnyStringIntactInItsData() async {
        await propertyCheck(count: 400, input: Self.adversarial, Gen.element(of: ["fusion.member.delta", "fusion.final", "x"])) { text, name in
            let name = name ?? "x"
            var data = Array(#"{"delta":"#.utf8)
            JSONWriting.appendString(text, to: &data)
            data.append(UInt8(ascii: "}"))
            var out: [UInt8] = []
            SSEEncoder.appendEvent(name: name, data: data, to: &out)
            let items = WHATWGEventStream.parse(out)
            guard items.count == 1, case .event(let type, let payload) = items[0] else {
                Issue.record("\(text.debugDescription) → \(items)")
                return
            }
            #expect(type == name)
            // Foundation's JSONDecoder as the independent reader (JSONSerialization on Linux drops
            // a U+FEFF that starts a string).
            let decoded = try? JSONDecoder().decode([String: String].self, from: Data(payload.utf8))
            #expect(decoded?["delta"] == text, "\(text.debugDescription)")
            #expect((try? JSONValue.parse(Array(payload.utf8)))?["delta"]?.stringValue == text)
            #expect(PythonLines.split(out).count == 3, "event, data and the blank line: \(text.debugDescription)")
        }
    }

    @Test func eventNamesFromOutsideStayOneLine() async {
        await propertyCheck(count: 300, input: Self.adversarial) { name in
            var out: [UInt8] = []
            SSEEncoder.appendEvent(name: name, data: Array("{}".utf8), to: &out)
            let items = WHATWGEventStream.parse(out)
            guard items.count == 1, case .event(let type, let payload) = items[0] else {
                Issue.record("\(name.debugDescription) → \(items)")
                return
            }
            let expected = SSEEncoder.lineSafe(name)
            #expect(type == (expected.isEmpty ? "message" : expected) && payload == "{}")
            #expect(PythonLines.split(out).count == 3)
        }
    }

    @Test func dataFromAnyJSONValueStaysOneLineAndDecodesBack() async {
        await propertyCheck(count: 300, input: Self.adversarial, Self.adversarial) { key, value in
            // Not a literal: a generated key may be "n" (a literal with a duplicate key traps).
            var members: [String: JSONValue] = ["n": .array([.string(key), .int(1)])]
            members[key] = .string(value)
            let json = JSONValue.object(members)
            var out: [UInt8] = []
            SSEEncoder.appendData(json.serialized(), to: &out)
            let items = WHATWGEventStream.parse(out)
            guard items.count == 1, case .event("message", let payload) = items[0] else {
                Issue.record("\(items)")
                return
            }
            #expect((try? JSONValue.parse(Array(payload.utf8))) == json)
            #expect(PythonLines.split(out).count == 2)
        }
    }

    /// The relay writes an event's JSON in place after `data: ` and then makes the line safe:
    /// byte for byte what `appendData` writes, for any bytes (valid JSON or not, raw line breaks,
    /// control bytes, separators), after any prefix already in the buffer.
    @Test func makingALineSafeInPlaceWritesWhatAppendDataWrites() async {
        // Mostly plain ASCII, long enough to be read eight bytes at a time, with the odd pieces
        // falling anywhere in a word.
        let piece = zip(Gen.int(in: 0...3), Self.adversarial, Gen.element(of: ["abcdefgh", #"{"id":"#, "0123", "xyz", "~"]))
            .map { choice, odd, plain in choice == 0 ? odd : plain ?? "" }
        let raw = piece.array(of: 0...24).map { Array($0.joined().utf8) }
        await propertyCheck(count: 2000, input: raw, Self.adversarial) { payload, before in
            var expected = Array(before.utf8)
            SSEEncoder.appendData(payload, to: &expected)
            var inPlace = Array(before.utf8)
            inPlace.append(contentsOf: "data: ".utf8)
            let start = inPlace.count
            inPlace.append(contentsOf: payload)
            SSEEncoder.makeDataLineSafe(&inPlace, from: start)
            inPlace.append(contentsOf: "\n\n".utf8)
            #expect(inPlace == expected, "\(String(decoding: payload, as: UTF8.self).debugDescription)")
        }
    }
}
