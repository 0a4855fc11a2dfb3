import PropertyBased
@testable import Surfaces
import Testing

/// `hasNonNullMember` (which relayed chunks get parsed) skips eight bytes at a time; the
/// reference is the plain byte-by-byte scan it replaced: the same answer wherever quotes, keys,
/// colons and nulls fall relative to word boundaries.
@Suite struct NonNullMemberTests {
    static let pieces = ["\"", "usage", "finish_reason", "error", "\"usage\"", "\"finish_reason\"", "\"error\"", ":", " ", "\n", "null",
                         "nul", "1", "{", "}", ",", "\\\"", "u", "f", "e", "abcdefgh", "\"usag\"", "é"]
    static let text = Gen.element(of: pieces).array(of: 0...30).map { $0.compactMap { $0 }.joined() }

    @Test func sameAnswerAsTheByteByByteScan() async {
        await propertyCheck(count: 3000, input: Self.text) { text in
            let bytes = Array(text.utf8)
            bytes.withUnsafeBytes { buffer in
                #expect(buffer.hasNonNullMember(#""usage""#, #""finish_reason""#, #""error""#)
                        == Self.reference(buffer, [#""usage""#, #""finish_reason""#, #""error""#]), "\(text)")
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
}
