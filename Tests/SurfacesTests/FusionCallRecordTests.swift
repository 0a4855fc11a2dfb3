import Fusion
import GatewayCore
import PropertyBased
import Providers
import Surfaces
import Testing

/// A parallel turn (the caller's tool and fusion in one turn) through a client and back: the
/// turn is rendered with the fusion call's record in `reasoning_details`, and a request carrying
/// the record has the fusion call and its result restored in that turn.
@Suite struct FusionCallRecordTests {
    static let result = #"{"status":"ok","panel":{"requested":2,"answered":2,"degraded":false}}"#
    static let answered = FusionSessionMachine.ServerToolCall(
        call: ToolCall(index: 1, id: "call_f", name: "fusion", arguments: #"{"question":"Q?"}"#), result: result)
    static let callerCall = ToolCallFragment(index: 0, id: "call_l", name: "lookup", arguments: #"{"q":"x"}"#)

    func render(stream: Bool) -> (FusionChatRenderer, [UInt8]) {
        var renderer = FusionChatRenderer(id: "gen-1", model: "p/outer", created: 1, stream: stream, includeUsage: false, namedEvents: false)
        var out: [UInt8] = []
        renderer.render(.answer(.toolCall(Self.callerCall)), sources: SourceList(), at: 1, into: &out)
        renderer.render(.progress(.toolCalled(arguments: "{}")), sources: SourceList(), at: 2, into: &out)
        renderer.render(.serverToolCalls([Self.answered]), sources: SourceList(), at: 3, into: &out)
        renderer.render(.answer(.finish(.toolCalls)), sources: SourceList(), at: 3, into: &out)
        return (renderer, out)
    }

    func record(_ json: JSONValue?) {
        #expect(json?["type"] == .string("reasoning.server_tool_call") && json?["tool_name"] == .string("openrouter:fusion"))
        #expect(json?["tool_call_id"] == .string("call_f") && json?["arguments"] == .string(#"{"question":"Q?"}"#))
        #expect(json?["result"] == .string(Self.result) && json?["index"] == .int(0))
    }

    @Test func aStreamedParallelTurnCarriesTheRecordBeforeItsFinish() throws {
        var (renderer, out) = render(stream: true)
        renderer.renderEnd(usage: .null, sources: SourceList(), into: &out)
        var decoder = SSEDecoder()
        var chunks: [JSONValue] = []
        try decoder.feed(out) { event in
            if event.dataString != "[DONE]" { chunks.append(try JSONValue.parse(Array(event.data))) }
        }
        let deltas = chunks.compactMap { $0["choices"]?.arrayValue?.first }
        #expect(deltas.first?["delta"]?["tool_calls"]?.arrayValue?.first?["id"] == .string("call_l"))
        let withRecord = try #require(deltas.firstIndex { $0["delta"]?["reasoning_details"] != nil })
        record(deltas[withRecord]["delta"]?["reasoning_details"]?.arrayValue?.first)
        #expect(deltas.last?["finish_reason"] == .string("tool_calls") && withRecord == deltas.count - 2)
        #expect(chunks.allSatisfy { $0["id"] == .string("gen-1") && $0["model"] == .string("p/outer") })
    }

    @Test func aWholeParallelTurnCarriesTheRecordOnItsMessage() throws {
        let (renderer, _) = render(stream: false)
        let body = try JSONValue.parse(renderer.completion(usage: .null, fusion: nil, finishReason: .toolCalls, sources: SourceList()))
        let choice = body["choices"]?.arrayValue?.first
        #expect(choice?["finish_reason"] == .string("tool_calls"))
        #expect(choice?["message"]?["tool_calls"]?.arrayValue?.map { $0["id"] } == [.string("call_l")])
        record(choice?["message"]?["reasoning_details"]?.arrayValue?.first)
    }

    /// The message as the client got it, sent back with its tool result.
    static let followUp = #"""
        {"model":"p/outer","messages":[{"role":"user","content":"Q?"},
         {"role":"assistant","content":null,"tool_calls":[{"id":"call_l","type":"function","function":{"name":"lookup","arguments":"{}"}}],
          "reasoning_details":[{"type":"reasoning.text","text":"kept for OpenRouter"},
            {"type":"reasoning.server_tool_call","tool_name":"openrouter:fusion","tool_call_id":"call_f","arguments":"{\"question\":\"Q?\"}","result":"R","index":1}]},
         {"role":"tool","tool_call_id":"call_l","content":"42"}]}
        """#

    @Test func aRecordSentBackIsRestoredAsTheFusionCallAndItsResult() throws {
        let chat = try ChatRequest(body: Array(Self.followUp.utf8))
        #expect(chat.carriesFusionRecords)
        let messages = chat.modelRequest().messages
        #expect(messages.map(\.role) == [.user, .assistant, .tool, .tool])
        #expect(messages[1].toolCalls.map(\.id) == ["call_l", "call_f"] && messages[1].toolCalls.map(\.name) == ["lookup", "fusion"])
        #expect(messages[1].toolCalls[1].arguments == #"{"question":"Q?"}"#)
        #expect(messages[2].toolCallID == "call_f" && messages[2].text == "R", "the fusion result right after its turn")
        #expect(messages[3].toolCallID == "call_l" && messages[3].text == "42")
        // Every call of the turn is answered: what an upstream requires.
        let answeredIDs = Set(messages.compactMap(\.toolCallID))
        #expect(messages[1].toolCalls.allSatisfy { answeredIDs.contains($0.id) })
        // The upstream gets the restored turn in OpenAI's form (the content never null).
        let upstream = OpenAIRequestEncoder.json(chat.modelRequest())
        let turn = upstream["messages"]?.arrayValue?[1]
        #expect(turn?["content"] == .string("") && turn?["tool_calls"]?.arrayValue?.count == 2 && turn?["reasoning_details"] == nil)
    }

    @Test func aRecordThatLostItsIdStillPairsTheCallWithItsResult() throws {
        let body = #"{"model":"m","messages":[{"role":"user","content":"Q"},{"role":"assistant","content":"","reasoning_details":[{"type":"reasoning.server_tool_call","tool_name":"fusion","arguments":"{}","result":"R"}]}]}"#
        let messages = try ChatRequest(body: Array(body.utf8)).modelRequest().messages
        #expect(messages.count == 3 && messages[1].toolCalls.first?.id == messages[2].toolCallID && messages[2].toolCallID != nil)
        // Records of other tools, and on other roles, are not ours.
        let other = #"{"model":"m","messages":[{"role":"user","content":"Q","reasoning_details":[{"type":"reasoning.server_tool_call","tool_name":"openrouter:fusion","arguments":"{}","result":"R"}]},{"role":"assistant","content":"A","reasoning_details":[{"type":"reasoning.server_tool_call","tool_name":"openrouter:web_search","arguments":"{}","result":"R"}]}]}"#
        let plain = try ChatRequest(body: Array(other.utf8))
        #expect(!plain.carriesFusionRecords && plain.modelRequest().messages.count == 2)
    }

    /// A record whose arguments are no JSON object (an outer model wrote broken ones, and a
    /// deliberation ran on its question all the same) restores as a call with `{}`, which every
    /// API takes; the gateway writes it so too (review 59C #3: a 400 on the next turn to Claude,
    /// naming a call the client never sent).
    @Test func aRecordWhoseArgumentsAreNoObjectRestoresAsAnEmptyObject() throws {
        let body = #"{"model":"m","messages":[{"role":"user","content":"Q"},{"role":"assistant","content":"","reasoning_details":[{"type":"reasoning.server_tool_call","tool_name":"fusion","tool_call_id":"f1","arguments":"not json at all","result":"R"}]}]}"#
        let request = try ChatRequest(body: Array(body.utf8)).modelRequest()
        #expect(request.messages[1].toolCalls.map(\.arguments) == ["{}"])
        #expect(throws: Never.self) { try AnthropicProvider().validate(request) }
        let call = FusionSessionMachine.ServerToolCall(call: ToolCall(index: 0, id: "f1", name: "fusion", arguments: "[1]"), result: "R")
        #expect(FusionCallRecord.json(call, index: 0)["arguments"] == .string("{}"))
        let kept = FusionSessionMachine.ServerToolCall(call: ToolCall(index: 0, id: "f1", name: "fusion", arguments: #"{"question":"Q"}"#), result: "R")
        #expect(FusionCallRecord.json(kept, index: 0)["arguments"] == .string(#"{"question":"Q"}"#))
    }

    /// `reasoning_details` entries as a client might send them: records whole, with fields
    /// missing or of the wrong type, repeated ids, other tools', other entry types, junk.
    static let entry = zip(Gen.int(in: 0...9), Gen.element(of: ["call_f", "call_l", "", "x\u{0}y", "🙂"]),
                           Gen.element(of: [#""{}""#, #""R""#, "1", "null", "{}", #""""#])).map { kind, id, value -> String in
        let id = JSONWriting.quoted(id ?? "")
        let value = value ?? "null"
        return switch kind {
        case 0, 1, 2: #"{"type":"reasoning.server_tool_call","tool_name":"openrouter:fusion","tool_call_id":\#(id),"arguments":"{}","result":\#(value)}"#
        case 3: #"{"type":"reasoning.server_tool_call","tool_name":"fusion","arguments":\#(value),"result":"R"}"#
        case 4: #"{"type":"reasoning.server_tool_call","tool_name":"fusion","tool_call_id":\#(value),"arguments":"{}","result":"R"}"#
        case 5: #"{"type":"reasoning.server_tool_call","tool_name":"openrouter:web_search","arguments":"{}","result":"R"}"#
        case 6: #"{"type":"reasoning.text","text":\#(value)}"#
        case 7: value
        default: #"{"type":"reasoning.server_tool_call","tool_name":"openrouter:fusion","tool_call_id":\#(id),"arguments":"{}","result":"R","index":\#(value)}"#
        }
    }.array(of: 0...4)

    @Test func anyRecordsEitherRestoreEveryCallAnsweredOrAreA400NamingTheirField() async {
        await propertyCheck(count: 400, input: Self.entry, Self.entry) { first, second in
            let body = #"{"model":"m","messages":[{"role":"user","content":"Q"},{"role":"assistant","content":"A","reasoning_details":[\#(first.joined(separator: ","))]},{"role":"user","content":"R"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_l","type":"function","function":{"name":"lookup","arguments":"{}"}}],"reasoning_details":[\#(second.joined(separator: ","))]},{"role":"tool","tool_call_id":"call_l","content":"42"}]}"#
            let chat: ChatRequest
            do throws(APIError) {
                chat = try ChatRequest(body: Array(body.utf8))
            } catch {
                #expect(error.status == 400 && error.param?.hasPrefix("messages[") == true && error.param?.contains("reasoning_details") == true,
                        "\(error) for \(body)")
                return
            }
            let messages = chat.modelRequest().messages
            let records = messages.filter { $0.role == .assistant }.flatMap(\.toolCalls).filter { $0.name == "fusion" }
            #expect(chat.carriesFusionRecords == !records.isEmpty)
            // Every call of a turn has its own id; its restored calls are answered right after it.
            for turn in messages where turn.role == .assistant {
                #expect(Set(turn.toolCalls.map(\.id)).count == turn.toolCalls.count, "\(turn)")
            }
            for (position, message) in messages.enumerated() where message.role == .assistant {
                let restored = message.toolCalls.filter { $0.name == "fusion" }
                let following = messages[(position + 1)...].prefix { $0.role == .tool }.prefix(restored.count)
                #expect(following.map(\.toolCallID) == restored.map(\.id), "\(messages)")
            }
        }
    }

    @Test(arguments: [
        (#""reasoning_details":{}"#, "messages[1].reasoning_details"),
        (#""reasoning_details":[{"type":"reasoning.server_tool_call","tool_name":"openrouter:fusion","arguments":"{}"}]"#,
         "messages[1].reasoning_details[0].result"),
        (#""reasoning_details":[{"type":"reasoning.server_tool_call","tool_name":"fusion","arguments":{},"result":"R"}]"#,
         "messages[1].reasoning_details[0].arguments"),
        (#""reasoning_details":[{"type":"reasoning.server_tool_call","tool_name":"fusion","arguments":"{}","result":"R","tool_call_id":""}]"#,
         "messages[1].reasoning_details[0].tool_call_id"),
        (#""tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}],"reasoning_details":[{"type":"reasoning.server_tool_call","tool_name":"fusion","arguments":"{}","result":"R","tool_call_id":"c1"}]"#,
         "messages[1].reasoning_details[0].tool_call_id"),
        (#""reasoning_details":[{"type":"reasoning.server_tool_call","tool_name":"fusion","arguments":"{}","result":"R","tool_call_id":"f"},{"type":"reasoning.server_tool_call","tool_name":"fusion","arguments":"{}","result":"R","tool_call_id":"f"}]"#,
         "messages[1].reasoning_details[1].tool_call_id"),
    ])
    func aRecordThatCannotBeRestoredIsA400NamingTheField(details: String, param: String) {
        let body = #"{"model":"m","messages":[{"role":"user","content":"Q"},{"role":"assistant","content":"A",\#(details)}]}"#
        #expect(throws: APIError.self) { try ChatRequest(body: Array(body.utf8)) }
        do {
            _ = try ChatRequest(body: Array(body.utf8))
        } catch {
            #expect(error.status == 400 && error.param == param, "\(error)")
        }
    }
}

/// The outer model's words before it called fusion and the final answer are one streamed
/// message (review 20 B3): a paragraph break between them, and citations that index the message
/// as the client put it together; Messages breaks the same way.
@Suite struct FusionPreambleTests {
    @Test func theWordsBeforeTheCallAndTheAnswerAreParagraphsOfOneMessage() throws {
        var sources = SourceList()
        sources.add(Source(url: "https://e.example/a", title: "A", content: "a"))
        var renderer = FusionChatRenderer(id: "gen-1", model: "p/outer", created: 1, stream: true, includeUsage: false, namedEvents: false)
        var out: [UInt8] = []
        for output: FusionSessionMachine.Output in [.answer(.text("It is so.")), .finalAnswerStarts(model: "p/outer"),
                                                     .answer(.text("See [a](https://e.example/a).")), .answer(.finish(.stop))] {
            renderer.render(output, sources: sources, at: 1, into: &out)
        }
        var decoder = SSEDecoder()
        var deltas: [JSONValue] = []
        try decoder.feed(out) { event in
            if !event.data.isEmpty, event.dataString != "[DONE]" { deltas.append(try JSONValue.parse(Array(event.data))["choices"]?.arrayValue?.first?["delta"] ?? .null) }
        }
        let text = deltas.compactMap { $0["content"]?.stringValue }.joined()
        #expect(text == "It is so.\n\nSee [a](https://e.example/a).")
        let citations = deltas.compactMap { $0["annotations"]?.arrayValue?.first?["url_citation"] }
        let citation = try #require(citations.first)
        let scalars = Array(text.unicodeScalars)
        let start = Int(citation["start_index"]?.intValue ?? -1), end = Int(citation["end_index"]?.intValue ?? -1)
        #expect(start >= 0 && end <= scalars.count && String(String.UnicodeScalarView(scalars[start..<end])) == "[a](https://e.example/a)", "\(citation)")

        // Not streamed, the chat completion's message is the same text with the same citation.
        var whole = FusionChatRenderer(id: "gen-2", model: "p/outer", created: 1, stream: false, includeUsage: false, namedEvents: false)
        for output: FusionSessionMachine.Output in [.answer(.text("It is so.")), .finalAnswerStarts(model: "p/outer"),
                                                     .answer(.text("See [a](https://e.example/a).")), .answer(.finish(.stop))] {
            var ignored: [UInt8] = []
            whole.render(output, sources: sources, at: 1, into: &ignored)
            #expect(ignored.isEmpty)
        }
        let completion = try JSONValue.parse(whole.completion(usage: .object([:]), fusion: nil, finishReason: .stop, sources: sources))
        let message = completion["choices"]?.arrayValue?.first?["message"]
        #expect(message?["content"] == .string(text), "\(completion)")
        #expect(message?["annotations"]?.arrayValue?.first?["url_citation"] == citation)

        var messages = FusionMessagesRenderer(id: "m", model: "p/outer", stream: false)
        for output: FusionSessionMachine.Output in [.answer(.text("It is so.")), .finalAnswerStarts(model: "p/outer"), .answer(.text("Answer."))] {
            var ignored: [UInt8] = []
            messages.render(output, at: 1, into: &ignored)
        }
        let body = try JSONValue.parse(messages.message(usage: Usage(), fusion: nil))
        #expect(body["content"]?.arrayValue?.first?["text"] == .string("It is so.\n\nAnswer."), "\(body)")
    }
}
