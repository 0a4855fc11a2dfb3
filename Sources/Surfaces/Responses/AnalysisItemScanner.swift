import Fusion
import GatewayCore

/// Picks the items of the judge's analysis out of its reply while it streams, so a client can
/// show each consensus point, contradiction, … the moment the judge has written it (OpenRouter
/// sends the analysis only whole, at the end).
///
/// The reply is meant to be one JSON object with five arrays (`JudgeAnalysis.fields`), maybe in
/// a ```json fence. The scanner tracks strings and nesting byte by byte (every structural byte
/// is ASCII, so UTF-8 needs no decoding) and, each time an element of one of the five arrays
/// ends, parses that element alone. What it finds is provisional: the analysis counts only once
/// validated whole (`analysis.completed`); a reply that fails validation is retried or replaced,
/// and the scanner is reset for the new attempt.
struct AnalysisItemScanner: Sendable {
    struct Item: Sendable, Equatable {
        var field: String
        var index: Int
        var value: JSONValue
    }

    private var text: [UInt8] = []
    private var position = 0
    private var depth = 0
    private var inString = false
    private var escaped = false
    /// Inside the top-level object, a string now would be a key.
    private var expectingKey = false
    private var keyStart: Int?
    private var lastKey: String?
    /// The analysis field whose array the scanner is in (depth 2), and where its element began.
    private var field: String?
    private var elementStart: Int?
    private var counts: [String: Int] = [:]
    private var finished = false

    /// Takes the next piece of the reply; returns the elements it completed.
    mutating func feed(_ piece: String) -> [Item] {
        text.append(contentsOf: piece.utf8)
        var found: [Item] = []
        while position < text.count && !finished {
            scan(text[position], at: position, &found)
            position += 1
        }
        return found
    }

    private mutating func scan(_ byte: UInt8, at index: Int, _ found: inout [Item]) {
        if inString {
            if escaped {
                escaped = false
            } else if byte == UInt8(ascii: "\\") {
                escaped = true
            } else if byte == UInt8(ascii: "\"") {
                inString = false
                if let start = keyStart {
                    keyStart = nil
                    // Parsed rather than sliced: a key may be spelled with escapes.
                    lastKey = (try? JSONValue.parse(Array(text[start...index])))?.stringValue
                }
            }
            return
        }
        if depth == 0 {
            // Anything before the object (a fence, a sentence) is not the analysis.
            if byte == UInt8(ascii: "{") {
                depth = 1
                expectingKey = true
            }
            return
        }
        switch byte {
        case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"):
            return
        default:
            break
        }
        if depth == 2, field != nil, elementStart == nil, byte != UInt8(ascii: ","), byte != UInt8(ascii: "]") {
            elementStart = index
        }
        switch byte {
        case UInt8(ascii: "\""):
            inString = true
            if depth == 1 && expectingKey { keyStart = index }
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            if depth == 1, byte == UInt8(ascii: "["), let key = lastKey, JudgeAnalysis.fields.contains(key) { field = key }
            depth += 1
        case UInt8(ascii: "}"), UInt8(ascii: "]"):
            if depth == 2, field != nil {
                endElement(at: index, &found)
                field = nil
            }
            depth -= 1
            finished = depth == 0
        case UInt8(ascii: ","):
            if depth == 1 { expectingKey = true }
            if depth == 2, field != nil { endElement(at: index, &found) }
        case UInt8(ascii: ":"):
            if depth == 1 { expectingKey = false }
        default:
            break
        }
    }

    private mutating func endElement(at end: Int, _ found: inout [Item]) {
        guard let start = elementStart, let field else { return }
        elementStart = nil
        guard let value = try? JSONValue.parse(Array(text[start..<end])) else { return }
        let index = counts[field, default: 0]
        counts[field] = index + 1
        found.append(Item(field: field, index: index, value: value))
    }
}
