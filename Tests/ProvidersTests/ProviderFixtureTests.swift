import Foundation
import GatewayCore
import Providers
import Testing

/// Reads `Fixtures/providers/<name>.sse` and its expected neutral events.
enum ProviderFixtures {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/providers")

    static func names(prefix: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: root.path)
            .filter { $0.hasPrefix(prefix) && $0.hasSuffix(".sse") }
            .map { String($0.dropLast(4)) }
            .sorted()
    }

    static func stream(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: root.appendingPathComponent("\(name).sse")))
    }

    static func expected(_ name: String) throws -> (events: [ModelEvent], end: StreamEnd) {
        let json = try JSONValue.parse(Array(try Data(contentsOf: root.appendingPathComponent("\(name).events.json"))))
        let events = try (json["events"]?.arrayValue ?? []).map(event)
        return (events, json["end"]?.stringValue == "truncated" ? .truncated : .complete)
    }

    /// The fixture vocabulary: {"text"}, {"reasoning"}, {"reasoning_signature"}, {"redacted_reasoning"}, {"tool_call": {index, id?, name?, arguments?}},
    /// {"usage": {...}}, {"finish"}, {"error": {status, type, message}}, {"provider_block_start": block},
    /// {"provider_block_delta": delta}, {"provider_block_stop": true}, {"message_extras": {"message"?, "usage"?}}.
    static func event(_ json: JSONValue) throws -> ModelEvent {
        if let extras = json["message_extras"] {
            return .messageExtras(AnthropicMessageExtras(message: extras["message"]?.objectValue ?? [:], usage: extras["usage"]?.objectValue ?? [:]))
        }
        if let block = json["provider_block_start"] { return .providerBlock(.start(block)) }
        if let delta = json["provider_block_delta"] { return .providerBlock(.delta(delta)) }
        if json["provider_block_stop"] != nil { return .providerBlock(.stop) }
        if let text = json["text"]?.stringValue { return .text(text) }
        if let text = json["reasoning"]?.stringValue { return .reasoning(text) }
        if let signature = json["reasoning_signature"]?.stringValue { return .reasoningSignature(signature) }
        if let data = json["redacted_reasoning"]?.stringValue { return .redactedReasoning(data) }
        if let reason = json["finish"]?.stringValue { return .finish(FinishReason(rawValue: reason)) }
        if let call = json["tool_call"] {
            return .toolCall(ToolCallFragment(index: Int(call["index"]?.intValue ?? 0), id: call["id"]?.stringValue,
                                              name: call["name"]?.stringValue, arguments: call["arguments"]?.stringValue))
        }
        if let usage = json["usage"] {
            return .usage(Usage(promptTokens: usage["prompt_tokens"]?.intValue ?? 0, completionTokens: usage["completion_tokens"]?.intValue ?? 0,
                                totalTokens: usage["total_tokens"]?.intValue ?? 0, reasoningTokens: usage["reasoning_tokens"]?.intValue ?? 0,
                                cachedTokens: usage["cached_tokens"]?.intValue ?? 0, cacheWriteTokens: usage["cache_write_tokens"]?.intValue ?? 0,
                                cost: usage["cost"]?.doubleValue ?? 0))
        }
        if let error = json["error"] {
            return .error(APIError(status: Int(error["status"]?.intValue ?? 502), type: error["type"]?.stringValue ?? "upstream_error",
                                   code: error["code"]?.stringValue ?? "upstream_error", message: error["message"]?.stringValue ?? ""))
        }
        throw StreamDecodingError("unknown fixture event \(json)")
    }

    /// Decodes `chunks` with a fresh decoder of `provider`.
    static func decode(_ chunks: [[UInt8]], with provider: any Provider, redactor: Redactor = .none) throws -> ([ModelEvent], StreamEnd) {
        var decoder = provider.streamDecoder(maxEventBytes: 1 << 20, redactor: redactor)
        var events: [ModelEvent] = []
        for chunk in chunks {
            _ = try chunk.withUnsafeBytes { bytes in try decoder.decode(bytes) { events.append($0) } }
        }
        try decoder.finish { events.append($0) }  // as the relays do at the body's end
        return (events, decoder.end())
    }

    /// Whole, byte by byte, and in two pieces at every position.
    static func splits(_ bytes: [UInt8]) -> [[[UInt8]]] {
        var result: [[[UInt8]]] = [[bytes], bytes.map { [$0] }]
        for cut in 1..<max(bytes.count, 1) { result.append([Array(bytes[..<cut]), Array(bytes[cut...])]) }
        return result
    }

    /// The provider whose wire format a fixture is in, by its name's prefix.
    static func provider(for name: String) -> any Provider {
        if name.hasPrefix("anthropic-") { return AnthropicProvider() }
        if name.hasPrefix("gemini-") { return GeminiProvider() }
        return OpenAICompatibleProvider()
    }

    /// Every fixture decodes to its expected events and end, whole, byte by byte and split in two
    /// at every position.
    static func check(_ name: String) throws {
        let bytes = try stream(name)
        let expected = try expected(name)
        for chunks in splits(bytes) {
            let (events, end) = try decode(chunks, with: provider(for: name))
            #expect(events == expected.events, "\(name) split into \(chunks.map(\.count))")
            #expect(end == expected.end, "\(name)")
            if events != expected.events || end != expected.end { return }
        }
    }
}

@Suite struct ProviderFixtureTests {
    @Test func everyProviderHasFixtures() throws {
        for prefix in ["openai-", "anthropic-", "gemini-"] { #expect(try ProviderFixtures.names(prefix: prefix).count >= 4, "\(prefix)") }
    }

    @Test(arguments: try ProviderFixtures.names(prefix: "anthropic-"))
    func anthropicFixture(name: String) throws { try ProviderFixtures.check(name) }

    @Test(arguments: try ProviderFixtures.names(prefix: "gemini-"))
    func geminiFixture(name: String) throws { try ProviderFixtures.check(name) }
}

@Suite struct OpenAIStreamDecoderTests {
    @Test(arguments: try ProviderFixtures.names(prefix: "openai-"))
    func fixtureDecodesToItsEventsHoweverItIsSplit(name: String) throws {
        try ProviderFixtures.check(name)
    }

    @Test func anEventThatIsNotJSONIsAProtocolError() {
        #expect(throws: StreamDecodingError.self) {
            _ = try ProviderFixtures.decode([Array("data: {\"choices\":[{\"delta\":{\"content\":\"x\n\n".utf8)], with: OpenAICompatibleProvider())
        }
    }

    @Test func anOversizedEventIsAProtocolError() {
        var decoder = OpenAICompatibleProvider().streamDecoder(maxEventBytes: 64, redactor: .none)
        let bytes = Array("data: \(String(repeating: "x", count: 100))".utf8)
        #expect(throws: StreamDecodingError.self) { _ = try bytes.withUnsafeBytes { try decoder.decode($0) { _ in } } }
    }

    /// A cut answer's end stands: text and a `stop` after a `length` are not spliced onto it
    /// (review 71C #8), while `stop` on every chunk (some relays) keeps every chunk's text.
    @Test func whatFollowsACutIsNotPartOfTheAnswer() throws {
        func chunk(_ text: String, _ finish: String?) -> [UInt8] {
            let reason = finish.map { "\"\($0)\"" } ?? "null"
            return Array("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\(text)\"},\"finish_reason\":\(reason)}]}\n\n".utf8)
        }
        let usage = Array("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n".utf8)
        for cut in ["length", "content_filter"] {
            let (events, end) = try ProviderFixtures.decode([chunk("a", nil), chunk("", cut), chunk("EXTRA", nil), chunk("", "stop"), usage],
                                                            with: OpenAICompatibleProvider())
            #expect(events.filter { if case .text = $0 { true } else { false } } == [.text("a")], "\(events)")
            #expect(events.filter { if case .finish = $0 { true } else { false } } == [.finish(FinishReason(rawValue: cut))], "\(events)")
            #expect(events.contains { if case .usage = $0 { true } else { false } } && end == .complete)
        }
        let (events, _) = try ProviderFixtures.decode([chunk("a", "stop"), chunk("b", "stop"), usage], with: OpenAICompatibleProvider())
        #expect(events.filter { if case .text = $0 { true } else { false } } == [.text("a"), .text("b")], "\(events)")
        // Another choice cut before choice 0 began does not cut choice 0's answer (review 75B #3).
        let one = Array(#"data: {"choices":[{"index":1,"delta":{"content":"XXX "},"finish_reason":null}]}\#n\#ndata: {"choices":[{"index":1,"delta":{},"finish_reason":"length"}]}\#n\#n"#.utf8)
        let (mixed, _) = try ProviderFixtures.decode([one, chunk("AAA ", nil), chunk("BBB", "stop"), usage], with: OpenAICompatibleProvider())
        let texts = mixed.compactMap { if case .text(let text) = $0 { text } else { nil } }.joined()
        #expect(texts.hasSuffix("AAA BBB") && mixed.last { if case .finish = $0 { true } else { false } } == .finish(.stop), "\(mixed)")
        // A cut in a chunk without `index` is choice 0's (review 76 #4: it was lost again).
        let unnumbered = Array(#"data: {"choices":[{"delta":{},"finish_reason":"length"}]}\#n\#n"#.utf8)
        let (cutUnnumbered, _) = try ProviderFixtures.decode([chunk("AAA ", nil), unnumbered, chunk("BBB", "stop"), usage], with: OpenAICompatibleProvider())
        #expect(cutUnnumbered.filter { if case .text = $0 { true } else { false } } == [.text("AAA ")], "\(cutUnnumbered)")
    }

    /// A named event other than `message` (or `error`) is no chat chunk: Fusion's inner calls
    /// skip it as the chat relay does (review 89's side note: a member's answer took the text of
    /// an `event: foo` chunk the proxy drops).
    @Test func aNamedEventOtherThanMessageIsNoChunk() throws {
        func chunk(_ text: String, named name: String?) -> [UInt8] {
            Array(((name.map { "event: \($0)\n" } ?? "") + #"data: {"choices":[{"index":0,"delta":{"content":"\#(text)"},"finish_reason":null}]}"# + "\n\n").utf8)
        }
        let end = Array("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n".utf8)
        let (events, _) = try ProviderFixtures.decode([chunk("a", named: nil), chunk("X", named: "foo"), chunk("b", named: "message"),
                                                       chunk("Y", named: "foo\u{0}bar"), chunk("c", named: nil), end], with: OpenAICompatibleProvider())
        #expect(events.compactMap { if case .text(let text) = $0 { text } else { nil } } == ["a", "b", "c"], "\(events)")
    }

    @Test func secretsInAnErrorChunkAreRedacted() throws {
        let bytes = Array(#"data: {"error":{"message":"bad key sk-live-123456 in Authorization: Bearer sk-live-123456"}}"#.utf8) + Array("\n\n".utf8)
        let (events, _) = try ProviderFixtures.decode([bytes], with: OpenAICompatibleProvider(), redactor: Redactor(secrets: ["sk-live-123456"]))
        guard case .error(let error)? = events.first else { Issue.record("no error event: \(events)"); return }
        #expect(!error.message.contains("sk-live-123456"))
        #expect(error.message.contains("[redacted]"))
    }
}

@Suite struct OpenAIProviderTests {
    @Test func requestsCarryTheModeledFieldsAndTheRestAsIs() throws {
        var request = ModelRequest(model: "gpt-x", messages: [
            ModelMessage(role: .system, text: "Be brief."),
            ModelMessage(role: .user, content: [.text("What is this?"), .image(url: "https://x.example/a.png", detail: "low")]),
            ModelMessage(role: .assistant, content: [], toolCalls: [ToolCall(index: 0, id: "c1", name: "look", arguments: "{}")]),
            ModelMessage(role: .tool, content: [.text("a cat")], toolCallID: "c1", name: "look"),
        ])
        request.tools = [.function(name: "look", description: "Look", parameters: .object(["type": .string("object")]), strict: nil)]
        request.toolChoice = .function("look")
        request.maxOutputTokens = 100
        request.temperature = 0.5
        request.stop = ["END"]
        request.extraFields = ["seed": .int(7), "user": .string("u1")]
        let endpoint = ProviderEndpoint(name: "p", baseURL: "https://p.example/v1", apiKey: "sk-p", headers: ["X-Title": "t"],
                                        maxTokensField: .maxCompletionTokens)
        let http = OpenAICompatibleProvider().httpRequest(for: request, endpoint: endpoint, extraHeaders: [("x-fusion-depth", "1")])
        #expect(http.url == "https://p.example/v1/chat/completions")
        #expect(http.headers.contains { $0 == ("Authorization", "Bearer sk-p") })
        #expect(http.headers.contains { $0 == ("X-Title", "t") } && http.headers.contains { $0 == ("x-fusion-depth", "1") })
        let body = try JSONValue.parse(http.body)
        #expect(body["model"] == .string("gpt-x"))
        #expect(body["max_completion_tokens"] == .int(100) && body["max_tokens"] == nil)
        #expect(body["seed"] == .int(7) && body["user"] == .string("u1"))
        #expect(body["stream_options"]?["include_usage"] == .bool(true))
        #expect(body["tool_choice"]?["function"]?["name"] == .string("look"))
        let messages = try #require(body["messages"]?.arrayValue)
        #expect(messages[1]["content"]?.arrayValue?[1]["image_url"]?["url"] == .string("https://x.example/a.png"))
        // An assistant turn with only tool calls has "" content, never null (llama.cpp rejects null).
        #expect(messages[2]["content"] == .string(""))
        #expect(messages[2]["tool_calls"]?.arrayValue?.first?["function"]?["name"] == .string("look"))
        #expect(messages[3]["tool_call_id"] == .string("c1"))
    }

    /// llama-cpp-python repeats a call's id and name on every fragment: passed on once, as
    /// OpenAI sends them (a client's accumulator would concatenate them).
    @Test func aCallsIdAndNameRepeatedOnEveryFragmentArePassedOnOnce() throws {
        let fragment = { (arguments: String) in
            Array(#"data: {"choices":[{"index":0,"delta":{"role":null,"content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"lookup","arguments":"\#(arguments)"}}]},"finish_reason":null}]}\#n\#n"#.utf8)
        }
        let chunks = [fragment("{\\\"q\\\""), fragment(":1}"), Array(#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\#n\#ndata: [DONE]\#n\#n"#.utf8)]
        let (events, end) = try ProviderFixtures.decode(chunks, with: OpenAICompatibleProvider())
        let fragments = events.compactMap { if case .toolCall(let fragment) = $0 { fragment } else { nil } }
        #expect(fragments.map(\.id) == ["call_1", nil] && fragments.map(\.name) == ["lookup", nil], "\(fragments)")
        var calls = ToolCallAccumulator()
        fragments.forEach { calls.add($0) }
        #expect(calls.calls.map(\.name) == ["lookup"] && calls.calls.map(\.arguments) == [#"{"q":1}"#] && end == .complete)
    }

    /// Servers that number every parallel call 0, or leave `index` out, tell calls apart by id
    /// (review 18 B7): a new id at a used index is a new call, not more of the old one's arguments.
    @Test(arguments: [#""index":0,"#, ""])
    func aNewIDAtAnIndexInUseStartsANewCall(index: String) throws {
        let call = { (id: String, name: String, arguments: String) in
            let head = id.isEmpty ? "" : #""id":"\#(id)","type":"function","#
            let function = name.isEmpty ? #"{"arguments":"\#(arguments)"}"# : #"{"name":"\#(name)","arguments":"\#(arguments)"}"#
            return Array(#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{\#(index)\#(head)"function":\#(function)}]}}]}\#n\#n"#.utf8)
        }
        let chunks = [call("call_A", "fa", #"{\"a\""#), call("", "", ":1}"), call("call_Z", "fz", #"{\"z\":"#), call("", "", "1}"),
                      Array(#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\#n\#ndata: [DONE]\#n\#n"#.utf8)]
        let (events, _) = try ProviderFixtures.decode(chunks, with: OpenAICompatibleProvider())
        var calls = ToolCallAccumulator()
        events.forEach { if case .toolCall(let fragment) = $0 { calls.add(fragment) } }
        #expect(calls.calls.map(\.id) == ["call_A", "call_Z"] && calls.calls.map(\.name) == ["fa", "fz"], "\(calls.calls)")
        #expect(calls.calls.map(\.arguments) == [#"{"a":1}"#, #"{"z":1}"#] && calls.calls.map(\.index) == [0, 1])
    }

    /// A whole message whose calls all carry index 0 is still that many calls.
    @Test func aWholeMessagesCallsAreEachTheirOwnWhateverTheirIndex() throws {
        let body = Array(#"{"choices":[{"message":{"role":"assistant","tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},{"index":0,"id":"b","type":"function","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#.utf8)
        let events = try OpenAICompatibleProvider().decodeResponse(body, redactor: .none)
        #expect(events.filter { if case .toolCall = $0 { true } else { false } } == [
            .toolCall(ToolCallFragment(index: 0, id: "a", name: "f", arguments: "{}")), .toolCall(ToolCallFragment(index: 1, id: "b", name: "g", arguments: "{}")),
        ])
    }

    /// The answer is choice 0, whatever order a server sends choices in, and a choice it was not
    /// asked for is not merged into it (review 52A #8: "B2" instead of "A!"); a server numbering
    /// its only choice 1 is still read.
    @Test func choiceZeroIsTheAnswerWhateverItsPosition() throws {
        let chunk = { (choices: String) in Array("data: {\"choices\":[\(choices)]}\n\n".utf8) }
        let chunks = [chunk(#"{"index":1,"delta":{"content":"B"}},{"index":0,"delta":{"content":"A"}}"#), chunk(#"{"index":1,"delta":{"content":"2"}}"#),
                      chunk(#"{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}"#), Array("data: [DONE]\n\n".utf8)]
        for split in [chunks, [chunks.joined().map { $0 }]] {
            let (events, end) = try ProviderFixtures.decode(split, with: OpenAICompatibleProvider())
            #expect(events == [.text("A"), .text("!"), .finish(.stop)] && end == .complete, "\(events)")
        }
        let (lone, _) = try ProviderFixtures.decode([chunk(#"{"index":1,"delta":{"content":"x"},"finish_reason":"stop"}"#)], with: OpenAICompatibleProvider())
        #expect(lone == [.text("x"), .finish(.stop)], "\(lone)")
        let body = Array(#"{"choices":[{"index":1,"message":{"role":"assistant","content":"B"},"finish_reason":"stop"},{"index":0,"message":{"role":"assistant","content":"A"},"finish_reason":"length"}]}"#.utf8)
        #expect(try OpenAICompatibleProvider().decodeResponse(body, redactor: .none) == [.text("A"), .finish(.length)])
    }

    /// Parallel calls sharing one id (DeepSeek, GLM) each get an id of their own (review 52A #2).
    @Test func aWholeMessagesCallsSharingAnIDEachGetTheirOwn() throws {
        let body = Array(#"{"choices":[{"message":{"role":"assistant","tool_calls":[{"id":"same","type":"function","function":{"name":"f","arguments":"{}"}},{"id":"same","type":"function","function":{"name":"g","arguments":"{}"}},{"id":"same_1","type":"function","function":{"name":"h","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#.utf8)
        let events = try OpenAICompatibleProvider().decodeResponse(body, redactor: .none)
        #expect(events.compactMap { if case .toolCall(let call) = $0 { call.id } else { nil } } == ["same", "same_1", "same_1_1"], "\(events)")
    }

    @Test func aWholeResponseDecodesToTheEventsOfAStream() throws {
        let body = Array(#"{"choices":[{"message":{"role":"assistant","content":"Hi","reasoning":"hm","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#.utf8)
        let events = try OpenAICompatibleProvider().decodeResponse(body, redactor: .none)
        #expect(events == [.reasoning("hm"), .text("Hi"), .toolCall(ToolCallFragment(index: 0, id: "c", name: "f", arguments: "{}")),
                           .finish(.toolCalls), .usage(Usage(promptTokens: 3, completionTokens: 2, totalTokens: 5))])
    }

    /// A 200 without a choice (OpenRouter's `:free` providers' error-shaped body) is no answer:
    /// a protocol error, so the proxy retries or falls back (review 52A #3: an empty success).
    @Test func aWholeResponseWithoutAChoiceIsAProtocolError() throws {
        for body in [#"{"id":"gen-1","object":"chat.completion","created":1,"model":"x","provider":"Chutes"}"#,
                     #"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":0,"total_tokens":3}}"#, #"{"choices":null}"#] {
            let events = try OpenAICompatibleProvider().decodeResponse(Array(body.utf8), redactor: .none)
            #expect(events.count == 1 && { if case .error(let error) = events[0] { error.code == "upstream_protocol_error" && error.status == 502 } else { false } }(),
                    "\(body): \(events)")
        }
    }

    /// Arguments sent as a JSON object rather than its text are read as that text, not dropped
    /// (review 16 #7: the call went out with empty arguments).
    @Test func argumentsSentAsAnObjectAreItsText() throws {
        let body = Array(#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":{"city":"Paris"}}}]},"finish_reason":"tool_calls"}]}"#.utf8)
        let events = try OpenAICompatibleProvider().decodeResponse(body, redactor: .none)
        #expect(events.contains(.toolCall(ToolCallFragment(index: 0, id: "c", name: "f", arguments: #"{"city":"Paris"}"#))), "\(events)")
    }

    @Test func errorsKeepTheUpstreamMessageTrimmedAndTheStatusForClientErrors() {
        let error = OpenAICompatibleProvider().error(
            status: 400, body: Array(#"{"error":{"message":"context too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#.utf8),
            headers: [], provider: "openrouter", redactor: .none)
        #expect(error.status == 400)
        #expect(error.code == "context_length_exceeded")
        #expect(error.message.contains("context too long"))
        let dump = String(repeating: "at /srv/app/validation.py line 12\n", count: 200)
        let trimmed = OpenAICompatibleProvider().error(status: 422, body: Array(dump.utf8), headers: [], provider: "p", redactor: .none)
        #expect(trimmed.message.count < 400 && !trimmed.message.contains("\n"))
    }

    @Test func credentialFailuresBecomeBadGatewayAndSecretsAreRedacted() {
        let error = OpenAICompatibleProvider().error(
            status: 401, body: Array(#"{"error":{"message":"invalid key sk-secret-123"}}"#.utf8),
            headers: [], provider: "openai", redactor: Redactor(secrets: ["sk-secret-123"]))
        #expect(error.status == 502)
        #expect(error.code == "upstream_auth_failed")
        #expect(!error.message.contains("sk-secret-123"))
        #expect(error.message.contains("[redacted]"))
        // A key fits a label's characters: a type or code carrying one is left out, on every
        // provider's errors and mid-stream (review 42: a code went out as the provider's key).
        let key = "sk-live-0123456789abcdef"
        let body = Array(#"{"error":{"message":"m","type":"\#(key)","code":"\#(key)"},"type":"error"}"#.utf8)
        let providers: [any Provider] = [OpenAICompatibleProvider(), AnthropicProvider(), GeminiProvider()]
        for provider in providers {
            for status in [400, 404, 500, 503] {
                let echoed = provider.error(status: status, body: body, headers: [], provider: "p", redactor: Redactor(secrets: [key]))
                #expect(!echoed.code.contains(key) && !echoed.type.contains(key) && !echoed.message.contains(key), "\(provider) \(status): \(echoed)")
            }
        }
        // Redacted before it is shortened: a key past the first KiB of a body (blank lines, which
        // the one-line message drops) is not cut in half and let through.
        let long = String(repeating: "\n", count: 1_010) + key + String(repeating: "y", count: 3_000)
        let cut = OpenAICompatibleProvider().error(status: 500, body: Array(long.utf8), headers: [], provider: "p", redactor: Redactor(secrets: [key]))
        #expect(!cut.message.contains("sk-live-01234"), "\(cut.message)")
    }

    @Test func rateLimitsKeepRetryAfter() {
        let error = OpenAICompatibleProvider().error(status: 429, body: Array("slow down".utf8),
                                                     headers: [("Retry-After", "3"), ("X-Other", "1")], provider: "p", redactor: .none)
        #expect(error.status == 429)
        #expect(error.headers.map(\.0) == ["Retry-After"])
        #expect(error.message.contains("slow down"))
    }

    /// No quota left is no rate limit: never retried, told as a 402 with OpenAI's own code; a
    /// moderation refusal is about the client's content, not the gateway's key (review 74A #4).
    @Test func noQuotaAndModerationAreToldForWhatTheyAre() {
        let provider = OpenAICompatibleProvider()
        let quota = Array(#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#.utf8)
        #expect(provider.meaningOfStatus(429, body: quota) == 402)
        #expect(provider.meaningOfStatus(429, body: Array(#"{"error":{"code":"rate_limit_exceeded"}}"#.utf8)) == 429)
        let error = provider.error(status: 429, body: quota, headers: [], provider: "p", redactor: .none)
        #expect(error.status == 402 && error.code == "insufficient_quota" && error.message.contains("HTTP 429"), "\(error)")
        #expect(RetryPolicy().decide(status: provider.meaningOfStatus(429, body: quota), connectFailed: false, headers: [], attempt: 1,
                                     hasNextModel: false, jitter: 0) == .fail)
        let flagged = Array(#"{"error":{"code":403,"message":"Your input was flagged for \"harassment\"","metadata":{"reasons":["harassment"],"flagged_input":"x"}}}"#.utf8)
        let refusal = provider.error(status: 403, body: flagged, headers: [], provider: "p", redactor: .none)
        #expect(refusal.status == 403 && refusal.code == "content_flagged" && refusal.message.contains("harassment"), "\(refusal)")
        let denied = provider.error(status: 403, body: Array(#"{"error":{"message":"bad key"}}"#.utf8), headers: [], provider: "p", redactor: .none)
        #expect(denied.status == 502 && denied.code == "upstream_auth_failed")
    }

    @Test func anUpstreamCannotChooseArbitraryErrorCodes() {
        let error = OpenAICompatibleProvider().error(
            status: 400, body: Array(#"{"error":{"message":"m","type":"x y\nz","code":"\#(String(repeating: "a", count: 500))"}}"#.utf8),
            headers: [], provider: "p", redactor: .none)
        #expect(error.code == "upstream_rejected" && error.type == "invalid_request_error")
    }
}

@Suite struct UsageTests {
    /// A reported total below the prompt and completion it sums (clamped, or simply wrong) is
    /// their sum, so no client sees output_tokens above total_tokens (review 52A #9); a larger
    /// one (a server counting something more) is kept.
    @Test func anOpenAITotalIsAtLeastThePromptAndCompletion() {
        let hostile = Usage(openAI: .object(["prompt_tokens": .int(-5), "completion_tokens": .double(1e300), "total_tokens": .double(1.5)]))
        #expect(hostile?.promptTokens == 0 && hostile?.completionTokens == Usage.maxTokens && hostile?.totalTokens == Usage.maxTokens)
        let short = Usage(openAI: .object(["prompt_tokens": .int(3), "completion_tokens": .int(4), "total_tokens": .int(5)]))
        #expect(short?.totalTokens == 7)
        let larger = Usage(openAI: .object(["prompt_tokens": .int(3), "completion_tokens": .int(4), "total_tokens": .int(9)]))
        #expect(larger?.totalTokens == 9)
        let saturated = Usage(openAI: .object(["prompt_tokens": .double(1e300), "completion_tokens": .double(1e300)]))
        #expect(saturated?.totalTokens == Usage.maxTokens)
    }

    @Test func countsAreClampedAndSumsSaturate() {
        let huge = Usage(openAI: .object(["prompt_tokens": .double(1e300), "completion_tokens": .int(-3), "total_tokens": .double(.nan)]))
        #expect(huge?.promptTokens == Usage.maxTokens && huge?.completionTokens == 0 && huge?.totalTokens == Usage.maxTokens)
        var sum = Usage()
        for _ in 0..<10_000 { sum = sum + Usage(promptTokens: .max, completionTokens: .max, totalTokens: .max, cost: 1e300) }
        #expect(sum.promptTokens == Usage.maxTokens)
        #expect(sum.cost.isFinite)
    }
}
