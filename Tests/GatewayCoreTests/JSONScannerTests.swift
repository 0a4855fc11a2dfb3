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
