import GatewayCore
import Providers
import Testing

/// What a native upstream's stream says after it said it was done, and how an error it ends with
/// is read (review 64D #2, #3, #6).
@Suite struct StreamEndingTests {
    static func sse(_ events: [(String, String)]) -> [UInt8] {
        Array(events.map { "event: \($0.0)\ndata: \($0.1)\n\n" }.joined().utf8)
    }

    static let start = ("message_start", #"{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"usage":{"input_tokens":10,"output_tokens":1}}}"#)
    static let text = [("content_block_start", #"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#),
                       ("content_block_delta", #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"all "}}"#),
                       ("content_block_stop", #"{"type":"content_block_stop","index":0}"#)]
    static let stop = ("message_delta", #"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}"#)

    /// Text after the stop reason is a broken stream: never shown after the client's finish.
    @Test func anthropicContentAfterTheStopReasonIsAnError() throws {
        let late = ("content_block_delta", #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" LATE"}}"#)
        let bytes = Self.sse([Self.start] + Self.text + [Self.stop, late, ("message_stop", #"{"type":"message_stop"}"#)])
        #expect(throws: StreamDecodingError.self) { try ProviderFixtures.decode([bytes], with: AnthropicProvider()) }
        // What came before the failure, the reported usage included (review 65 #2).
        var decoder = AnthropicProvider().streamDecoder(maxEventBytes: 1 << 20, redactor: .none)
        var events: [ModelEvent] = []
        #expect(throws: StreamDecodingError.self) { _ = try bytes.withUnsafeBytes { try decoder.decode($0) { events.append($0) } } }
        #expect(events.contains(.usage(Usage(promptTokens: 10, completionTokens: 5, totalTokens: 15))), "\(events)")
        let restarted = ("content_block_start", #"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":"LATE"}}"#)
        let again = Self.sse([Self.start] + Self.text + [Self.stop, restarted])
        #expect(throws: StreamDecodingError.self) { try ProviderFixtures.decode([again], with: AnthropicProvider()) }
    }

    /// Without a `message_delta`, `message_start`'s output count (a placeholder) is never the
    /// answer's: no usage is reported, so the answer is estimated (review 71C #4: a 20 KB answer
    /// was recorded as one token, not flagged as an estimate).
    @Test func anthropicUsageWithoutMessageDeltaIsNotThePlaceholder() throws {
        let bytes = Self.sse([Self.start] + Self.text + [("message_stop", #"{"type":"message_stop"}"#)])
        let (events, end) = try ProviderFixtures.decode([bytes], with: AnthropicProvider())
        #expect(end == .complete && events.contains(.finish(.stop)))
        #expect(!events.contains { if case .usage = $0 { true } else { false } }, "\(events)")
        let counted = Self.sse([Self.start] + Self.text + [Self.stop, ("message_stop", #"{"type":"message_stop"}"#)])
        let (measured, _) = try ProviderFixtures.decode([counted], with: AnthropicProvider())
        #expect(measured.contains(.usage(Usage(promptTokens: 10, completionTokens: 5, totalTokens: 15))), "\(measured)")
    }

    /// A tool call without a name is the upstream's protocol error, streamed and whole: no client
    /// can run or answer it (review 71C #9: Messages and Responses showed `name: ""`).
    @Test func anthropicToolUseWithoutANameIsAnError() throws {
        let nameless = ("content_block_start", #"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","input":{}}}"#)
        #expect(throws: StreamDecodingError.self) { try ProviderFixtures.decode([Self.sse([Self.start, nameless])], with: AnthropicProvider()) }
        let whole = #"{"id":"m","type":"message","role":"assistant","content":[{"type":"tool_use","id":"t","name":"","input":{}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1}}"#
        let events = try AnthropicProvider().decodeResponse(Array(whole.utf8), redactor: .none)
        #expect(events.count == 1 && { if case .error = events[0] { true } else { false } }(), "\(events)")
    }

    /// An error after the stop reason keeps the usage the upstream reported (cumulative, whole).
    @Test func anthropicUsageBeforeAnErrorAfterTheStopReasonIsKept() throws {
        let error = ("error", #"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#)
        let (events, _) = try ProviderFixtures.decode([Self.sse([Self.start] + Self.text + [Self.stop, error])], with: AnthropicProvider())
        let usage = events.compactMap { if case .usage(let usage) = $0 { usage } else { nil } }
        #expect(usage.last?.completionTokens == 5 && usage.last?.promptTokens == 10, "\(events)")
        guard case .error(let failure)? = events.last else {
            Issue.record("\(events)")
            return
        }
        #expect(failure.code == "overloaded")
        // Before the stop reason, `message_start`'s output count is a placeholder: no usage.
        let (early, _) = try ProviderFixtures.decode([Self.sse([Self.start] + Self.text + [error])], with: AnthropicProvider())
        #expect(!early.contains { if case .usage = $0 { true } else { false } }, "\(early)")
    }

    /// Google's error in its array form inside a stream reads as the object form does.
    @Test func geminiErrorArrayMidStreamKeepsItsMessage() throws {
        let bytes = Array(("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hi\"}]}}]}\n\n"
            + "[{\n  \"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}\n}]\n").utf8)
        let (events, _) = try ProviderFixtures.decode([bytes], with: GeminiProvider())
        guard case .error(let failure)? = events.last else {
            Issue.record("\(events)")
            return
        }
        #expect(failure.status == 503 && failure.message.contains("The model is overloaded."), "\(failure)")
    }

    /// An OpenAI-compatible stream is complete only after a finish reason: `[DONE]` alone is a
    /// cut answer, and llama.cpp's `error:` line (then `[DONE]`) or an event named `error` of
    /// any shape is the upstream's error (review 68A #1, #4; 68C #5).
    @Test func openAIDoneWithoutAFinishIsCutAndAnErrorLineIsAnError() throws {
        let text = "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n"
        let (_, cut) = try ProviderFixtures.decode([Array((text + "data: [DONE]\n\n").utf8)], with: OpenAICompatibleProvider())
        #expect(cut == .truncated)
        let finished = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
        let (_, complete) = try ProviderFixtures.decode([Array((text + finished + "data: [DONE]\n\n").utf8)], with: OpenAICompatibleProvider())
        #expect(complete == .complete)
        for failure in [#"error: {"code":500,"message":"context shift is disabled","type":"server_error"}"# + "\n\n",
                        "event: error\ndata: {\"message\":\"context shift is disabled\"}\n\n"] {
            let (events, _) = try ProviderFixtures.decode([Array((text + failure + "data: [DONE]\n\n").utf8)], with: OpenAICompatibleProvider())
            guard case .error(let error)? = events.last else {
                Issue.record("\(failure): \(events)")
                continue
            }
            #expect(error.message.contains("context shift is disabled") && events.first == .text("Hello"), "\(events)")
        }
    }
}
