import Fusion
import GatewayCore
import Providers
import Testing

/// A participant's tool loop without sockets: turns, results, the step cap.
@Suite struct ToolLoopTests {
    let tools = ToolLoop.webToolDefinitions(search: true, fetch: true)

    /// A turn calling web_search, its arguments in fragments.
    func searchTurn(_ loop: inout ToolLoop, id: String = "c1") throws {
        loop.received(.text("Let me look. "))
        loop.received(.toolCall(ToolCallFragment(index: 0, id: id.isEmpty ? nil : id, name: "web_search", arguments: #"{"qu"#)))
        loop.received(.toolCall(ToolCallFragment(index: 0, arguments: #"ery":"x"}"#)))
    }

    func nextRequest(_ loop: ToolLoop) -> ModelRequest { loop.request(ModelRequest(model: "m", messages: [])) }

    @Test func toolCallsAreRunAndTheirResultsJoinTheConversation() throws {
        var loop = ToolLoop(messages: [ModelMessage(role: .user, text: "Q")], tools: tools, maxSteps: 3)
        #expect(nextRequest(loop).toolChoice == .auto)
        #expect(nextRequest(loop).tools.count == 2)
        #expect(nextRequest(loop).messages == loop.messages)
        try searchTurn(&loop)
        guard case .callTools(let calls) = loop.endTurn() else { Issue.record("expected tool calls"); return }
        #expect(calls == [ToolCall(index: 0, id: "c1", name: "web_search", arguments: #"{"query":"x"}"#)])
        loop.complete(results: [#"{"results":[]}"#])
        #expect(loop.steps == 1 && loop.callCount == 1)
        let messages = loop.messages
        #expect(messages.count == 3)
        #expect(messages[1].role == .assistant && messages[1].text == "Let me look. ")
        #expect(messages[1].toolCalls.first?.id == "c1")
        #expect(messages[2].role == .tool && messages[2].toolCallID == "c1")
        #expect(messages[2].text == #"{"results":[]}"#)
        // The next turn answers in text.
        loop.received(.text("Answer."))
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
        #expect(nextRequest(loop).toolChoice == ToolChoice.none)
        #expect(!nextRequest(loop).tools.isEmpty, "still declared: the history holds tool messages")
        #expect(loop.messages.last?.role == .user)
        #expect(loop.messages.last?.text.contains("used all 2 of your tool-calling steps") == true)
        // A model calling tools anyway is taken as answering (its calls ignored).
        try searchTurn(&loop)
        #expect(loop.endTurn() == .answered)
        #expect(loop.steps == 2 && loop.callCount == 2)
    }

    @Test func withoutToolsNothingIsOfferedAndCallsAreIgnored() throws {
        var loop = ToolLoop(messages: [], tools: [], maxSteps: 8)
        #expect(nextRequest(loop).tools.isEmpty && nextRequest(loop).toolChoice == nil)
        try searchTurn(&loop)
        #expect(loop.endTurn() == .answered)
        #expect(ToolLoop.webToolDefinitions(search: false, fetch: true).compactMap(\.functionName) == ["web_fetch"])
    }

    @Test func parallelCallsKeepTheirOrder() throws {
        var loop = ToolLoop(messages: [], tools: tools, maxSteps: 8)
        loop.received(.toolCall(ToolCallFragment(index: 0, id: "a", name: "web_fetch", arguments: "{}")))
        loop.received(.toolCall(ToolCallFragment(index: 1, id: "b", name: "web_search", arguments: "{}")))
        guard case .callTools(let calls) = loop.endTurn() else { Issue.record("expected tool calls"); return }
        #expect(calls.map(\.id) == ["a", "b"])
        loop.complete(results: ["ra", "rb"])
        #expect(loop.messages.suffix(2).map(\.toolCallID) == ["a", "b"])
        #expect(loop.callCount == 2 && loop.steps == 1)
    }
}
