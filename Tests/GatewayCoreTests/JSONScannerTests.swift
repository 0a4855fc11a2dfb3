import FixtureFiles
import Foundation
import GatewayCore
import PropertyBased
import Testing

@Suite struct JSONScannerTests {
    @Test(arguments: [
        "{}", "[]", "0", "-0.5e+10", "\"\"", "true", "null", " {\"a\" : [1, 2.5, {\"b\": null}], \"c\": \"\\u00e9\\n\"} ",
        #"{"choices":[{"delta":{"content":"héllo \"quoted\""}}]}"#,
    ])
    func validDocuments(text: String) {
        #expect(JSONScanner.isValid(Array(text.utf8)))
    }

    @Test(arguments: [
        "", "{", "}", "{\"a\"}", "{\"a\":}", "[1,]", "{\"a\":1,}", "01", "1.", ".5", "-", "1e", "tru", "nul",
        "\"unterminated", "\"bad \\x escape\"", "\"\\u12G4\"", "{\"a\":1}{}", "[1 2]", "\"raw\nnewline\"", "{a:1}",
    ])
    func invalidDocuments(text: String) {
        #expect(!JSONScanner.isValid(Array(text.utf8)))
    }

    @Test func depthIsBounded() {
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(!JSONScanner.isValid(Array(deep.utf8)))
        let fine = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(JSONScanner.isValid(Array(fine.utf8)))
    }

    @Test func findsTopLevelValuesOnly() {
        let text = Array(#"{"nested":{"model":"inner"},"model" : "outer","x":[1]}"#.utf8)
        let range = JSONScanner.rangeOfTopLevelValue(forKey: "model", in: text)!
        #expect(String(decoding: text[range], as: UTF8.self) == "\"outer\"")
        #expect(JSONScanner.rangeOfTopLevelValue(forKey: "missing", in: text) == nil)
        #expect(JSONScanner.rangeOfTopLevelValue(forKey: "model", in: Array("[1]".utf8)) == nil)
        #expect(JSONScanner.rangeOfTopLevelValue(forKey: "model", in: Array(#"{"model":"#.utf8)) == nil)
    }
}

@Suite struct JSONValueParsingTests {
    @Test func parsesEveryKindOfValue() throws {
        let text = #" {"s":"plain","e":"q\"b\\s\/n\nt\tu\u00e9\ud83d\ude00x","i":-42,"big":12345678901234567890,"d":0.25,"x":1e3,"t":true,"f":false,"z":null,"a":[1,[],{}],"o":{"k":{"k":"v"}},"dup":1,"dup":2} "#
        let value = try JSONValue.parse(Array(text.utf8))
        #expect(value["s"] == .string("plain"))
        #expect(value["e"] == .string("q\"b\\s/n\nt\tué😀x"))
        #expect(value["i"] == .int(-42))
        #expect(value["big"] == .double(Double("12345678901234567890")!))
        #expect(value["d"] == .double(0.25))
        #expect(value["x"] == .double(1000))
        #expect(value["t"] == .bool(true))
        #expect(value["f"] == .bool(false))
        #expect(value["z"] == .null)
        #expect(value["a"] == .array([.int(1), .array([]), .object([:])]))
        #expect(value["o"]?["k"]?["k"] == .string("v"))
        #expect(value["dup"] == .int(2))
    }

    @Test func agreesWithFoundationOnTheFixtures() throws {
        for name in try Fixtures.names(in: "sse", withExtension: "sse") {
            for event in try decodeAll([try Fixtures.bytes("sse/\(name).sse")]) where JSONScanner.isValid(Array(event.data.utf8)) {
                let ours = try JSONValue.parse(Array(event.data.utf8))
                let foundation = try JSONDecoder().decode(JSONValue.self, from: Data(event.data.utf8))
                #expect(ours == foundation, "\(event.data)")
            }
        }
    }

    @Test func loneSurrogateBecomesReplacementCharacter() throws {
        #expect(try JSONValue.parse(Array(#""\ud800x""#.utf8)) == .string("\u{FFFD}x"))
    }
}

@Suite struct JSONWritingValueTests {
    @Test func valuesRoundTripCompactlyWithSortedKeys() throws {
        let text = #"{"z":[1,2.5,-3e+20,null,true,false],"a":{"é\"\n":"\u2028x"},"m":{}}"#
        let value = try JSONValue.parse(Array(text.utf8))
        let compact = JSONWriting.compact(value)
        #expect(compact == #"{"a":{"é\"\n":"\u2028x"},"m":{},"z":[1,2.5,-3e+20,null,true,false]}"#)
        #expect(try JSONValue.parse(Array(compact.utf8)) == value)
        #expect(JSONWriting.compact(.double(.infinity)) == "null")
    }

    /// Strings with what JSON must escape, what we escape besides, and what must pass untouched.
    static let text = zip(
        Gen.int(in: 0...3),
        Gen.element(of: ["\"", "\\", "/", "\n", "\r", "\t", "\u{0}", "\u{8}", "\u{C}", "\u{1F}", "\u{7F}", "\u{85}", "\u{2028}",
                         "\u{2029}", "é", "e\u{301}", "🙂", "a", "B", "_", " ", "1"]),
        Gen.unicodeScalar(in: "\u{0}"..."\u{D7FF}"),
        Gen.unicodeScalar(in: "\u{E000}"..."\u{10FFFF}")
    ).map { choice, piece, low, high -> String in
        switch choice {
        case 0, 1: piece ?? ""
        case 2: String(Character(low))
        default: String(Character(high))
        }
    }.array(of: 0...24).map { $0.joined() }

    /// Leaves of every kind, doubles across the whole range (integral, tiny, huge, negative zero).
    static let leaf = zip(Gen.int(in: 0...5), Self.text, Gen.int64(), Gen.uint64(), Gen.int(in: -1_000_000...1_000_000))
        .map { kind, text, integer, bits, small -> JSONValue in
            switch kind {
            case 0: .string(text)
            case 1: .int(integer)
            case 2: .double(Double(bitPattern: bits))  // NaN and infinities included: written as null
            case 3: .double(Double(small) / 8)
            case 4: .bool(small % 2 == 0)
            default: .null
            }
        }

    /// Objects and arrays two levels deep, keys from the same adversarial text.
    static let document = zip(Self.text, Self.leaf).array(of: 0...6).array(of: 0...4).map { groups -> JSONValue in
        .object(Dictionary(groups.enumerated().map { index, members in
            (index % 2 == 0 ? "k\(index)" : members.first?.0 ?? "",
             index % 3 == 0 ? .array(members.map(\.1))
                 : .object(Dictionary(members.map { ($0.0, $0.1) }, uniquingKeysWith: { $1 })))
        }, uniquingKeysWith: { $1 }))
    }

    /// `serialized()` is hand-written (it is on the way to every upstream call); Foundation's
    /// encoder is the reference: the same bytes, except where we escape more (backspace and form
    /// feed as `\u0008`/`\u000c`, and NEL, U+2028, U+2029), and the same value when read back.
    @Test func serializedIsFoundationsEncodingAndRoundTrips() async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        await propertyCheck(count: 500, input: Self.document) { value in
            let ours = value.serialized()
            #expect(JSONScanner.isValid(ours))
            guard let foundation = try? encoder.encode(value) else {
                Issue.record("Foundation could not encode \(value)")
                return
            }
            if !Self.escapesMore(value) {
                #expect(String(decoding: ours, as: UTF8.self) == String(decoding: foundation, as: UTF8.self))
            }
            let back = try? JSONDecoder().decode(JSONValue.self, from: Data(ours))
            #expect(back == (try? JSONDecoder().decode(JSONValue.self, from: foundation)))
        }
    }

    /// `appendString` checks eight bytes at a time: the same bytes as escaping scalar by scalar,
    /// wherever the special bytes fall in a word.
    @Test func stringsAreEscapedAsScalarByScalar() async {
        // Mostly plain ASCII, so that words of eight bytes with one special byte are common.
        let plain = Array(repeating: ["a", "Z", " ", "1", "/", "~", "{", "]"], count: 4).flatMap { $0 }
        let special = ["\"", "\\", "\n", "\r", "\t", "\u{0}", "\u{8}", "\u{1F}", "\u{7F}", "é", "\u{85}", "\u{2028}", "\u{2029}", "€", "🙂", "\u{A0}"]
        let text = Gen.element(of: plain + special).array(of: 0...40).map { $0.compactMap { $0 }.joined() }
        await propertyCheck(count: 2000, input: text) { text in
            var ours: [UInt8] = []
            JSONWriting.appendString(text, to: &ours)
            var reference: [UInt8] = [0x22]
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": reference += Array(#"\""#.utf8)
                case "\\": reference += Array(#"\\"#.utf8)
                case "\n": reference += Array(#"\n"#.utf8)
                case "\r": reference += Array(#"\r"#.utf8)
                case "\t": reference += Array(#"\t"#.utf8)
                case "\u{0}"..."\u{1F}", "\u{85}", "\u{2028}", "\u{2029}":
                    reference += Array(("\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                                        + String(scalar.value, radix: 16)).utf8)
                default: reference += Array(String(scalar).utf8)
                }
            }
            reference.append(0x22)
            #expect(ours == reference, "\(text.debugDescription)")
        }
    }

    /// Whether a string in `value` (key or text) has a character we escape and Foundation does not
    /// (or escapes differently).
    static func escapesMore(_ value: JSONValue) -> Bool {
        let special: Set<Unicode.Scalar> = ["\u{8}", "\u{C}", "\u{85}", "\u{2028}", "\u{2029}"]
        func has(_ text: String) -> Bool { text.unicodeScalars.contains { special.contains($0) } }
        switch value {
        case .string(let text): return has(text)
        case .array(let items): return items.contains(where: escapesMore)
        case .object(let members): return members.contains { has($0.key) || escapesMore($0.value) }
        default: return false
        }
    }
}
