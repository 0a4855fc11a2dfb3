import GatewayCore
import Testing

/// The client's objects written as the client wrote them, where a translation left them as
/// they were, and only there.
@Suite struct VerbatimJSONTests {
    static let body = Array(#"{"model":"m","tools":[{"type":"function","parameters":{"type":"object","properties":{"z":{"type":"string"},"a":{"type":"integer","maximum":1.50}}}}],"messages":[{"role":"user","content":"x"}]}"#.utf8)

    @Test func anUnchangedObjectIsWrittenAsSentAChangedOneSorted() throws {
        let verbatim = VerbatimJSON(objectsIn: Self.body, under: ["tools"])
        let parameters = try JSONValue.parse(Array(#"{"type":"object","properties":{"z":{"type":"string"},"a":{"type":"integer","maximum":1.50}}}"#.utf8))
        #expect(String(decoding: parameters.serialized(verbatim: verbatim), as: UTF8.self)
                == #"{"type":"object","properties":{"z":{"type":"string"},"a":{"type":"integer","maximum":1.50}}}"#)
        // Wrapped in a new object (a translation's shape), the unchanged inside is still as sent.
        let wrapped = JSONValue.object(["input_schema": parameters, "name": .string("f")])
        #expect(String(decoding: wrapped.serialized(verbatim: verbatim), as: UTF8.self)
                == #"{"input_schema":{"type":"object","properties":{"z":{"type":"string"},"a":{"type":"integer","maximum":1.50}}},"name":"f"}"#)
        // Changed: sorted, as without the client's bytes (the unchanged `properties` inside kept).
        guard case .object(var changed) = parameters else { return }
        changed["additionalProperties"] = .bool(false)
        #expect(String(decoding: JSONValue.object(changed).serialized(verbatim: verbatim), as: UTF8.self)
                == #"{"additionalProperties":false,"properties":{"z":{"type":"string"},"a":{"type":"integer","maximum":1.50}},"type":"object"}"#)
        // Members outside the keys asked for are not collected.
        let message = JSONValue.object(["role": .string("user"), "content": .string("x")])
        #expect(VerbatimJSON(objectsIn: Self.body, under: ["tools"]).bytes(for: message) == nil)
        #expect(VerbatimJSON(objectsIn: Array("not json".utf8), under: ["tools"]).isEmpty)
    }
}
