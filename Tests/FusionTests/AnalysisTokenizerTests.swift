import Foundation
import Fusion
import GatewayCore
import Testing

/// The streaming tokenizer over the judge's reply: any split gives the same items as one parse
/// of the whole, and no input traps it.
@Suite struct AnalysisTokenizerTests {
    static let analysis = #"""
        {"consensus": ["Yes, for a small team.", "Limits: [size], {files}, \"quotes\", \\ and \u00e9\ud83d\ude00."],
         "contradictions": [{"topic": "CI", "stances": [{"model": "Response A", "stance": "one pipeline"}, {"model": "Response B", "stance": "per package"}]}],
         "summary": ["not a field", {"consensus": ["nested: not the analysis"]}],
         "partial_coverage": [{"models": ["Response A"], "point": "p", "weight": -1.5e3, "n": 0, "ok": true, "none": null}],
         "unique_insights": [],
         "blind_spots": ["Repository size limits."]}
        """#

    /// The five arrays' elements, from one parse of the whole object.
    static func expected(_ text: String) throws -> [AnalysisItem] {
        let object = try JSONValue.parse(Array(text.utf8))
        var items: [AnalysisItem] = []
        // In the order they appear in the text (the tokenizer's order).
        let order = JudgeAnalysis.fields.sorted { (text.range(of: "\"\($0)\"")?.lowerBound ?? text.endIndex) < (text.range(of: "\"\($1)\"")?.lowerBound ?? text.endIndex) }
        for field in order {
            for (index, value) in (object[field]?.arrayValue ?? []).enumerated() {
                items.append(AnalysisItem(field: field, index: index, value: value))
            }
        }
        return items
    }

    func items(_ bytes: [UInt8], pieces sizes: [Int]) -> [AnalysisItem] {
        var tokenizer = AnalysisTokenizer()
        var found: [AnalysisItem] = []
        var position = 0
        var turn = 0
        while position < bytes.count {
            let size = max(1, sizes[turn % sizes.count])
            let end = min(bytes.count, position + size)
            found += tokenizer.feed(bytes[position..<end])
            position = end
            turn += 1
        }
        return found
    }

    @Test func wholeRepliesGiveEveryElementOfTheFiveArrays() throws {
        let bytes = Array(Self.analysis.utf8)
        let found = items(bytes, pieces: [bytes.count])
        #expect(found == (try Self.expected(Self.analysis)))
        #expect(found.map(\.field) == ["consensus", "consensus", "contradictions", "partial_coverage", "blind_spots"])
        #expect(found[1].value == .string("Limits: [size], {files}, \"quotes\", \\ and é😀."))
        #expect(found[3].value["weight"] == .double(-1500) && found[3].value["n"] == .int(0) && found[3].value["none"] == .null)
    }

    @Test func everySplitGivesTheSameItems() throws {
        let bytes = Array(Self.analysis.utf8)
        let expected = try Self.expected(Self.analysis)
        // Split once at every position, then byte by byte.
        for cut in 0...bytes.count {
            var tokenizer = AnalysisTokenizer()
            let found = tokenizer.feed(bytes[..<cut]) + tokenizer.feed(bytes[cut...])
            #expect(found == expected, "split at \(cut)")
        }
        #expect(items(bytes, pieces: [1]) == expected)
    }

    @Test(arguments: 0..<200)
    func randomSplitsGiveTheSameItems(seed: Int) throws {
        var generator = SeededGenerator(seed: UInt64(seed))
        let text = Self.randomAnalysis(&generator)
        let bytes = Array(text.utf8)
        let sizes = (0..<8).map { _ in Int(generator.next() % 17) + 1 }
        #expect(items(bytes, pieces: sizes) == (try Self.expected(text)), "\(text)")
    }

    @Test func textAroundTheObjectIsNotTheAnalysis() {
        var tokenizer = AnalysisTokenizer()
        let reply = "Here it is:\n```json\n{\"blind_spots\":[\"a\"]}\n```\nand {\"consensus\":[\"after\"]}"
        #expect(tokenizer.feed(reply).map(\.value) == [.string("a")])
        #expect(tokenizer.finished && !tokenizer.stopped)
    }

    @Test func anItemIsHandedOutTheMomentItsLastByteArrives() {
        var tokenizer = AnalysisTokenizer()
        #expect(tokenizer.feed(#"{"consensus":["one","tw"#).map(\.value) == [.string("one")])
        #expect(tokenizer.feed(#"o""#).map(\.value) == [.string("two")], "a string is complete at its closing quote")
        #expect(tokenizer.feed(#",12"#).isEmpty, "a number may go on")
        #expect(tokenizer.feed(#"]"#).map(\.value) == [.int(12)])
        #expect(tokenizer.feed(#","unique_insights":[{"model":"Response A","insight":"x"}"#).map(\.field) == ["unique_insights"])
    }

    @Test(arguments: [
        #"{"consensus":["a" "b"]}"#, #"{"consensus":[01]}"#, #"{"consensus":[1.]}"#, #"{"consensus":[tru]}"#,
        #"{"consensus":["\x"]}"#, #"{"consensus":["\u12G4"]}"#, "{\"consensus\":[\"a\u{01}\"]}", #"{"consensus":[,]}"#,
        #"{"consensus" ["a"]}"#, #"{"consensus":["a"],}"#, #"{"consensus":[}"#, #"{"consensus":[1e]}"#, #"{"consensus":[-]}"#,
    ])
    func brokenJSONStopsTheTokenizerWithoutATrap(reply: String) {
        var tokenizer = AnalysisTokenizer()
        let found = tokenizer.feed(reply)
        #expect(tokenizer.stopped, "\(reply)")
        #expect(found.allSatisfy { $0.value == .string("a") })
        #expect(tokenizer.feed(#"["more"]}"#).isEmpty, "nothing after a stop")
    }

    @Test func depthAndSizeAreCapped() {
        var deep = AnalysisTokenizer()
        _ = deep.feed("{\"consensus\":" + String(repeating: "[", count: 10_000))
        #expect(deep.stopped)
        var large = AnalysisTokenizer()
        _ = large.feed("{\"consensus\":[\"" + String(repeating: "x", count: AnalysisTokenizer.maxItemBytes + 10))
        #expect(large.stopped)
        #expect(deep.stopReason == .tooDeep && large.stopReason == .tooLarge)
        var long = AnalysisTokenizer()
        _ = long.feed("{\"consensus\":[" + String(repeating: "1", count: AnalysisTokenizer.maxNumberBytes + 1))
        #expect(long.stopReason == .numberTooLong)
        var fine = AnalysisTokenizer()
        _ = fine.feed("{\"consensus\":[" + String(repeating: "1", count: 100))
        #expect(!fine.stopped, "a long number, read")
    }

    @Test func lonelySurrogatesBecomeReplacementCharacters() {
        var tokenizer = AnalysisTokenizer()
        let found = tokenizer.feed(#"{"consensus":["a\ud800b","\udc00","\ud83d\ude00"]}"#)
        #expect(found.map(\.value) == [.string("a\u{FFFD}b"), .string("\u{FFFD}"), .string("😀")])
    }

    @Test(arguments: 0..<300)
    func hostileBytesNeverTrap(seed: Int) {
        var generator = SeededGenerator(seed: UInt64(seed) &* 7919)
        // Mostly the bytes that drive the grammar, sometimes anything.
        let alphabet = Array(#"{}[]",:\ "u0123456789abcdefEtrnl-+.consensusblind_spots"#.utf8)
        var bytes: [UInt8] = Array(#"{"consensus":["#.utf8)
        for _ in 0..<Int(generator.next() % 400) {
            bytes.append(generator.next() % 5 == 0 ? UInt8(truncatingIfNeeded: generator.next()) : alphabet[Int(generator.next() % UInt64(alphabet.count))])
        }
        var tokenizer = AnalysisTokenizer()
        var found: [AnalysisItem] = []
        var position = 0
        while position < bytes.count {
            let end = min(bytes.count, position + Int(generator.next() % 9) + 1)
            found += tokenizer.feed(bytes[position..<end])
            position = end
        }
        // What it hands out is always well-formed: it serializes and parses back the same.
        for item in found {
            #expect((try? JSONValue.parse(item.value.serialized())) == item.value)
        }
    }

    /// A random, valid analysis-like document: the five fields in random order with random
    /// elements, strings with escapes and multi-byte characters, nesting, numbers, literals.
    static func randomAnalysis(_ generator: inout SeededGenerator) -> String {
        func string() -> String {
            let parts = ["a", "é", "😀", "\\\"", "\\\\", "\\n", "\\u00e9", "[", "]", "{", "}", ",", ":", " ", "\\ud83d\\ude00"]
            return "\"" + (0..<Int(generator.next() % 6)).map { _ in parts[Int(generator.next() % UInt64(parts.count))] }.joined() + "\""
        }
        func value(_ depth: Int) -> String {
            switch generator.next() % (depth > 2 ? 4 : 6) {
            case 0: return string()
            case 1: return ["0", "-12", "3.5", "1e3", "-0.25E-2"][Int(generator.next() % 5)]
            case 2: return ["true", "false", "null"][Int(generator.next() % 3)]
            case 3: return string()
            case 4: return "[" + (0..<Int(generator.next() % 3)).map { _ in value(depth + 1) }.joined(separator: ",") + "]"
            default: return "{" + (0..<Int(generator.next() % 3)).map { i in "\"k\(i)\" : " + value(depth + 1) }.joined(separator: ", ") + "}"
            }
        }
        let fields = (JudgeAnalysis.fields + ["other"]).shuffled(using: &generator)
        let members = fields.map { field in
            "\"\(field)\":\n [" + (0..<Int(generator.next() % 4)).map { _ in value(0) }.joined(separator: " , ") + "]"
        }
        return "{" + members.joined(separator: ",") + "}"
    }
}

/// A deterministic generator for property tests.
typealias SeededGenerator = SplitMix64
