import GatewayCore
import PropertyBased
import Providers
import Testing

/// Upstream bytes are hostile: whatever a stream or an error body holds, decoding ends in events,
/// a typed `StreamDecodingError` or an `APIError`, never a trap, and no decoder emits a tool call
/// index out of range or a usage count beyond `Usage.maxTokens`.
@Suite struct DecoderPropertyTests {
    static let providers: [any Provider] = [OpenAICompatibleProvider(), AnthropicProvider(), GeminiProvider()]

    /// Pieces of each vendor's stream with hostile values, and bytes that break framing.
    static let pieces: [String] = [
        "\n", "\r\n", "\r", "\n\n", "\r\n\r\n", ": ping\n", "event: ", "data: ", "id: 1\n", "{", "}", "[", "]", "\"", "\\", ",", ":",
        "message_start", "content_block_start", "content_block_delta", "message_delta", "message_stop", "error", "ping",
        #"{"type":"message_start","message":{"usage":{"input_tokens":1e999,"output_tokens":-1}}}"#,
        #"{"type":"content_block_start","index":9223372036854775807,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#,
        #"{"type":"content_block_start","index":-1,"content_block":{"type":"tool_use"}}"#,
        #"{"type":"content_block_delta","index":9223372036854775807,"delta":{"type":"input_json_delta","partial_json":"{"}}"#,
        #"{"type":"content_block_delta","index":1e300,"delta":{"type":"text_delta","text":"\u0000\u2028"}}"#,
        #"{"type":"message_delta","delta":{"stop_reason":7},"usage":{"output_tokens":"x","cache_read_input_tokens":1e308}}"#,
        #"{"type":"message_stop"}"#, #"{"type":"error","error":{"type":["x"],"message":{"a":1}}}"#,
        #"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":[1]}},{"text":5,"thought":"yes"}]},"finishReason":"STOP"}]}"#,
        #"{"candidates":[{"content":{"parts":[{"functionCall":{"id":7}}]}}],"usageMetadata":{"promptTokenCount":-1e999,"totalTokenCount":1e20}}"#,
        #"{"candidates":{"not":"an array"},"usageMetadata":[]}"#, #"{"promptFeedback":{"blockReason":null}}"#,
        #"{"error":{"code":9223372036854775807,"status":5}}"#, #"{"error":null}"#,
        #"{"choices":[{"delta":{"tool_calls":[{"index":99999999999,"function":{"arguments":"x"}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":1e999}}"#,
        "[DONE]", "\u{0}", "\u{FF}", "é", "🙂",
    ]

    static let streams = zip(Gen.element(of: pieces), Gen.uint8(in: 0...255), Gen.int(in: 0...5))
        .map { piece, byte, choice -> [UInt8] in choice == 0 ? [byte] : Array((piece ?? "").utf8) }
        .array(of: 0...40)
        .map { $0.flatMap { $0 } }

    /// Decodes `bytes` in two pieces, checking every event's numbers.
    static func decodeChecked(_ bytes: [UInt8], _ provider: any Provider, cut: Int) {
        var decoder = provider.streamDecoder(maxEventBytes: 4096, redactor: Redactor(secrets: ["secret-key"]))
        let cut = min(cut, bytes.count)
        for chunk in [Array(bytes[..<cut]), Array(bytes[cut...])] {
            do {
                _ = try chunk.withUnsafeBytes { buffer in
                    try decoder.decode(buffer) { event in check(event) }
                }
            } catch {
                return  // a typed protocol error: the gateway fails the stream with it
            }
        }
        try? decoder.finish { event in check(event) }  // a last line without its line end, read at the body's end
        _ = decoder.end()
    }

    static func check(_ event: ModelEvent) {
        switch event {
        case .toolCall(let fragment):
            #expect((0...1024).contains(fragment.index))
        case .usage(let usage):
            for count in [usage.promptTokens, usage.completionTokens, usage.totalTokens, usage.reasoningTokens, usage.cachedTokens] {
                #expect((0...Usage.maxTokens).contains(count))
            }
        case .error(let error):
            #expect((400...599).contains(error.status))
        default:
            break
        }
    }

    @Test func noStreamTrapsAnyDecoder() async {
        await propertyCheck(count: 600, input: Self.streams, Gen.int(in: 0...2), Gen.int(in: 0...2000)) { bytes, which, cut in
            Self.decodeChecked(bytes, Self.providers[which], cut: cut)
        }
    }

    @Test func randomBytesTrapNoDecoder() async {
        await propertyCheck(count: 300, input: Gen.uint8(in: 0...255).array(of: 0...300), Gen.int(in: 0...2)) { bytes, which in
            Self.decodeChecked(bytes, Self.providers[which], cut: bytes.count / 2)
        }
    }

    @Test func mangledFixturesTrapNoDecoder() async throws {
        let fixtures = try ["anthropic-tool-use", "anthropic-thinking", "gemini-function-call", "gemini-error-midstream", "openai-tool-calls"]
            .map { (name: $0, bytes: try ProviderFixtures.stream($0)) }
        await propertyCheck(count: 400, input: Gen.int(in: 0...4), Gen.int(in: 0...4000), Gen.int(in: 0...4000), Gen.element(of: Self.pieces)) {
            which, start, length, insert in
            let fixture = fixtures[which]
            var bytes = fixture.bytes
            let from = min(start, bytes.count)
            bytes.replaceSubrange(from..<min(from + length % 64, bytes.count), with: Array((insert ?? "").utf8))
            Self.decodeChecked(bytes, ProviderFixtures.provider(for: fixture.name), cut: length)
        }
    }

    @Test func noResponseOrErrorBodyTraps() async {
        let bodies = zip(Gen.element(of: Self.pieces), Gen.uint8(in: 0...255), Gen.int(in: 0...3))
            .map { piece, byte, choice -> [UInt8] in choice == 0 ? [byte] : Array((piece ?? "").utf8) }
            .array(of: 0...12).map { $0.flatMap { $0 } }
        await propertyCheck(count: 400, input: bodies, Gen.int(in: 0...2), Gen.int(in: -1...1000)) { body, which, status in
            let provider = Self.providers[which]
            if let events = try? provider.decodeResponse(body, redactor: .none) { events.forEach(Self.check) }
            let error = provider.error(status: status, body: body, headers: [("retry-after", "1")], provider: "p",
                                       redactor: Redactor(secrets: ["secret-key"]))
            #expect((400...599).contains(error.status) && error.message.count < 400 && !error.message.contains("\n"))
        }
    }
}

/// An upstream's `Retry-After` / `retry-after-ms` reach the client as the numbers they were read
/// as, or not at all: never its bytes.
@Suite struct RetryHeaderTests {
    /// An upstream's 4xx names the client's field as OpenAI's shape does (review 68A #7); a
    /// `param` that is no field path, or hides a secret, is left out.
    @Test func aRefusalKeepsTheFieldItNames() {
        func param(_ value: String, status: Int = 400) -> String? {
            let body = #"{"error":{"message":"bad","param":"\#(value)","code":"bad"}}"#
            return OpenAICompatibleProvider().error(status: status, body: Array(body.utf8), headers: [], provider: "p",
                                                    redactor: Redactor(secrets: ["sk-secret-123456789"])).param
        }
        #expect(param("messages[0].content") == "messages[0].content")
        #expect(param("a b") == nil && param("sk-secret-123456789") == nil && param(String(repeating: "x", count: 200)) == nil)
        #expect(param("model", status: 500) == nil, "a server's own failure names no field of the client's")
    }

    @Test(arguments: [
        ([("Retry-After", "20")], [("Retry-After", "20")]),
        ([("retry-after", " 3 ")], [("Retry-After", "3")]),
        ([("retry-after-ms", "1500")], [("retry-after-ms", "1500")]),
        ([("retry-after-ms", "1.2"), ("Retry-After", "2")], [("retry-after-ms", "2"), ("Retry-After", "2")]),
        ([("Retry-After", "99999999999999999999")], [("Retry-After", "86400")]),
        ([("Retry-After", "1e400")], []), ([("Retry-After", "-5")], []), ([("Retry-After", "100abc")], []),
        ([("Retry-After", "1,2")], []), ([("Retry-After", "a\u{1B}[31mb")], []), ([("retry-after-ms", "nan")], []),
        ([("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")], []),  // passed: retry now
        ([("Retry-After", "Wed, 21 Oct 2099 07:28:00 GMT")], [("Retry-After", "86400")]),  // an HTTP date (review 68A #8)
        ([("Retry-After", "Wed, 32 Oct 2099 07:28:00 GMT")], []), ([("Retry-After", "Wed, 21 Okt 2099 07:28:00 GMT")], []),
    ])
    func passedOnAsNumbers(headers: [(String, String)], expected: [(String, String)]) {
        let error = OpenAICompatibleProvider().error(status: 429, body: Array("{}".utf8), headers: headers, provider: "p", redactor: Redactor(secrets: []))
        #expect(error.headers.map { "\($0.0): \($0.1)" } == expected.map { "\($0.0): \($0.1)" })
    }
}
