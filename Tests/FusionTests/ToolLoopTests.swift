import Fusion
import GatewayCore
import Testing

/// A participant's tool loop without sockets: turns, results, the step cap.
@Suite struct ToolLoopTests {
    let tools = ToolLoop.webToolDefinitions(search: true, fetch: true)

    func chunk(_ json: String) throws -> ChunkDelta { ChunkDelta(chunk: try JSONValue.parse(Array(json.utf8))) }

    /// A turn calling web_search, its arguments in fragments.
    func searchTurn(_ loop: inout ToolLoop, id: String = "c1") throws {
        loop.received(try chunk(#"{"choices":[{"delta":{"content":"Let me look. "}}]}"#))
        loop.received(try chunk(#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"\#(id)","type":"function","function":{"name":"web_search","arguments":"{\"qu"}}]}}]}"#))
        loop.received(try chunk(#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ery\":\"x\"}"}}]}}]}"#))
    }

    @Test func toolCallsAreRunAndTheirResultsJoinTheConversation() throws {
        var loop = ToolLoop(messages: [.object(["role": .string("user"), "content": .string("Q")])], tools: tools, maxSteps: 3)
        #expect(loop.requestFields["tool_choice"] == .string("auto"))
        #expect(loop.requestFields["tools"]?.arrayValue?.count == 2)
        try searchTurn(&loop)
        guard case .callTools(let calls) = loop.endTurn() else { Issue.record("expected tool calls"); return }
        #expect(calls == [ToolCall(index: 0, id: "c1", name: "web_search", arguments: #"{"query":"x"}"#)])
        loop.complete(results: [#"{"results":[]}"#])
        #expect(loop.steps == 1 && loop.callCount == 1)
        let messages = loop.messages
        #expect(messages.count == 3)
        #expect(messages[1]["role"] == .string("assistant") && messages[1]["content"] == .string("Let me look. "))
        #expect(messages[1]["tool_calls"]?.arrayValue?.first?["id"] == .string("c1"))
        #expect(messages[2]["role"] == .string("tool") && messages[2]["tool_call_id"] == .string("c1"))
        #expect(messages[2]["content"] == .string(#"{"results":[]}"#))
        // The next turn answers in text.
        loop.received(try chunk(#"{"choices":[{"delta":{"content":"Answer."}}]}"#))
        #expect(loop.endTurn() == .answered)
        #expect(loop.messages.count == 3, "an answer is not added")
    }

    @Test func afterTheCapToolsAreRefusedAndTheModelMustAnswer() throws {
        var loop = ToolLoop(messages: [], tools: tools, maxSteps: 2)
        for step in 0..<2 {
            try searchTurn(&loop, id: "")
            guard case .callTools(let calls) = loop.endTurn() else { Issue.record("expected tool calls"); return }
            #expect(calls.first?.id == "call_\(step)_0", "ids made up when a server omits them")
            loop.complete(results: ["r"])
        }
        #expect(loop.mustAnswer)
        #expect(loop.requestFields["tool_choice"] == .string("none"))
        #expect(loop.requestFields["tools"] != nil, "still declared: the history holds tool messages")
        #expect(loop.messages.last?["role"] == .string("user"))
        #expect(loop.messages.last?["content"]?.stringValue?.contains("used all 2 of your tool-calling steps") == true)
        // A model calling tools anyway is taken as answering (its calls ignored).
        try searchTurn(&loop)
        #expect(loop.endTurn() == .answered)
        #expect(loop.steps == 2 && loop.callCount == 2)
    }

    @Test func withoutToolsNothingIsOfferedAndCallsAreIgnored() throws {
        var loop = ToolLoop(messages: [], tools: [], maxSteps: 8)
        #expect(loop.requestFields.isEmpty)
        try searchTurn(&loop)
        #expect(loop.endTurn() == .answered)
        #expect(ToolLoop.webToolDefinitions(search: false, fetch: true).compactMap { $0["function"]?["name"]?.stringValue } == ["web_fetch"])
    }

    @Test func parallelCallsKeepTheirOrder() throws {
        var loop = ToolLoop(messages: [], tools: tools, maxSteps: 8)
        loop.received(try chunk(#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"web_fetch","arguments":"{}"}},{"index":1,"id":"b","function":{"name":"web_search","arguments":"{}"}}]}}]}"#))
        guard case .callTools(let calls) = loop.endTurn() else { Issue.record("expected tool calls"); return }
        #expect(calls.map(\.id) == ["a", "b"])
        loop.complete(results: ["ra", "rb"])
        #expect(loop.messages.suffix(2).map { $0["tool_call_id"]?.stringValue } == ["a", "b"])
        #expect(loop.callCount == 2 && loop.steps == 1)
    }
}
