import GatewayCore
import PropertyBased
import Testing

/// `JSONView` reads members without building a tree; `JSONValue.parse` is the reference: the
/// same value for every member it finds, over documents with duplicate keys, keys spelled with
/// escapes, strings holding quotes and brackets, whitespace everywhere, and wrong types.
@Suite struct JSONViewTests {
    static let keys = [#""content""#, #""cont\u0065nt""#, #""delta""#, #""\u0064elta""#, #""choices""#, #""x""#, #""""#,
                       #""conten""#, #""contents""#, #""é""#, #""\u212Aey""#, #""Key""#]
    static let leaves = [#""text""#, #""a\"b}]""#, #""\\""#, #""{\"content\":1}""#, "0", "-0.5", "1e999", "12345678901234567890",
                         "true", "false", "null", "[]", "{}", #"[1,"]",{}]"#, #""\ud83d\ude00""#]
    static let spaces = ["", " ", "\n", "\t ", "\r\n"]

    /// `{ key : value , ... }` with `space` around every token.
    static func object(_ members: [(String, String)], _ space: String) -> String {
        "{" + space + members.map { "\($0.0)\(space):\(space)\($0.1)" }.joined(separator: space + "," + space) + space + "}"
    }

    static let member = zip(Gen.element(of: keys), Gen.element(of: leaves)).map { ($0 ?? #""x""#, $1 ?? "null") }
    static let inner = zip(member.array(of: 0...5), Gen.element(of: spaces)).map { object($0, $1 ?? "") }
    static let value = zip(Gen.int(in: 0...3), Gen.element(of: leaves), inner, inner).map { kind, leaf, first, second -> String in
        switch kind {
        case 0: leaf ?? "null"
        case 1: first
        case 2: "[" + first + "," + second + "]"
        default: "[]"
        }
    }
    static let document = zip(zip(Gen.element(of: keys), value).array(of: 0...6), Gen.element(of: spaces))
        .map { members, space in " " + object(members.map { ($0 ?? #""x""#, $1) }, space ?? "") + "\n" }

    @Test func membersReadAsParseReadsThem() async throws {
        await propertyCheck(count: 1500, input: Self.document) { text in
            let bytes = Array(text.utf8)
            guard let parsed = try? JSONValue.parse(bytes) else {
                Issue.record("the generator made invalid JSON: \(text)")
                return
            }
            bytes.withUnsafeBytes { buffer in
                guard let view = JSONView(validating: buffer) else {
                    Issue.record("not viewable: \(text)")
                    return
                }
                #expect(view.value(view.root) == parsed)
                let content = view.member("content", in: view.root)
                #expect(content.map(view.value) == parsed["content"], "\(text)")
                #expect(view.member("contents", in: view.root).map(view.value) == parsed["contents"], "\(text)")
                #expect(view.member("Key", in: view.root).map(view.value) == parsed["Key"], "\(text)")
                let delta = view.member("delta", in: view.root)
                #expect(delta.flatMap { view.member("content", in: $0) }.map(view.value) == parsed["delta"]?["content"], "\(text)")
                let choices = view.member("choices", in: view.root)
                let first = choices.flatMap(view.firstElement)
                #expect(first.map(view.value) == parsed["choices"]?.arrayValue?.first, "\(text)")
                #expect(first.flatMap { view.member("x", in: $0) }.map(view.value) == parsed["choices"]?.arrayValue?.first?["x"], "\(text)")
                // Every element, walked one after another (review 52A #8 reads choice 0 wherever it is).
                var elements: [JSONValue] = []
                var element = first
                while let current = element {
                    elements.append(view.value(current))
                    element = view.element(after: current)
                }
                #expect(elements == (parsed["choices"]?.arrayValue ?? []), "\(text)")
                #expect(content.flatMap(view.string) == parsed["content"]?.stringValue)
                #expect(content.map(view.isNull) == parsed["content"].map { $0 == .null })
            }
        }
    }

    @Test func onlyValidDocumentsAreViewed() {
        for text in ["", " ", "{", #"{"a":}"#, #"{"a":1,}"#, "[1 2]", #""unterminated"#, "nul", "{} {}"] {
            Array(text.utf8).withUnsafeBytes { #expect(JSONView(validating: $0) == nil, "\(text)") }
        }
        Array(#" [ "a" , {"b":2} ] "#.utf8).withUnsafeBytes { buffer in
            let view = JSONView(validating: buffer)
            #expect(view.flatMap { $0.member("b", in: $0.root) } == nil)  // not an object
            #expect(view.flatMap { $0.firstElement(in: $0.root).map($0.value) } == .string("a"))
        }
    }
}
