import GatewayCore
import Testing

/// The client's objects written as the client wrote them, where a translation left them as
/// they were, and only there: within the members that carry schemas, a few levels deep.
@Suite struct VerbatimJSONTests {
    static let body = Array(#"{"model":"m","tools":[{"type":"function","parameters":{"type":"object","properties":{"z":{"type":"string"},"a":{"type":"integer","maximum":1.50}}}}],"messages":[{"role":"user","content":"x"}]}"#.utf8)

    static func written(_ value: JSONValue, _ verbatim: VerbatimJSON) -> String {
        var out: [UInt8] = []
        JSONWriting.appendValue(value, verbatim: verbatim, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    @Test func anUnchangedObjectIsWrittenAsSentAChangedOneSorted() throws {
        let verbatim = VerbatimJSON(objectsIn: Self.body, under: ["tools"])
        let parameters = try JSONValue.parse(Array(#"{"type":"object","properties":{"z":{"type":"string"},"a":{"type":"integer","maximum":1.50}}}"#.utf8))
        #expect(Self.written(parameters, verbatim) == #"{"type":"object","properties":{"z":{"type":"string"},"a":{"type":"integer","maximum":1.50}}}"#)
        // Wrapped in a new object (a translation's shape), the unchanged inside is still as sent.
        let wrapped = JSONValue.object(["input_schema": parameters, "name": .string("f")])
        #expect(Self.written(wrapped, verbatim) == #"{"input_schema":{"type":"object","properties":{"z":{"type":"string"},"a":{"type":"integer","maximum":1.50}}},"name":"f"}"#)
        // Changed: sorted, as without the client's bytes (the unchanged `properties` inside kept).
        guard case .object(var changed) = parameters else { return }
        changed["additionalProperties"] = .bool(false)
        #expect(Self.written(.object(changed), verbatim)
                == #"{"additionalProperties":false,"properties":{"z":{"type":"string"},"a":{"type":"integer","maximum":1.50}},"type":"object"}"#)
        // Members outside the keys asked for are not collected.
        let message = JSONValue.object(["role": .string("user"), "content": .string("x")])
        #expect(VerbatimJSON(objectsIn: Self.body, under: ["tools"]).bytes(for: message) == nil)
        #expect(VerbatimJSON(objectsIn: Array("not json".utf8), under: ["tools"]).isEmpty)
    }

    /// Only the schema-bearing members of a body get the client's bytes: a message equal to a
    /// schema's object (U+212B and U+00C5 are `==` in Swift) keeps its own (review 76 #2).
    @Test func onlyTheNamedMembersAreLookedUp() throws {
        let client = Array(#"{"tools":[{"parameters":{"type":"text","text":"\u212b"}}]}"#.utf8)
        let verbatim = VerbatimJSON(objectsIn: client, under: ["tools"])
        let body = JSONValue.object(["messages": .array([.object(["type": .string("text"), "text": .string("\u{00C5}")])]),
                                     "tools": .array([.object(["type": .string("text"), "text": .string("\u{212B}")])])])
        let out = String(decoding: body.serialized(verbatim: verbatim, in: ["tools"]), as: UTF8.self)
        #expect(out == #"{"messages":[{"text":"Å","type":"text"}],"tools":[{"type":"text","text":"\u212b"}]}"#, "\(out)")
    }

    /// Deeper than `maxDepth` into the members nothing is collected or looked up: the work is
    /// linear in the body (review 76 #1: a crafted request held its loop for 30 s).
    @Test func deepObjectsAreNeitherCollectedNorLookedUp() throws {
        var nested = #"{"b":1,"a":2}"#
        for _ in 0..<8 { nested = #"{"y":\#(nested),"x":0}"# }
        let client = Array(#"{"tools":[\#(nested)]}"#.utf8)
        let verbatim = VerbatimJSON(objectsIn: client, under: ["tools"])
        #expect(verbatim.bytes(for: try JSONValue.parse(Array(#"{"b":1,"a":2}"#.utf8))) == nil, "too deep to be collected")
    }
}
