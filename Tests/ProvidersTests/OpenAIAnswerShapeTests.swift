import GatewayCore
import Providers
import Testing

/// OpenAI-format answers in the shapes servers other than OpenAI's send: `content` as a list of
/// parts (Mistral's reasoning models), and a whole answer that never says how it finished.
@Suite struct OpenAIAnswerShapeTests {
    let provider = OpenAICompatibleProvider()

    /// Text parts are the answer, thinking parts its reasoning, streamed and whole (review 71C
    /// #1: the answer was dropped and the empty one ended complete).
    @Test func contentAsPartsIsReadStreamedAndWhole() throws {
        let thinking = #"{"type":"thinking","thinking":[{"type":"text","text":"let me think"}]}"#
        let stream = #"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":[\#(thinking)]}}]}"# + "\n\n"
            + #"data: {"choices":[{"index":0,"delta":{"content":[{"type":"text","text":"Hello "},{"type":"image_url","image_url":{}},{"type":"text","text":"parts"}]}}]}"# + "\n\n"
            + #"data: {"choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}]}"# + "\n\ndata: [DONE]\n\n"
        let (events, end) = try ProviderFixtures.decode([Array(stream.utf8)], with: provider)
        #expect(events.filter { if case .toolCall = $0 { false } else { true } }.prefix(4)
                == [.reasoning("let me think"), .text("Hello "), .text("parts"), .finish(.stop)], "\(events)")
        #expect(end == .complete)
        let whole = #"{"choices":[{"index":0,"message":{"role":"assistant","content":[\#(thinking),{"type":"text","text":"Hello parts"}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#
        let decoded = try provider.decodeResponse(Array(whole.utf8), redactor: .none)
        #expect(decoded.prefix(3) == [.reasoning("let me think"), .text("Hello parts"), .finish(.stop)], "\(decoded)")
    }

    /// A whole answer with `finish_reason: null` (or none) is cut, as a stream without one is
    /// (review 71C #2: it passed as `completed` / `end_turn`).
    @Test(arguments: [#""finish_reason":null"#, #""logprobs":null"#])
    func aWholeAnswerWithoutAFinishReasonIsCut(finish: String) throws {
        let body = #"{"choices":[{"index":0,"message":{"role":"assistant","content":"hello"},\#(finish)}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#
        let events = try provider.decodeResponse(Array(body.utf8), redactor: .none)
        guard events.count == 1, case .error(let error) = events[0] else {
            Issue.record("\(events)")
            return
        }
        #expect(error.code == "upstream_truncated" && error.status == 502)
    }

    /// vLLM's `abort` (the engine gave up on the request) is a failure, not a clean end (review
    /// 71C #6), as OpenRouter's `error` is.
    @Test func anAbortedAnswerIsAnError() throws {
        let stream = #"data: {"choices":[{"index":0,"delta":{"content":"The answer is"}}]}"# + "\n\n"
            + #"data: {"choices":[{"index":0,"delta":{},"finish_reason":"abort"}]}"# + "\n\ndata: [DONE]\n\n"
        let (events, _) = try ProviderFixtures.decode([Array(stream.utf8)], with: provider)
        guard case .error(let error)? = events.last else {
            Issue.record("\(events)")
            return
        }
        #expect(error.message.contains("abort") && !events.contains(.finish(FinishReason(rawValue: "abort"))), "\(events)")
        let whole = #"{"choices":[{"index":0,"message":{"role":"assistant","content":"The answer is"},"finish_reason":"abort"}]}"#
        #expect(try provider.decodeResponse(Array(whole.utf8), redactor: .none).count == 1)
    }

    /// An empty finish reason is none (SGLang and Ollama's OpenAI endpoint send `""` on every
    /// chunk; review 72A #1), and content after a finish still reads (relays put `stop` on every
    /// chunk), the last finish standing.
    @Test func finishReasonsOnEveryChunkAreRead() throws {
        func chunk(_ text: String, _ finish: String) -> String {
            #"data: {"choices":[{"index":0,"delta":{"content":"\#(text)"},"finish_reason":\#(finish)}]}"# + "\n\n"
        }
        let sglang = chunk("a", #""""#) + chunk("b", #""""#) + chunk("", #""stop""#) + "data: [DONE]\n\n"
        let (events, end) = try ProviderFixtures.decode([Array(sglang.utf8)], with: provider)
        #expect(events == [.text("a"), .text("b"), .finish(.stop)] && end == .complete, "\(events)")
        let relay = chunk("a", #""stop""#) + chunk("b", #""stop""#) + "data: [DONE]\n\n"
        let (relayed, _) = try ProviderFixtures.decode([Array(relay.utf8)], with: provider)
        #expect(relayed.filter { if case .text = $0 { true } else { false } } == [.text("a"), .text("b")], "\(relayed)")
    }

    /// An in-band error's status: OpenRouter's numeric code, LiteLLM's digit string, else what
    /// OpenAI's labels say; its type and code reach the client (review 81B #2: each was a 502
    /// `upstream_error`, retried, a context too long included).
    @Test func inBandErrorsKeepTheirStatusAndLabels() throws {
        let cases: [(String, Int, String)] = [
            (#"{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}"#, 400, "context_length_exceeded"),
            (#"{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}"#, 429, "rate_limited"),
            (#"{"message":"x","type":"None","param":"None","code":"429"}"#, 429, "rate_limited"),
            (#"{"message":"x","type":"None","code":"400"}"#, 400, "400"),
            (#"{"message":"no credit","type":"insufficient_quota","code":"insufficient_quota"}"#, 402, "insufficient_quota"),
            (#"{"message":"no credit","type":"insufficient_quota","code":429}"#, 402, "insufficient_quota"),
            (#"{"message":"down","code":503}"#, 503, "503"),
            (#"{"message":"boom","type":"server_error","code":"4290"}"#, 502, "4290"),
            (#"{"message":"boom"}"#, 502, "upstream_error"),
        ]
        for (text, status, code) in cases {
            let error = OpenAICompatibleProvider.streamError(try JSONValue.parse(Array(text.utf8)), redactor: .none)
            #expect(error.status == status && error.code == code, "\(text): \(error.status) \(error.type) \(error.code)")
        }
    }

    /// An upstream's error message reaches the client as one line of at most 300 Unicode
    /// scalars: counted in characters, one cluster of 10,000 prepended marks passed whole (review
    /// 85 #2).
    @Test func anErrorMessageIsBoundedInScalars() throws {
        for message in [String(repeating: "\u{600}", count: 10_000) + "x", String(repeating: "e\u{301}", count: 5_000), String(repeating: "a", count: 5_000)] {
            let body = #"{"message":"\#(message)","type":"server_error"}"#
            let error = OpenAICompatibleProvider.streamError(try JSONValue.parse(Array(body.utf8)), redactor: .none)
            #expect(error.message.unicodeScalars.count <= 600, "\(error.message.unicodeScalars.count)")
        }
    }

    /// An OpenAI-format stream's id, read from its first chunk for the record, is an upstream's
    /// bytes: kept only when short and plain and no secret the gateway holds; read once.
    @Test func aStreamsIDIsKeptOnlyWhenPlain() throws {
        let redactor = Redactor(secrets: ["sk-secret-123456789"])
        let cases: [(String, String?)] = [
            (#""chatcmpl-1""#, "chatcmpl-1"), (#""gen-1:a/b+c=""#, "gen-1:a/b+c="), (#""id\r\nx""#, nil), (#""id\u0000""#, nil),
            (#""sk-secret-123456789""#, nil), ("\"" + String(repeating: "a", count: 129) + "\"", nil), (#""""#, nil), ("12", nil), ("null", nil),
        ]
        for (id, expected) in cases {
            var decoder = provider.streamDecoder(maxEventBytes: 4096, redactor: redactor)
            let chunk = #"data: {"id":\#(id),"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"# + "\n\n"
            let later = #"data: {"id":"chatcmpl-later","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":null}]}"# + "\n\n"
            for event in [chunk, later] {
                _ = try Array(event.utf8).withUnsafeBytes { try decoder.decode($0) { _ in } }
            }
            #expect(decoder.upstreamID == expected, "\(id)")
        }
    }
}
