import Foundation
import Fusion
import GatewayCore
import Testing

/// The analysis assembled from the items streamed (`JudgeAnalysis.assembled`) is exactly what
/// parsing the whole reply gives, whenever it is used; it is used for a clean reply, and any
/// reply it cannot vouch for goes to `parse`.
@Suite struct AssembledAnalysisTests {
    static let panel = ["openai/gpt-x", "anthropic/claude-y", "google/gemini-z"]

    /// Feeds `text` in random pieces as the deliberation does: each item mapped back and checked
    /// on its own, the first bad one stops the feeding. Returns the assembled analysis, if any.
    static func assemble(_ text: String, labels: NeutralLabels, generator: inout SeededGenerator) -> JSONValue? {
        var tokenizer = AnalysisTokenizer()
        var values: [String: [JSONValue]] = [:]
        let bytes = Array(text.utf8)
        var position = 0
        feeding: while position < bytes.count {
            let end = min(bytes.count, position + 1 + Int(generator.next() % 24))
            for found in tokenizer.feed(bytes[position..<end]) {
                let value = labels.restore(found.value)
                if JudgeAnalysis.problem(in: value, field: found.field, index: found.index, panel: Set(panel)) != nil { return nil }
                values[found.field, default: []].append(value)
            }
            position = end
            if tokenizer.stopped { break feeding }
        }
        return JudgeAnalysis.assembled(text, tokenizer: tokenizer, items: values)
    }

    /// A schema-valid analysis citing the panel by label (or by name), with prose mentioning
    /// labels, escapes, multi-byte text, extra members in items and extra top-level keys.
    static func randomAnalysis(_ generator: inout SeededGenerator, labels: NeutralLabels) -> [(key: String, value: String)] {
        func pick<T>(_ options: [T]) -> T { options[Int(generator.next() % UInt64(options.count))] }
        func prose() -> String {
            let parts = ["a", "é", "😀", "\\\"", "\\\\", "\\n", "\\u00e9", "[", "]", "{", "}", ",", ":", " ",
                         "Response A", "Response B ", "(Response C)", "\\ud83d\\ude00", "```"]
            return "\"" + (0..<Int(generator.next() % 6)).map { _ in pick(parts) }.joined() + "\""
        }
        func model() -> String { "\"" + pick(labels.labels + [panel[0]]) + "\"" }
        func extra() -> String { pick(["", #", "confidence": 0.75"#, #", "n": -12"#, #", "ok": true, "none": null"#, #", "tags": ["x", {"y": 1e3}]"#]) }
        func item(_ field: String) -> String {
            switch field {
            case "contradictions":
                let stances = (0..<1 + Int(generator.next() % 3)).map { _ in #"{"model": \#(model()), "stance": \#(prose())\#(extra())}"# }
                return #"{"topic": \#(prose()), "stances": [\#(stances.joined(separator: ", "))]\#(extra())}"#
            case "partial_coverage":
                return #"{"models": [\#((0..<Int(generator.next() % 3)).map { _ in model() }.joined(separator: ","))], "point": \#(prose())\#(extra())}"#
            case "unique_insights":
                return #"{"model": \#(model()), "insight": \#(prose())\#(extra())}"#
            default:
                return prose()
            }
        }
        var members = JudgeAnalysis.fields.map { field in
            (key: field, value: "[" + (0..<Int(generator.next() % 4)).map { _ in item(field) }.joined(separator: pick([",", " , ", ",\n  "])) + "]")
        }
        if generator.next() % 3 == 0 { members.append((key: "summary", value: pick([prose(), "[1, 2]", #"{"consensus": ["nested"]}"#]))) }
        return members.shuffled(using: &generator)
    }

    static func object(_ members: [(key: String, value: String)], _ generator: inout SeededGenerator) -> String {
        let pretty = generator.next() % 2 == 0
        return "{" + (pretty ? "\n  " : "") + members.map { "\"\($0.key)\": \($0.value)" }.joined(separator: pretty ? ",\n  " : ",") + (pretty ? "\n" : "") + "}"
    }

    /// Around the object: the wrappers `assembled` takes (first) and those it must leave to `parse`.
    /// (CRLF fences included: review 48 Fusion #5, `parse` refused them.)
    static let cleanWrappers = ["%@", "  \n%@\n", "```json\n%@\n```", "```\n%@\n```\n", "\t```json  \n\n%@ ``` \n", "```json\r\n%@\r\n```"]
    static let otherWrappers = ["Here it is: %@", "%@ Done.", "```js\ron\n%@\n```", "```json\n%@", "%@\n```", "\u{00A0}%@",
                                "%@\u{2028}", "```json\n%@\n```\n```", "````\n%@\n````", "```json %@\n```", "%@ {}", "%@}"]

    @Test(arguments: 0..<400)
    func assembledIsWhatParsingGives(seed: Int) {
        var generator = SeededGenerator(seed: UInt64(seed) &* 104_729)
        let labels = NeutralLabels(models: Self.panel, neutral: generator.next() % 4 != 0, seed: generator.next())
        var members = Self.randomAnalysis(&generator, labels: labels)
        // Half are left whole; the rest are broken in one of the ways a judge breaks them.
        let mutation = generator.next() % 2 == 0 ? -1 : Int(generator.next() % 7)
        switch mutation {
        case 0: members.append(members[Int(generator.next() % UInt64(members.count))])  // a key twice
        case 1: members.remove(at: Int(generator.next() % UInt64(members.count)))  // a key missing
        case 2: members[0].value = #""not an array""#
        case 3: members[0].value = "[" + #"{"model": "Response Q", "insight": "x", "topic": "t", "stances": [], "models": ["nobody"], "point": "p"}"# + "]"
        case 4: members[0].value = "[42]"
        case 5: members[0].value = "[\"a\" \"b\"]"  // broken syntax
        default: break
        }
        var text = Self.object(members, &generator)
        if mutation == 6 { text = String(decoding: text.utf8.prefix(Int(generator.next() % UInt64(text.utf8.count))), as: UTF8.self) }
        let clean = generator.next() % 2 == 0
        let wrapper = clean ? Self.cleanWrappers[Int(generator.next() % UInt64(Self.cleanWrappers.count))]
                            : Self.otherWrappers[Int(generator.next() % UInt64(Self.otherWrappers.count))]
        let reply = wrapper.replacingOccurrences(of: "%@", with: text)

        let parsed = JudgeAnalysis.parse(reply, panel: Set(Self.panel), labels: labels)
        let assembled = Self.assemble(reply, labels: labels, generator: &generator)
        if let assembled {
            #expect(parsed == .success(assembled), "\(reply)")
        }
        if mutation == -1 && clean {
            // Whole and clean: the fast path is taken (and, by the check above, agrees).
            #expect(assembled != nil, "\(reply)")
        }
    }

    @Test func aReplyWithTheObjectTwiceIsLeftToParse() {
        var generator = SeededGenerator(seed: 1)
        let labels = NeutralLabels(models: Self.panel, neutral: true, seed: nil)
        let analysis = #"{"consensus": [], "contradictions": [], "partial_coverage": [], "unique_insights": [], "blind_spots": []}"#
        #expect(Self.assemble(analysis, labels: labels, generator: &generator) != nil)
        #expect(Self.assemble(analysis + "\n" + analysis, labels: labels, generator: &generator) == nil)
        #expect(JudgeAnalysis.parse(analysis + "\n" + analysis, panel: Set(Self.panel), labels: labels)
                == .failure(JudgeFailure(.notValidJSON, "the reply is not a JSON object")))
    }
}
