import Foundation
import GatewayCore
import PropertyBased
@testable import Surfaces
import Testing

/// `hasNonNullMember` (which relayed chunks get parsed) looks at sixteen bytes at a time; the
/// reference is the plain byte-by-byte scan it replaced: the same answer wherever quotes, keys,
/// colons and nulls fall relative to word boundaries.
@Suite struct NonNullMemberTests {
    static let pieces = ["\"", "usage", "finish_reason", "error", "\"usage\"", "\"finish_reason\"", "\"error\"", "\"tool_calls\"", "tool_call", ":", " ", "\n", "null",
                         "nul", "1", "{", "}", ",", "\\\"", "u", "f", "e", "abcdefgh", "\"usag\"", "é"]
    static let text = Gen.element(of: pieces).array(of: 0...30).map { $0.compactMap { $0 }.joined() }

    /// The same answer as the byte-by-byte scan without escapes; with them, never a "no" where
    /// the scan says "yes" (an escaped key is a match, `escapedKeyMembers` below).
    @Test func sameAnswerAsTheByteByByteScan() async {
        await propertyCheck(count: 3000, input: Self.text) { text in
            let bytes = Array(text.utf8)
            bytes.withUnsafeBytes { buffer in
                let found = buffer.hasNonNullMember(#""usage""#, #""finish_reason""#, #""error""#, #""tool_calls""#)
                let reference = Self.reference(buffer, [#""usage""#, #""finish_reason""#, #""error""#, #""tool_calls""#])
                #expect(text.contains("\\") ? (found || !reference) : found == reference, "\(text)")
            }
        }
    }

    /// Whatever escapes spell the names, a JSON object with a non-null `usage`, `finish_reason`
    /// or `error` member (at any depth) is found: the scan may say "parse it" too often, never
    /// too rarely.
    static let names = ["usage", "finish_reason", "error", "tool_calls", "content", "role", "us", "errors", "index"]
    static let object = zip(Gen.element(of: names), Gen.bool.array(of: 13...13), Gen.int(in: 0...3)).array(of: 0...5)

    @Test func escapedKeyMembers() async {
        await propertyCheck(count: 3000, input: Self.object) { members in
            // Each letter of a name escaped or not, as the flags say; values by the third number.
            var parts: [String] = []
            var expected = false
            for (name, flags, kind) in members {
                guard let name else { continue }
                let key = zip(name, flags).map { letter, escape in
                    escape ? String(format: "\\u%04x", Int(letter.unicodeScalars.first!.value)) : String(letter)
                }.joined()
                let value = ["null", "1", #"{"usage":null}"#, #"{"finish_reason":"stop"}"#][kind]
                parts.append("\"\(key)\":\(value)")
                if ["usage", "finish_reason", "error", "tool_calls"].contains(name) && kind != 0 { expected = true }
                if kind == 3 { expected = true }
            }
            let text = "{" + parts.joined(separator: ",") + "}"
            #expect((try? JSONValue.parse(Array(text.utf8))) != nil, "\(text)")
            Array(text.utf8).withUnsafeBytes { buffer in
                if expected { #expect(buffer.hasNonNullMember(#""usage""#, #""finish_reason""#, #""error""#, #""tool_calls""#), "\(text)") }
            }
        }
    }

    static func reference(_ bytes: UnsafeRawBufferPointer, _ keys: [String]) -> Bool {
        let text = Array(bytes)
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }
        for index in text.indices where text[index] == UInt8(ascii: "\"") {
            for key in keys.map({ Array($0.utf8) }) where text[index...].starts(with: key) {
                var position = index + key.count
                while position < text.count, isSpace(text[position]) { position += 1 }
                guard position < text.count, text[position] == UInt8(ascii: ":") else { continue }
                position += 1
                while position < text.count, isSpace(text[position]) { position += 1 }
                if !text[position...].starts(with: Array("null".utf8)) { return true }
            }
        }
        return false
    }

    /// `hasIndexOtherThanZero` against a parse of random chunks (review 81B #3).
    @Test func theIndexScanAgreesWithAParse() throws {
        // A key whose value the event's end cuts off is read within the bytes (no read past
        // them) and sent to the parse, which refuses it.
        for cut in [#""index":"#, #"{"index": "#, #"{"index":0"#, #"{"a":1,"index" :"#] {
            let bytes = Array(cut.utf8)
            #expect(bytes.withUnsafeBytes { $0.hasIndexOtherThanZero() }, "\(cut)")
            #expect(bytes.withUnsafeBytes { $0.hasNonNullMember(#""usage""#, #""finish_reason""#, #""error""#, #""tool_calls""#, orIndexOtherThanZero: true) }, "\(cut)")
        }
        // One pass with the other keys: the same answer as both scans.
        for text in [#"{"index":1,"finish_reason":null}"#, #"{"index":0,"usage":{"a":1}}"#, #"{"index":0,"finish_reason":null}"#] {
            let bytes = Array(text.utf8)
            let both = bytes.withUnsafeBytes { $0.hasIndexOtherThanZero() || $0.hasNonNullMember(#""usage""#, #""finish_reason""#, #""error""#, #""tool_calls""#) }
            #expect(bytes.withUnsafeBytes { $0.hasNonNullMember(#""usage""#, #""finish_reason""#, #""error""#, #""tool_calls""#, orIndexOtherThanZero: true) } == both, "\(text)")
        }
        // The scan against the parse: any choice's `index` member that is not the integer 0 (an
        // `"index"` inside a string value is no member); never a chunk the parse would refuse let
        // through.
        var generator = SystemRandomNumberGenerator()
        let values = ["0", "1", " 0", "0 ", "\"0\"", "0.0", "-0", "10", "null", "[0]", "{}"]
        for _ in 0..<500 {
            let parts = (0..<Int.random(in: 1...3, using: &generator)).map { _ in
                #"{"index":\#(values.randomElement(using: &generator)!),"delta":{"content":"a\"index\":1"}}"#
            }
            let text = #"{"choices":[\#(parts.joined(separator: ","))]}"#
            let parsed = try JSONValue.parse(Array(text.utf8))
            let expected = parsed["choices"]?.arrayValue?.contains { $0["index"] != .int(0) } ?? false
            let scanned = Array(text.utf8).withUnsafeBytes { $0.hasIndexOtherThanZero() }
            // `-0` is read as 0 by the parse: the scan leaves it to the parse (safe, rare).
            #expect(text.contains("-0") ? (scanned || !expected) : scanned == expected, "\(text)")
        }
    }

}
