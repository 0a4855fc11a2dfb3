import GatewayCore
import PropertyBased
import Testing

/// `UTF8Validation` against the standard library's own validation, on bytes biased towards the
/// edges of UTF-8 (lead bytes, continuation bytes, surrogates, overlong forms, the end of a buffer).
@Suite struct UTF8ValidationTests {
    static let interesting: [UInt8] = [0x00, 0x22, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF,
                                       0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
    static let bytes = Gen.int(in: 0...(interesting.count + 40)).map { index -> UInt8 in
        index < interesting.count ? interesting[index] : UInt8(ascii: "a") + UInt8(index % 26)
    }.array(of: 0...24)

    @Test func agreesWithTheStandardLibrary() async {
        await propertyCheck(count: 5_000, input: Self.bytes) { bytes in
            let offset = bytes.withUnsafeBytes { UTF8Validation.firstInvalidOffset($0) }
            #expect((offset == nil) == (String(validating: bytes, as: UTF8.self) != nil), "\(bytes)")
            if let offset {
                #expect(String(validating: bytes[..<offset], as: UTF8.self) != nil, "what comes before is valid: \(bytes)")
            }
        }
    }

    /// A request body's text: not UTF-8 is a 400, and well-formed text of any script is read as sent.
    @Test func aRequestWhoseTextIsNotUTF8IsRefused() async throws {
        await propertyCheck(count: 2_000, input: Self.bytes) { bytes in
            // Inside a string: no quote, backslash or control byte (those are the scanner's business).
            let text = bytes.filter { $0 >= 0x20 && $0 != 0x22 && $0 != 0x5C }
            let body = Array(#"{"model":"a/b","messages":[{"role":"user","content":""#.utf8) + text + Array(#""}]}"#.utf8)
            let valid = String(validating: text, as: UTF8.self)
            do throws(APIError) {
                let json = try JSONValue.parseRequest(body)
                #expect(valid != nil && json["messages"]?.arrayValue?.first?["content"]?.stringValue == valid, "\(text)")
            } catch {
                #expect(valid == nil && error.code == "invalid_json" && error.message.contains("UTF-8"), "\(text): \(error.message)")
            }
        }
        #expect(try JSONValue.parseRequest(Array(#"{"a":"é🙂 \ud83d"}"#.utf8))["a"] == .string("é🙂 \u{FFFD}"), "a lone surrogate escape is read leniently")
    }
}
