import GatewayCore
import Testing

/// A request's arrays and objects are bounded (`too_many_elements`, naming where): what one
/// request can make the gateway build, convert and send on is bounded by more than its bytes.
@Suite struct RequestSizeCapTests {
    func body(_ elements: Int, _ element: String) -> [UInt8] {
        Array(("{\"model\":\"m\",\"messages\":[" + Array(repeating: element, count: elements).joined(separator: ",") + "]}").utf8)
    }

    /// A refusal echoes a client's key cut short, not whole (review 71B #6: a repeated 4 MiB key
    /// came back twice, in the message and in `param`).
    @Test func aRefusalEchoesAHugeKeyCutShort() throws {
        let key = String(repeating: "A", count: 1 << 20)
        for body in [#"{"\#(key)":1,"\#(key)":2}"#, #"{"m":{"\#(key)":1,"\#(key)":2}}"#, #"{"\#(key)":1,"\#(key.lowercased())":2}"#] {
            do {
                _ = try JSONValue.parseRequest(Array(body.utf8))
                Issue.record("no refusal")
            } catch {
                #expect(error.code == "duplicate_key" && error.message.utf8.count < 1_000 && (error.param?.utf8.count ?? 0) < 600, "\(error.message.prefix(200))")
            }
        }
    }

    @Test func tenThousandElementsPassOneMoreIsRefusedNamingWhere() throws {
        let message = #"{"role":"user","content":"hi"}"#
        _ = try JSONValue.parseRequest(body(10_000, message))
        do {
            _ = try JSONValue.parseRequest(body(10_001, message))
            Issue.record("no refusal")
        } catch {
            #expect(error.status == 400 && error.code == "too_many_elements" && error.param == "messages", "\(error)")
        }
        // Anywhere: content parts, an object's members, the top level.
        let parts = "[" + Array(repeating: #"{"type":"text","text":"x"}"#, count: 10_001).joined(separator: ",") + "]"
        #expect(throws: APIError.self) { try JSONValue.parseRequest(Array(#"{"messages":[{"role":"user","content":\#(parts)}]}"#.utf8)) }
        let members = "{" + (0...10_000).map { "\"k\($0)\":1" }.joined(separator: ",") + "}"
        do {
            _ = try JSONValue.parseRequest(Array(#"{"metadata":\#(members)}"#.utf8))
            Issue.record("no refusal")
        } catch {
            #expect(error.param == "metadata")
        }
        // Upstream bytes (lenient) are not capped: an upstream's answer is bounded by its own limits.
        #expect((try? JSONValue.parse(body(10_001, message))) != nil)
    }
}
