import GatewayCore
import Providers
import Testing

/// OpenRouter's `reasoning_details` in Anthropic's format, both ways (review 52A #1): Claude's
/// signed thinking through OpenRouter reaches a Responses or Messages client as it does from
/// Anthropic's own API, and goes back on the assistant turn that carried it.
@Suite struct OpenRouterReasoningTests {
    static func streamed(_ chunks: [String]) throws -> [ModelEvent] {
        var decoder = OpenAICompatibleProvider().streamDecoder(maxEventBytes: 1 << 16, redactor: .none)
        var events: [ModelEvent] = []
        let body = chunks.map { "data: \($0)\n\n" }.joined() + "data: [DONE]\n\n"
        _ = try Array(body.utf8).withUnsafeBytes { try decoder.decode($0) { events.append($0) } }
        return events
    }

    @Test func signedThinkingIsReadFromAStream() throws {
        let format = #""format":"anthropic-claude-v1""#
        let events = try Self.streamed([
            #"{"choices":[{"index":0,"delta":{"reasoning":"hm","reasoning_details":[{"type":"reasoning.text","text":"hm",\#(format),"index":0}]}}]}"#,
            #"{"choices":[{"index":0,"delta":{"reasoning_details":[{"type":"reasoning.text","signature":"sig",\#(format),"index":0}]}}]}"#,
            #"{"choices":[{"index":0,"delta":{"reasoning_details":[{"type":"reasoning.encrypted","data":"xx",\#(format),"index":1}]}}]}"#,
            // Gemini's thought signatures have no neutral form yet: left out, not misread.
            #"{"choices":[{"index":0,"delta":{"reasoning_details":[{"type":"reasoning.encrypted","data":"g","format":"google-gemini-v1","id":"c1"}]}}]}"#,
            #"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}"#,
        ])
        #expect(events.filter { if case .finish = $0 { false } else { true } }
                == [.reasoning("hm"), .reasoningSignature("sig"), .redactedReasoning("xx"), .text("Hi")], "\(events)")
        // The text alone in the details (no `reasoning` beside it) is the text.
        let alone = try Self.streamed([
            #"{"choices":[{"index":0,"delta":{"reasoning_details":[{"type":"reasoning.text","text":"t",\#(format),"signature":"s"}]}}]}"#,
        ])
        #expect(alone.prefix(2) == [.reasoning("t"), .reasoningSignature("s")], "\(alone)")
        // The text streamed as `reasoning`, then repeated whole beside the signature (as this
        // gateway's own chat output sends it): read once.
        let repeated = try Self.streamed([
            #"{"choices":[{"index":0,"delta":{"reasoning":"ab"}}]}"#,
            #"{"choices":[{"index":0,"delta":{"reasoning":"c"}}]}"#,
            #"{"choices":[{"index":0,"delta":{"reasoning_details":[{"type":"reasoning.text","text":"abc","signature":"s",\#(format),"index":0}]}}]}"#,
            #"{"choices":[{"index":0,"delta":{"reasoning_details":[{"type":"reasoning.text","text":"d","signature":"s2",\#(format),"index":1}]}}]}"#,
        ])
        #expect(repeated == [.reasoning("ab"), .reasoning("c"), .reasoningSignature("s"), .reasoning("d"), .reasoningSignature("s2")], "\(repeated)")
    }

    @Test func aWholeMessagesBlocksKeepTheirOwnText() throws {
        let body = #"""
            {"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"Hi","reasoning":"AB",
             "reasoning_details":[{"type":"reasoning.text","text":"A","signature":"s1","format":"anthropic-claude-v1","index":0},
                                  {"type":"reasoning.text","text":"B","signature":"s2","format":"anthropic-claude-v1","index":1}]}}]}
            """#
        let events = try OpenAICompatibleProvider().decodeResponse(Array(body.utf8), redactor: .none)
        #expect(Array(events.prefix(5)) == [.reasoning("A"), .reasoningSignature("s1"), .reasoning("B"), .reasoningSignature("s2"), .text("Hi")],
                "\(events)")
    }

    @Test func anAssistantTurnsBlocksGoBackToOpenRouterOnly() throws {
        var turn = ModelMessage(role: .assistant, content: [.text("")])
        turn.reasoning = [.thinking(text: "hm", signature: "sig"), .redacted(data: "xx")]
        turn.toolCalls = [ToolCall(index: 0, id: "call_1", name: "lookup", arguments: "{}")]
        let request = ModelRequest(model: "anthropic/claude", messages: [ModelMessage(role: .user, content: [.text("Q")]), turn,
                                                                      ModelMessage(role: .tool, content: [.text("42")], toolCallID: "call_1")])
        let openRouter = try JSONValue.parse(OpenAIRequestEncoder.body(request, reasoningField: .object))
        let details = openRouter["messages"]?.arrayValue?[1]["reasoning_details"]
        #expect(details == .array([ReasoningDetail.json(.thinking(text: "hm", signature: "sig"), index: 0),
                                   ReasoningDetail.json(.redacted(data: "xx"), index: 1)]), "\(openRouter)")
        #expect(OpenAIRequestEncoder.json(request, reasoningField: .object) == openRouter, "the tree and the bytes agree")
        // OpenAI's API refuses a message member it does not know.
        let openAI = try JSONValue.parse(OpenAIRequestEncoder.body(request, reasoningField: .effort))
        #expect(openAI["messages"]?.arrayValue?[1]["reasoning_details"] == nil)
        // What went out comes back as the same blocks (a chat client's round trip reads them so).
        #expect(ReasoningDetail.blocks(details) == turn.reasoning)
    }
}
