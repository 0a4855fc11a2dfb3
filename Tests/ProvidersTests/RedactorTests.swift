import Foundation
import GatewayCore
import PropertyBased
import Providers
import Testing

/// The forms upstreams echo a key back in are redacted too: cut short, upper-cased, base64 (also
/// inside a Basic credential), split by a zero-width character; ordinary text is left alone.
@Suite struct RedactorTests {
    static let key = "sk-hostile-PROVIDERSECRET-1234"
    let redact = Redactor(secrets: [Self.key, "sk-other-0123456789abcdef"])

    @Test(arguments: [
        "key: sk-hostile-PROVIDERSECRET-1234",
        "key: SK-HOSTILE-PROVIDERSECRET-1234",
        "key: sk-hostile-PROVIDERSECRET-",
        "key: sk-hostile\u{200B}-PROVIDERSECRET-1234",
        "key: " + Data(RedactorTests.key.utf8).base64EncodedString(),
        "Authorization: Basic " + Data("user:\(RedactorTests.key)".utf8).base64EncodedString(),
        "Authorization: Basic " + Data("u:\(RedactorTests.key)".utf8).base64EncodedString(),
        "Authorization: Basic " + Data(":\(RedactorTests.key)".utf8).base64EncodedString(),
        "your key is sk-hostile-PROVIDERSECRET-1234sk-",
        "…ROVIDERSECRET-1234 and more",
    ])
    func aKeyInAnyFormIsRedacted(text: String) {
        let out = redact(text)
        #expect(out.contains("[redacted]"), "\(out)")
        #expect(!out.lowercased().contains("providersecret"), "\(out)")
        #expect(!out.contains("c2staG9zdGlsZS1QUk9WSURFUlNFQ1JFVC"), "\(out)")
    }

    @Test func ordinaryTextIsLeftAloneAndTheRestKept() {
        let text = "Provider 'p' rejected the request (HTTP 401): invalid api key — é 日本 \u{200B}"
        #expect(redact(text) == text)
        #expect(redact("a sk-hostile-PROVIDERSECRET-1234 b") == "a [redacted] b")
        #expect(redact("é sk-hostile-PROVIDERSECRET-1234é") == "é [redacted]é")
        #expect(Redactor(secrets: ["abcd"])("xxABCDyy abcd") == "xx[redacted]yy [redacted]", "a short secret, whole")
        #expect(Redactor.none("sk-hostile-PROVIDERSECRET-1234") == "sk-hostile-PROVIDERSECRET-1234")
    }

    /// Whatever surrounds it, and however it is cased, no 12-byte run of the key survives, and the
    /// output is valid text (a run never cuts a character in two).
    @Test func propertyNoRunOfTheKeySurvives() async {
        let pieces = ["é", "日本", "\u{200B}", " ", "sk-", "key=", "\"", "\n", "PROVIDER", "1234"]
        await propertyCheck(count: 500, input: Gen.int(in: 0...9).array(of: 0...8), Gen.int(in: 0...18), Gen.int(in: 12...30), Gen.bool) { picks, start, length, upper in
            let end = min(start + length, Self.key.count)
            guard end - start >= Redactor.window else { return }
            var part = String(Array(Self.key)[start..<end])
            if upper { part = part.uppercased() }
            let text = picks.prefix(4).map { pieces[$0] }.joined() + part + picks.dropFirst(4).map { pieces[$0] }.joined()
            let out = redact(text)
            let folded = out.lowercased()
            let lowerKey = Array(Self.key.lowercased())
            for offset in 0...(lowerKey.count - Redactor.window) {
                #expect(!folded.contains(String(lowerKey[offset..<(offset + Redactor.window)])), "\(text.debugDescription) → \(out.debugDescription)")
            }
        }
    }

    /// Bytes bound for a client: nil (nothing to change, nothing allocated) for ordinary SSE and
    /// JSON, the key replaced inside its JSON string otherwise, the event and the JSON intact.
    @Test func clientBytesAreRedactedInPlace() throws {
        func redacting(_ text: String) -> String? { Array(text.utf8).withUnsafeBytes { redact.redacting($0) }.map { String(decoding: $0, as: UTF8.self) } }
        let clean = #"data: {"id":"gen-1764000000-abcdefghijklmnopqrst","object":"chat.completion.chunk","choices":[{"delta":{"content":"Hello"}}]}"# + "\n\n"
        #expect(redacting(clean) == nil)
        let leaked = #"data: {"choices":[{"delta":{"content":"your key: sk-hostile-PROVIDERSECRET-1234, ok"}}]}"# + "\n\n"
        let out = try #require(redacting(leaked))
        #expect(out == #"data: {"choices":[{"delta":{"content":"your key: [redacted], ok"}}]}"# + "\n\n")
        #expect(try JSONValue.parse(Array(out.dropFirst(6).dropLast(2).utf8))["choices"] != nil)
        #expect(Array("xxABCDyy".utf8).withUnsafeBytes { Redactor(secrets: ["abcd"]).redacting($0) } != nil, "a short secret")
        #expect(Array("xxABCyy".utf8).withUnsafeBytes { Redactor(secrets: ["abcd"]).redacting($0) } == nil)
        #expect(Array(leaked.utf8).withUnsafeBytes { Redactor.none.redacting($0) } == nil)
    }
}
