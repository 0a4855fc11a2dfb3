import Foundation
import GatewayCore
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
}
