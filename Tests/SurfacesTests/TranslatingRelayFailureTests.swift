import GatewayCore
import Providers
import Surfaces
import Testing

/// An event that fails to decode ends the stream, but what the upstream said before it, even in
/// the same read, reaches the client and its count (review 52A #4: `created`, `failed`, no text).
@Suite struct TranslatingRelayFailureTests {
    static let openAI = #"data: {"choices":[{"index":0,"delta":{"content":"Hello"}}]}"# + "\n\n" + #"data: {"oops"# + "\n\n"
    static let anthropic = """
        event: content_block_start
        data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

        event: content_block_delta
        data: {"type":"content_bl


        """

    /// Text an Anthropic upstream sent inside an open tool block (held until the block stops)
    /// is shown before the failure, however the stream fails: a broken transfer, a stall, an
    /// invalid event (review 61 #1: only an `error` event and a clean end released it).
    @Test(arguments: [false, true])
    func heldTextIsShownBeforeAnyFailure(brokenTransfer: Bool) throws {
        var sse = InterleavedBlockTests.openCallAndText.map { "event: x\ndata: \($0)\n\n" }.joined()
        if !brokenTransfer { sse += "event: x\ndata: {\"oops\n\n" }
        var relay = TranslatingRelay(decoder: AnthropicProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none),
                                     writer: ResponsesTranslation(writer: ResponsesStreamWriter(envelope: try ResponsesStreamWriterTests.envelope(), stream: true)),
                                     estimatedPromptTokens: 10)
        var out: [UInt8] = []
        relay.start(into: &out)
        _ = Array(sse.utf8).withUnsafeBytes { relay.relay($0, into: &out) }
        if brokenTransfer { relay.upstreamDidEnd(failure: .upstreamUnavailable("broke off", code: "upstream_connection_lost"), into: &out) }
        guard case .failed = relay.outcome else {
            Issue.record("\(relay.outcome)")
            return
        }
        let events = try ResponsesStreamCheck.decode(out)
        #expect(events.contains { $0.type == "response.output_text.delta" && $0.json["delta"] == .string("HELD") }, "\(events.map(\.type))")
    }

    /// An answer that gave its finish is whole: a transfer that then breaks or times out (its
    /// usage or `[DONE]` still to come, `message_stop` never sent) ends it complete, on the
    /// translating relay and chat's, not with an error (review 71C #7). Before the finish, the
    /// failure stands.
    @Test(arguments: [0, 1])
    func aFailureAfterTheFinishEndsTheAnswerComplete(upstream: Int) throws {
        // OpenAI's wire: the finish and the usage after it (a finish alone is not whole: relays put
        // `stop` on every chunk; review 72A).
        let openAI = #"data: {"choices":[{"index":0,"delta":{"content":"Hello"}}]}"# + "\n\n"
            + #"data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"# + "\n\n"
            + #"data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"# + "\n\n"
        let anthropic = ["event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}",
                         #"event: content_block_start"# + "\n" + #"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
                         #"event: content_block_delta"# + "\n" + #"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
                         #"event: content_block_stop"# + "\n" + #"data: {"type":"content_block_stop","index":0}"#,
                         #"event: message_delta"# + "\n" + #"data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}"#]
            .joined(separator: "\n\n") + "\n\n"
        let (provider, sse): (any Provider, String) = upstream == 0 ? (OpenAICompatibleProvider(), openAI) : (AnthropicProvider(), anthropic)
        let broke = APIError.upstreamUnavailable("broke off", code: "upstream_connection_lost")
        for finished in [true, false] {
            let bytes = finished ? sse : String(sse.split(separator: "\n\n").first ?? "") + "\n\n"  // its first event only
            var relay = TranslatingRelay(decoder: provider.streamDecoder(maxEventBytes: 1 << 20, redactor: .none),
                                         writer: ResponsesTranslation(writer: ResponsesStreamWriter(envelope: try ResponsesStreamWriterTests.envelope(), stream: true)),
                                         estimatedPromptTokens: 10)
            var out: [UInt8] = []
            relay.start(into: &out)
            _ = Array(bytes.utf8).withUnsafeBytes { relay.relay($0, into: &out) }
            relay.upstreamDidEnd(failure: broke, into: &out)
            let events = try ResponsesStreamCheck.decode(out)
            #expect((events.last?.type == "response.completed") == finished, "\(upstream) \(finished): \(events.map(\.type))")
        }
        guard upstream == 0 else { return }
        var chat = SSERelay(id: "gen-1", model: "m", created: 1, includeUsage: true)
        var out: [UInt8] = []
        _ = chat.relay(Array(openAI.utf8), into: &out)
        chat.upstreamDidEnd(failure: broke, into: &out)
        #expect(chat.outcome == .done && String(decoding: out, as: UTF8.self).hasSuffix("data: [DONE]\n\n") && !String(decoding: out, as: UTF8.self).contains("error"))
        // Usage riding on answer chunks (vLLM's continuous stats), with another choice still
        // writing (`n` = 2): the break is a failure, not a clean end (review 73 #2).
        let continuous = #"data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"# + "\n\n"
            + #"data: {"choices":[{"index":1,"delta":{"content":"b"}}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"# + "\n\n"
        var two = SSERelay(id: "gen-1", model: "m", created: 1, includeUsage: true)
        out = []
        _ = two.relay(Array(continuous.utf8), into: &out)
        two.upstreamDidEnd(failure: broke, into: &out)
        #expect({ if case .failed = two.outcome { true } else { false } }(), "\(two.outcome)")
        var decoder = OpenAICompatibleProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none)
        _ = try Array(continuous.utf8).withUnsafeBytes { try decoder.decode($0) { _ in } }
        #expect(!decoder.answerIsWhole)
        // A finish on every chunk (relays do that) with no usage after it: the break is a failure.
        let relayed = #"data: {"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":"stop"}]}"# + "\n\n"
        for translated in [true, false] {
            out = []
            if translated {
                var relay = TranslatingRelay(decoder: OpenAICompatibleProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none),
                                             writer: MessagesStreamWriter(id: "msg_1", model: "m"), estimatedPromptTokens: 10)
                relay.start(into: &out)
                _ = Array(relayed.utf8).withUnsafeBytes { relay.relay($0, into: &out) }
                relay.upstreamDidEnd(failure: broke, into: &out)
                #expect({ if case .failed = relay.outcome { true } else { false } }(), "\(relay.outcome)")
            } else {
                var plain = SSERelay(id: "gen-1", model: "m", created: 1, includeUsage: true)
                _ = plain.relay(Array(relayed.utf8), into: &out)
                plain.upstreamDidEnd(failure: broke, into: &out)
                #expect({ if case .failed = plain.outcome { true } else { false } }(), "\(plain.outcome)")
            }
        }
    }

    /// An OpenAI-format call whose name never comes fails the answer on Messages (before the
    /// block would open) and Responses (at the end), never a call named "" (review 71C #9).
    @Test func aToolCallWithoutANameIsTheUpstreamsError() throws {
        let sse = #"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"arguments":"{\"a\":1}"}}]}}]}"# + "\n\n"
            + #"data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"# + "\n\ndata: [DONE]\n\n"
        var messages = TranslatingRelay(decoder: OpenAICompatibleProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none),
                                        writer: MessagesStreamWriter(id: "msg_1", model: "m"), estimatedPromptTokens: 10)
        var responses = TranslatingRelay(decoder: OpenAICompatibleProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none),
                                         writer: ResponsesTranslation(writer: ResponsesStreamWriter(envelope: try ResponsesStreamWriterTests.envelope(), stream: true)),
                                         estimatedPromptTokens: 10)
        var out: [UInt8] = []
        messages.start(into: &out)
        _ = Array(sse.utf8).withUnsafeBytes { messages.relay($0, into: &out) }
        messages.upstreamDidEnd(failure: nil, into: &out)
        guard case .failed(let error) = messages.outcome else { Issue.record("\(messages.outcome)"); return }
        #expect(error.message.contains("without a name") && !String(decoding: out, as: UTF8.self).contains("tool_use"), "\(String(decoding: out, as: UTF8.self))")
        // A name that comes in a later fragment is a call like any other, on both (review 72A).
        let late = #"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"arguments":"{\"a\""}}]}}]}"# + "\n\n"
            + #"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":":1}"}}]}}]}"# + "\n\n"
            + #"data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"# + "\n\ndata: [DONE]\n\n"
        var named = TranslatingRelay(decoder: OpenAICompatibleProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none),
                                     writer: MessagesStreamWriter(id: "msg_1", model: "m"), estimatedPromptTokens: 10)
        out = []
        named.start(into: &out)
        _ = Array(late.utf8).withUnsafeBytes { named.relay($0, into: &out) }
        named.upstreamDidEnd(failure: nil, into: &out)
        let text = String(decoding: out, as: UTF8.self)
        #expect(named.outcome == .done && text.contains(#""name":"f""#) && text.contains(#""stop_reason":"tool_use""#), "\(text)")
        out = []
        responses.start(into: &out)
        _ = Array(sse.utf8).withUnsafeBytes { responses.relay($0, into: &out) }
        responses.upstreamDidEnd(failure: nil, into: &out)
        guard case .failed(let failure) = responses.outcome else { Issue.record("\(responses.outcome)"); return }
        #expect(failure.message.contains("without a name"))
    }

    @Test(arguments: [0, 1])
    func theEventsBeforeABadOneInTheSameReadAreShownThenTheFailure(upstream: Int) throws {
        let (provider, sse): (any Provider, String) = upstream == 0 ? (OpenAICompatibleProvider(), Self.openAI) : (AnthropicProvider(), Self.anthropic)
        var relay = TranslatingRelay(decoder: provider.streamDecoder(maxEventBytes: 1 << 20, redactor: .none),
                                     writer: ResponsesTranslation(writer: ResponsesStreamWriter(envelope: try ResponsesStreamWriterTests.envelope(), stream: true)),
                                     estimatedPromptTokens: 10)
        var out: [UInt8] = []
        relay.start(into: &out)
        let outcome = Array(sse.utf8).withUnsafeBytes { relay.relay($0, into: &out) }
        guard case .failed(let error) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect(error.code == "upstream_protocol_error")
        let events = try ResponsesStreamCheck.decode(out)
        #expect(ResponsesStreamCheck.problems(events) == [], "\(events.map(\.type))")
        #expect(events.contains { $0.type == "response.output_text.delta" && $0.json["delta"] == .string("Hello") }, "\(events.map(\.type))")
        let failed = try #require(events.last)
        #expect(failed.type == "response.failed" && failed.json["response"]?["output"]?[0]?["content"]?[0]?["text"] == .string("Hello"),
                "\(failed.json)")
        #expect(failed.json["response"]?["usage"]?["output_tokens"]?.intValue ?? 0 > 0 && relay.forwardedEvents == 1, "\(failed.json)")
    }

    /// Gemini's raw JSON error whose closing brace ends the body is the failure the client sees,
    /// with Google's message and status, not "the stream ended" (review 52A #5).
    @Test func aGeminiErrorEndingTheBodyWithoutALineEndIsTheFailure() throws {
        var relay = TranslatingRelay(decoder: GeminiProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none),
                                     writer: ResponsesTranslation(writer: ResponsesStreamWriter(envelope: try ResponsesStreamWriterTests.envelope(), stream: true)))
        var out: [UInt8] = []
        relay.start(into: &out)
        let body = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"part\"}]}}]}\r\n\r\n"
            + "{\n  \"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}\n}"
        _ = Array(body.utf8).withUnsafeBytes { relay.relay($0, into: &out) }
        relay.upstreamDidEnd(failure: nil, into: &out)
        guard case .failed(let error) = relay.outcome else {
            Issue.record("\(relay.outcome)")
            return
        }
        #expect(error.status == 503 && error.message.contains("The model is overloaded."), "\(error)")
        let events = try ResponsesStreamCheck.decode(out)
        #expect(ResponsesStreamCheck.problems(events) == [] && events.last?.type == "response.failed", "\(events.map(\.type))")
    }
}
