import GatewayCore
import PropertyBased
import Providers
import Surfaces
import Testing

@Suite struct ResponsesStreamWriterTests {
    static let created = 1_767_225_600
    static let completed = 1_767_225_602

    static func envelope(_ body: String = #"{"model":"p/m","input":"hi"}"#) throws -> ResponseEnvelope {
        let request = try ResponsesRequest(body: Array(body.utf8))
        return ResponseEnvelope(generationID: "gen-0123456789abcdef01234567", createdAt: created, model: "p/m", echoed: request.echoedFields)
    }

    /// The stream for `events`, ended by `appendEnd` unless the events end it.
    static func render(_ events: [ModelEvent], body: String = #"{"model":"p/m","input":"hi"}"#) throws -> [UInt8] {
        var writer = ResponsesStreamWriter(envelope: try envelope(body), stream: true)
        var out: [UInt8] = []
        for event in events { writer.append(event, to: &out) }
        writer.appendEnd(completedAt: completed, to: &out)
        return out
    }

    static let usage = Usage(promptTokens: 9, completionTokens: 4, totalTokens: 13, reasoningTokens: 2, cachedTokens: 3, cost: 0.001)

    @Test func aTextAnswerIsTheMinimalTranscriptWithUsage() throws {
        let bytes = try Self.render([.text("Hello"), .text(" world"), .finish(.stop), .usage(Self.usage)])
        try Golden.check("text.sse", bytes)
        let events = try ResponsesStreamCheck.decode(bytes)
        #expect(ResponsesStreamCheck.problems(events) == [])
        #expect(events.map(\.type) == [
            "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
            "response.output_text.delta", "response.output_text.delta", "response.output_text.done", "response.content_part.done",
            "response.output_item.done", "response.completed",
        ])
        let response = try #require(events.last?.json["response"])
        #expect(response["id"] == .string("resp_0123456789abcdef01234567") && response["status"] == .string("completed"))
        #expect(response["output"]?[0]?["id"] == .string("msg_0123456789abcdef01234567_0"))
        #expect(response["usage"] == .object([
            "input_tokens": .int(9), "input_tokens_details": .object(["cached_tokens": .int(3), "cache_write_tokens": .int(0)]), "output_tokens": .int(4),
            "output_tokens_details": .object(["reasoning_tokens": .int(2)]), "total_tokens": .int(13), "cost": .double(0.001),
        ]))
        #expect(response["completed_at"] == .int(Int64(Self.completed)) && response["store"] == .bool(false))
        #expect(events[0].json["response"]?["output"] == .array([]) && events[0].json["response"]?["usage"] == .null)
    }

    @Test func reasoningComesFirstAsASummaryThenTheMessage() throws {
        let bytes = try Self.render([.reasoning("Think"), .reasoning("ing."), .text("Answer."), .finish(.stop)])
        try Golden.check("reasoning.sse", bytes)
        let events = try ResponsesStreamCheck.decode(bytes)
        #expect(ResponsesStreamCheck.problems(events) == [])
        #expect(events.map(\.type)[2...7] == [
            "response.output_item.added", "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
        ])
        let output = try #require(events.last?.json["response"]?["output"]?.arrayValue)
        #expect(output.map { $0["type"] } == [.string("reasoning"), .string("message")])
        #expect(output[0]["summary"] == .array([.object(["type": .string("summary_text"), "text": .string("Thinking.")])]))
    }

    @Test func toolCallsAreFunctionCallItemsWithTheModelsCallIDs() throws {
        // Fragments as upstreams send them: a call's name first, arguments in pieces, a second
        // call interleaved, one with no id (the gateway gives it one) and one whose name comes late.
        let bytes = try Self.render([
            .text("Checking."),
            .toolCall(ToolCallFragment(index: 0, id: "call_a", name: "get_weather", arguments: "")),
            .toolCall(ToolCallFragment(index: 0, arguments: #"{"city":"#)),
            .toolCall(ToolCallFragment(index: 1, name: "lookup", arguments: "{")),
            .toolCall(ToolCallFragment(index: 0, arguments: #""Paris"}"#)),
            .toolCall(ToolCallFragment(index: 1, arguments: "}")),
            .toolCall(ToolCallFragment(index: 2, id: "call_c", arguments: "[1")),
            .toolCall(ToolCallFragment(index: 2, name: "late", arguments: "]")),
            .finish(.toolCalls), .usage(Self.usage),
        ], body: #"{"model":"p/m","input":"hi","tools":[{"type":"function","name":"get_weather"},{"type":"function","name":"lookup"},{"type":"function","name":"late"}]}"#)
        try Golden.check("function-calls.sse", bytes)
        let events = try ResponsesStreamCheck.decode(bytes)
        #expect(ResponsesStreamCheck.problems(events) == [])
        let response = try #require(events.last?.json["response"])
        #expect(response["status"] == .string("completed"), "Responses has no tool_calls status")
        let calls = try #require(response["output"]?.arrayValue).filter { $0["type"] == .string("function_call") }
        #expect(calls.map { $0["call_id"] } == [.string("call_a"), .string("call_0123456789abcdef01234567_2"), .string("call_c")])
        #expect(calls.map { $0["name"] } == [.string("get_weather"), .string("lookup"), .string("late")])
        #expect(calls.map { $0["arguments"] } == [.string(#"{"city":"Paris"}"#), .string("{}"), .string("[1]")])
        #expect(response["tools"]?.arrayValue?.count == 3, "the request's tools are echoed")
    }

    /// Calls interleaved by the upstream come out one whole item after another; a call the
    /// upstream goes back to after text began cannot, and fails the response instead of
    /// changing the call.
    @Test func interleavedCallsAreShownOneAfterAnother() throws {
        func relay(_ deltas: [String]) throws -> [ResponsesEvent] {
            var relay = TranslatingRelay(decoder: OpenAICompatibleProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none),
                                         writer: ResponsesTranslation(writer: ResponsesStreamWriter(envelope: try Self.envelope(), stream: true)))
            var out: [UInt8] = []
            relay.start(into: &out)
            let sse = deltas.map { #"data: {"choices":[{"index":0,"delta":\#($0)}]}"# + "\n\n" }.joined()
                + #"data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"# + "\n\ndata: [DONE]\n\n"
            _ = Array(sse.utf8).withUnsafeBytes { relay.relay($0, into: &out) }
            return try ResponsesStreamCheck.decode(out)
        }
        func call(_ index: Int, _ name: String?, _ arguments: String) -> String {
            #"{"tool_calls":[{"index":\#(index),"function":{"#
                + (name.map { #""name":"\#($0)","# } ?? "") + #""arguments":"\#(arguments)"}}]}"#
        }
        let events = try relay([call(0, "a", "{"), call(1, "b", "{"), call(0, nil, "}"), call(1, nil, #"\"x\":1}"#)])
        #expect(ResponsesStreamCheck.problems(events) == [])
        let output = events.last?.json["response"]?["output"]?.arrayValue ?? []
        #expect(output.map { $0["arguments"] } == [.string("{}"), .string(#"{"x":1}"#)], "\(output)")
        // An empty fragment for a finished call changes nothing (review 18 B9); real bytes fail.
        let empty = try relay([call(0, "a", "{}"), #"{"content":"\n"}"#, call(0, nil, "")])
        #expect(ResponsesStreamCheck.problems(empty) == [] && empty.last?.type == "response.completed", "\(empty.map(\.type))")
        let revisited = try relay([call(0, "a", "{"), #"{"content":"Also"}"#, call(0, nil, "}")])
        #expect(ResponsesStreamCheck.problems(revisited) == [] && revisited.last?.type == "response.failed", "\(revisited.map(\.type))")
        // A stream that ends inside a call's arguments is no completed response (review 64B #3).
        let cut = try relay([call(0, "f", #"{\"a\":"#)])
        #expect(ResponsesStreamCheck.problems(cut) == [] && cut.last?.type == "response.failed", "\(cut.map(\.type))")
        #expect(cut.last?.json["response"]?["error"]?["message"]?.stringValue?.contains("'f'") == true, "\(cut.last?.json ?? .null)")
    }

    /// A whole answer whose call's arguments are cut is refused as a stream's is (review 65 #3).
    @Test func aWholeAnswerEndingInsideArgumentsIsRefused() throws {
        var writer = ResponsesStreamWriter(envelope: try Self.envelope(), stream: false)
        var discarded: [UInt8] = []
        writer.append(.toolCall(ToolCallFragment(index: 0, id: "c", name: "get_time", arguments: #"{"tz": "U"#)), to: &discarded)
        writer.append(.finish(.toolCalls), to: &discarded)
        #expect(ResponsesTranslation.refusalAtEnd(of: writer)?.code == "invalid_tool_arguments")
        var whole = ResponsesStreamWriter(envelope: try Self.envelope(), stream: false)
        whole.append(.toolCall(ToolCallFragment(index: 0, id: "c", name: "get_time", arguments: #"{"tz": "UTC"}"#)), to: &discarded)
        whole.append(.toolCall(ToolCallFragment(index: 1, id: "d", name: "now", arguments: "")), to: &discarded)
        #expect(ResponsesTranslation.refusalAtEnd(of: whole) == nil, "whole and blank arguments are fine")
    }

    /// Two parallel calls sharing one upstream id (DeepSeek, GLM) are two `function_call` items
    /// with distinct `call_id`s: openai-python's `responses.stream()` raises on a repeated one
    /// (review 52A #2).
    @Test func callsSharingAnUpstreamIDAreItemsWithDistinctCallIDs() throws {
        var relay = TranslatingRelay(decoder: OpenAICompatibleProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none),
                                     writer: ResponsesTranslation(writer: ResponsesStreamWriter(envelope: try Self.envelope(), stream: true)))
        var out: [UInt8] = []
        relay.start(into: &out)
        let sse = #"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"same","function":{"name":"f","arguments":"{\"a\":1}"}}]}}]}"# + "\n\n"
            + #"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"same","function":{"name":"g","arguments":"{\"b\":2}"}}]}}]}"# + "\n\n"
            + #"data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"# + "\n\ndata: [DONE]\n\n"
        _ = Array(sse.utf8).withUnsafeBytes { relay.relay($0, into: &out) }
        let events = try ResponsesStreamCheck.decode(out)
        #expect(ResponsesStreamCheck.problems(events) == [])
        let output = events.last?.json["response"]?["output"]?.arrayValue ?? []
        #expect(output.map { $0["call_id"] } == [.string("same"), .string("same_1")], "\(output)")
        #expect(output.map { $0["arguments"] } == [.string(#"{"a":1}"#), .string(#"{"b":2}"#)], "\(output)")
    }

    /// Relays that put `stop` on every chunk: one message, not one per token (review 75B #2).
    @Test func aFinishOnEveryChunkIsOneMessage() throws {
        let bytes = try Self.render([.text("AAA "), .finish(.stop), .text("BBB "), .finish(.stop), .text("CCC"), .finish(.stop), .usage(Self.usage)])
        let events = try ResponsesStreamCheck.decode(bytes)
        #expect(ResponsesStreamCheck.problems(events) == [])
        let output = try #require(events.last?.json["response"]?["output"]?.arrayValue)
        #expect(output.count == 1 && output.first?["content"]?[0]?["text"] == .string("AAA BBB CCC"), "\(output)")
        #expect(events.filter { $0.type == "response.output_item.added" }.count == 1)
    }

    @Test func aLengthFinishMakesTheResponseIncomplete() throws {
        let bytes = try Self.render([.text("Cut sh"), .finish(.length), .usage(Self.usage)])
        try Golden.check("incomplete.sse", bytes)
        let events = try ResponsesStreamCheck.decode(bytes)
        #expect(ResponsesStreamCheck.problems(events) == [])
        let last = try #require(events.last)
        #expect(last.type == "response.incomplete")
        #expect(last.json["response"]?["incomplete_details"] == .object(["reason": .string("max_output_tokens")]))
        #expect(last.json["response"]?["output"]?[0]?["status"] == .string("incomplete"))
        #expect(last.json["response"]?["completed_at"] == .null)
        let filtered = try ResponsesStreamCheck.decode(Self.render([.text("x"), .finish(.contentFilter)])).last
        #expect(filtered?.json["response"]?["incomplete_details"]?["reason"] == .string("content_filter"))
    }

    @Test func nothingIsWrittenBeforeTheModelSaysSomething() throws {
        // Until then a shell can still answer a failure with an HTTP status.
        var writer = ResponsesStreamWriter(envelope: try Self.envelope(), stream: true)
        var out: [UInt8] = []
        writer.append(.usage(Self.usage), to: &out)
        writer.append(.text(""), to: &out)
        // A finish, or Anthropic's stop detail, before any answer: an upstream that then fails
        // is retried or answered with its status (review 107 #1).
        writer.append(.finish(.stop), to: &out)
        writer.append(.stopDetail(reason: "end_turn", sequence: nil), to: &out)
        var relay = TranslatingRelay(decoder: AnthropicProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none),
                                     writer: ResponsesTranslation(writer: ResponsesStreamWriter(envelope: try Self.envelope(), stream: true)))
        relay.start(into: &out)
        #expect(out.isEmpty)
        writer.appendStart(to: &out)
        writer.appendStart(to: &out)
        #expect(try ResponsesStreamCheck.decode(out).map(\.type) == ["response.created", "response.in_progress"])
    }

    @Test func anErrorFailsTheResponseAndNothingFollows() throws {
        var writer = ResponsesStreamWriter(envelope: try Self.envelope(), stream: true)
        var out: [UInt8] = []
        writer.append(.text("Half"), to: &out)
        writer.append(.usage(Self.usage), to: &out)
        writer.append(.error(.upstreamUnavailable("Provider disconnected unexpectedly")), to: &out)
        let ended = out.count
        writer.append(.text("late"), to: &out)
        writer.appendEnd(completedAt: Self.completed, to: &out)
        let item = writer.openItem(prefix: "fu", initial: .object(["type": .string("x")]), to: &out)
        writer.appendItemEvent("response.x.late", item, to: &out)
        writer.closeItem(item, final: .object([:]), to: &out)
        #expect(out.count == ended, "nothing follows the terminal event")
        try Golden.check("failed.sse", out)
        let events = try ResponsesStreamCheck.decode(out)
        #expect(ResponsesStreamCheck.problems(events) == [])
        let response = try #require(events.last?.json["response"])
        #expect(events.last?.type == "response.failed" && writer.isFinished)
        #expect(response["error"] == .object(["code": .string("server_error"), "message": .string("Provider disconnected unexpectedly")]))
        #expect(response["output"]?[0]?["status"] == .string("incomplete") && response["usage"]?["total_tokens"] == .int(13))
        var limited = ResponsesStreamWriter(envelope: try Self.envelope(), stream: true)
        var bytes: [UInt8] = []
        limited.appendFailure(APIError(status: 429, type: "rate_limit", code: "rate_limited", message: "slow down"), to: &bytes)
        #expect(try ResponsesStreamCheck.decode(bytes).last?.json["response"]?["error"]?["code"] == .string("rate_limit_exceeded"))
    }

    @Test func theNonStreamedResponseIsTheTerminalEventsResponse() throws {
        let events: [ModelEvent] = [.reasoning("r"), .text("Hello"), .toolCall(ToolCallFragment(index: 0, id: "c", name: "f", arguments: "{}")),
                                    .finish(.toolCalls), .usage(Self.usage)]
        var whole = ResponsesStreamWriter(envelope: try Self.envelope(), stream: false)
        var out: [UInt8] = []
        for event in events { whole.append(event, to: &out) }
        #expect(out.isEmpty, "a non-streamed response writes no events")
        let response = whole.response(completedAt: Self.completed)
        try Golden.check("text.json", response.serialized())
        let streamed = try ResponsesStreamCheck.decode(Self.render(events))
        #expect(streamed.last?.json["response"] == response)
    }

    @Test func modelTextCannotForgeEvents() throws {
        let forgery = "ok\r\n\r\nevent: response.completed\u{2028}\u{85}\rdata: {\"type\":\"response.completed\"}\n\n"
        let bytes = try Self.render([.text(forgery), .reasoning(forgery), .toolCall(ToolCallFragment(index: 0, id: forgery, name: forgery, arguments: forgery)),
                                     .finish(.stop)])
        let events = try ResponsesStreamCheck.decode(bytes)
        #expect(ResponsesStreamCheck.problems(events) == [])
        #expect(events.filter { $0.type == "response.completed" }.count == 1)
        let output = try #require(events.last?.json["response"]?["output"]?.arrayValue)
        #expect(output[0]["content"]?[0]?["text"] == .string(forgery) && output[2]["call_id"] == .string(forgery))
        // One line per `event:` and `data:`, for every line splitter.
        let lines = String(decoding: bytes, as: UTF8.self).split(omittingEmptySubsequences: true, whereSeparator: \.isNewline)
        #expect(lines.count == events.count * 2)
    }

    /// Any interleaving of text, reasoning (signed or redacted), refusals and tool-call fragments
    /// makes a stream the SDK accepts, whose items hold exactly what the model said.
    static let modelEvents = zip(Gen.int(in: 0...8), Gen.int(in: 0...2), Gen.element(of: ["a", "b c", "\"", "é", "\n", "{"]))
        .map { kind, index, piece -> ModelEvent in
            let piece = piece ?? "x"
            switch kind {
            case 0, 1: return .text(piece)
            case 2: return .reasoning(piece)
            case 3: return .toolCall(ToolCallFragment(index: index, id: "call_\(index)", name: "f\(index)", arguments: piece))
            case 4: return .toolCall(ToolCallFragment(index: index, arguments: piece))
            case 5: return .refusal(piece)
            case 6: return .reasoningSignature("sig-" + piece)
            case 7: return .redactedReasoning("data-" + piece)
            default: return .usage(Usage(totalTokens: 1))
            }
        }.array(of: 0...30)

    @Test func anyEventSequenceMakesAValidStream() async {
        await propertyCheck(count: 300, input: Self.modelEvents, Gen.element(of: [FinishReason.stop, .length, .toolCalls])) { events, finish in
            let bytes = try Self.render(events + [.finish(finish ?? .stop)])
            let decoded = try ResponsesStreamCheck.decode(bytes)
            #expect(ResponsesStreamCheck.problems(decoded) == [], "\(events)")
            let output = decoded.last?.json["response"]?["output"]?.arrayValue ?? []
            let text = output.compactMap { $0["content"]?[0]?["text"]?.stringValue }.joined()
            #expect(text == events.compactMap { if case .text(let piece) = $0 { piece } else { nil } }.joined())
            let reasoning = output.compactMap { $0["summary"]?[0]?["text"]?.stringValue }.joined()
            #expect(reasoning == events.compactMap { if case .reasoning(let piece) = $0 { piece } else { nil } }.joined())
            let refusal = output.compactMap { $0["content"]?[0]?["refusal"]?.stringValue }.joined()
            #expect(refusal == events.compactMap { if case .refusal(let piece) = $0 { piece } else { nil } }.joined())
            let blocks = output.compactMap { $0["encrypted_content"]?.stringValue.flatMap { ReasoningBlock(token: $0) } }
            #expect(blocks.count == events.filter { if case .reasoningSignature = $0 { true } else if case .redactedReasoning = $0 { true } else { false } }.count)
            // Every call's fragments arrive whole, unless one came back after another item began
            // (the translation refuses such a stream: `ResponsesTranslation.refusal(ofToolCall:)`).
            var accumulator = ToolCallAccumulator()
            var finished: Set<Int> = [], seen: Set<Int> = [], revisited = false
            for event in events {
                if case .toolCall(let fragment) = event {
                    revisited = revisited || finished.contains(fragment.index)
                    seen.insert(fragment.index)
                    accumulator.add(fragment)
                } else if ModelEvent.opensAnItem(event) {
                    finished.formUnion(seen)
                }
            }
            let calls = output.filter { $0["type"] == .string("function_call") }
            if !revisited {
                // A call whose name never came is never shown (the translation refuses the answer).
                let expected = accumulator.calls.filter { !$0.name.isEmpty }.map { $0.arguments.allSatisfy(\.isWhitespace) ? "{}" : $0.arguments }
                #expect(calls.compactMap { $0["arguments"]?.stringValue }.sorted() == expected.sorted(), "\(events)")
            }
        }
    }
}

extension ModelEvent {
    /// Whether the Responses writer opens (or closes) an item other than a call for `event`.
    static func opensAnItem(_ event: ModelEvent) -> Bool {
        switch event {
        case .text(let text), .reasoning(let text), .refusal(let text): !text.isEmpty
        case .reasoningSignature, .redactedReasoning: true
        default: false
        }
    }
}
