import GatewayCore
import PropertyBased
import Testing

/// A tool call's arguments, checked fragment by fragment: every prefix of a JSON object passes,
/// anything else fails at the first byte that cannot continue one, whatever the split.
@Suite struct JSONPrefixCheckTests {
    static let objects = [
        "{}", " {\"a\" : [1, 2.5, {\"b\": null}], \"c\": \"\\u00e9\\n\\\"\"} ", #"{"location":"Paris, France","unit":"celsius"}"#,
        #"{"n":-0,"e":1E+10,"f":-12.5e-3,"z":0.0,"t":true,"f2":false,"x":null,"s":"é🙂\/\\","deep":[[[{"k":[]}]]]}"#,
        "{\n\t\"multi\":\r\n[ ]\n}\n",
    ]

    @Test(arguments: objects)
    func everyPrefixOfAnObjectPassesInAnySplit(text: String) {
        let bytes = Array(text.utf8)
        for split in 0...bytes.count {
            var check = JSONPrefixCheck()
            check.feed(bytes[..<split])
            #expect(!check.failed, "\(text) cut at \(split)")
            check.feed(bytes[split...])
            #expect(check.isComplete, "\(text) split at \(split)")
        }
    }

    @Test(arguments: [
        "[]", "1", "\"s\"", "null", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":-}",
        "{\"a\":1e}", "{\"a\":tru}", "{\"a\":nul", "{\"a\":\"bad \\x escape\"}", "{\"a\":\"\\u12G4\"}", "{\"a\":1}{}", "{\"a\":[1 2]}",
        "{\"a\":\"raw\nnewline\"}", "{a:1}", "{\"a\":1]", "{\"a\":[1}", "{\"a\" 1}", "{,}", "{\"a\":truex}", "{\"a\":1}x",
    ])
    func notAnObjectFailsOrStaysIncomplete(text: String) {
        var check = JSONPrefixCheck()
        check.feed(text.utf8)
        #expect(!check.isComplete, "\(text)")
    }

    @Test func theFirstByteThatCannotContinueAnObjectFails() {
        for (text, at) in [("{\"a\":1}x", 7), ("[", 0), ("{\"a\":01", 6), ("{\"a\"  ,", 6), ("{\"a\":\"\u{1}", 6), ("{\"a\":tx", 6)] {
            let bytes = Array(text.utf8)
            var check = JSONPrefixCheck()
            check.feed(bytes[..<at])
            #expect(!check.failed, "\(text) before \(at)")
            check.feed(bytes[at...])
            #expect(check.failed, "\(text) at \(at)")
        }
    }

    @Test func nestingIsBounded() {
        var deep = JSONPrefixCheck()
        deep.feed(("{\"a\":" + String(repeating: "[", count: JSONPrefixCheck.maxDepth)).utf8)
        #expect(deep.failed)
        var fine = JSONPrefixCheck()
        fine.feed(("{\"a\":" + String(repeating: "[", count: JSONPrefixCheck.maxDepth - 1) + String(repeating: "]", count: JSONPrefixCheck.maxDepth - 1) + "}").utf8)
        #expect(fine.isComplete)
    }

    /// Token soup: the check agrees with the whole-document validator on every input, fed whole
    /// or in two parts split anywhere.
    static let soup = Gen.element(of: ["{", "}", "[", "]", ",", ":", "\"a\"", "\"", "\\", "\\u00e9", "\\x", "1", "-", "0", ".", "e", "+",
                                       "true", "tru", "null", "false", " ", "\n", "\u{1}", "é", "\"k\":", "{\"k\":", "\"v\"}"])
        .array(of: 1...24).map { $0.compactMap { $0 }.joined() }

    @Test func agreesWithTheDocumentValidator() async {
        await propertyCheck(count: 2_000, input: Self.soup, Gen.int(in: 0...200)) { text, cut in
            let bytes = Array(text.utf8)
            let firstByte = bytes.first { ![0x20, 0x0A, 0x0D, 0x09].contains($0) }
            let expected = JSONScanner.isValid(bytes) && firstByte == UInt8(ascii: "{")
            var whole = JSONPrefixCheck()
            whole.feed(bytes)
            #expect(whole.isComplete == expected, "\(text)")
            let split = min(cut, bytes.count)
            var parts = JSONPrefixCheck()
            parts.feed(bytes[..<split])
            parts.feed(bytes[split...])
            #expect(parts.isComplete == whole.isComplete && parts.failed == whole.failed, "\(text) split at \(split)")
        }
    }
}
