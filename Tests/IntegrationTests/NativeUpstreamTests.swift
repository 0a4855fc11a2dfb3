import EventLoop
import Foundation
import Fusion
import Gateway
import GatewayCore
import MockUpstream
import Providers
import Testing

/// The simulator's Anthropic and Gemini routes over loopback, asked by the gateway's own
/// providers, and Fusion with panel members, judge and outer model behind native APIs.
@Suite struct NativeUpstreamTests {
    /// `request` as the provider builds it, sent to the mock; the response read whole.
    func send(_ request: ModelRequest, with provider: any Provider, port: Int, base: String, key: String? = "k-any",
              dropping dropped: Set<String> = []) throws -> TestResponse {
        let endpoint = ProviderEndpoint(name: "sim", baseURL: "http://127.0.0.1:\(port)\(base)", apiKey: key)
        let http = provider.httpRequest(for: request, endpoint: endpoint, extraHeaders: [])
        let path = String(http.url.dropFirst("http://127.0.0.1:\(port)".count))
        var text = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in http.headers where !dropped.contains(name.lowercased()) { text += "\(name): \(value)\r\n" }
        let client = try TestClient(port: port)
        try client.send(Array((text + "Content-Length: \(http.body.count)\r\n\r\n").utf8) + http.body)
        return try client.readResponse()
    }

    func events(_ response: TestResponse, _ provider: any Provider) throws -> ([ModelEvent], StreamEnd) {
        var decoder = provider.streamDecoder(maxEventBytes: 1 << 20, redactor: .none)
        var events: [ModelEvent] = []
        for chunk in response.chunks { _ = try chunk.withUnsafeBytes { try decoder.decode($0) { events.append($0) } } }
        try decoder.finish { events.append($0) }  // the body's end, as the relays read it
        return (events, decoder.end())
    }

    static let vendors: [(name: String, provider: any Provider, base: String)] = [
        ("anthropic", AnthropicProvider(), "/v1"), ("gemini", GeminiProvider(), "/v1beta"),
    ]

    @Test(arguments: 0..<2)
    func theSimulatorAnswersEachVendorInItsOwnWireFormat(vendor: Int) throws {
        let (name, provider, base) = Self.vendors[vendor]
        let env = try TestEnvironment()
        var request = ModelRequest(model: "tool-call:pace_ms=0", messages: [ModelMessage(role: .user, text: "Weather in Paris?")])
        let streamed = try send(request, with: provider, port: env.mockPort, base: base)
        #expect(streamed.status == 200 && streamed.header("content-type") == "text/event-stream", "\(name): \(streamed.text)")
        let (events, end) = try self.events(streamed, provider)
        #expect(end == .complete, "\(name)")
        var calls = ToolCallAccumulator()
        for case .toolCall(let fragment) in events { calls.add(fragment) }
        #expect(calls.calls.map(\.name) == ["get_weather"], "\(name)")
        #expect(events.contains(.finish(.toolCalls)), "\(name)")

        request.model = "normal:pace_ms=0"
        request.stream = false
        let whole = try send(request, with: provider, port: env.mockPort, base: base)
        let answer = try provider.decodeResponse(whole.body, redactor: .none)
        #expect(answer.contains { if case .text(let text) = $0 { text.contains("Weather in Paris?") } else { false } }, "\(name): \(whole.text)")
        #expect(answer.contains(.finish(.stop)))
    }

    @Test(arguments: 0..<2)
    func errorsComeInTheVendorsShapeWithTheirHeaders(vendor: Int) throws {
        let (name, provider, base) = Self.vendors[vendor]
        let env = try TestEnvironment()
        let request = ModelRequest(model: "rate-limited:retry_after=3", messages: [ModelMessage(role: .user, text: "hi")])
        let limited = try send(request, with: provider, port: env.mockPort, base: base)
        // Google says it in the body only (read into `retry-after-ms` by the provider).
        #expect(limited.status == 429 && limited.header("retry-after") == (name == "gemini" ? nil : "3"), "\(name)")
        let mapped = provider.error(status: limited.status, body: limited.body, headers: limited.headers, provider: "sim", redactor: .none)
        #expect(mapped.code == "rate_limited" && mapped.headers.count == 1 && mapped.headers.first?.1 == (name == "gemini" ? "3000" : "3"), "\(name): \(mapped)")

        let keyless = try send(request, with: provider, port: env.mockPort, base: base, key: nil)
        #expect(keyless.status == 401, "\(name): a vendor route needs a key, as the real API does")
        if name == "anthropic" {
            #expect(keyless.json?["error"]?["type"] == .string("authentication_error"))
            let versionless = try send(request, with: provider, port: env.mockPort, base: base, dropping: ["anthropic-version"])
            #expect(versionless.status == 400 && versionless.json?["error"]?["message"]?.stringValue?.contains("anthropic-version") == true)
        } else {
            #expect(keyless.json?["error"]?["status"] == .string("UNAUTHENTICATED"))
            let client = try TestClient(port: env.mockPort)
            try client.send(TestEnvironment.post("/v1beta/models/normal:streamGenerateContent", body: "{}", headers: ["x-goog-api-key": "k"]))
            let response = try client.readResponse()
            #expect(response.status == 400 && response.json?["error"]?["status"] == .string("INVALID_ARGUMENT"), "alt=sse is required")
        }
        let midStream = try send(ModelRequest(model: "error-mid-stream:pace_ms=0", messages: [ModelMessage(role: .user, text: "hi")]),
                                 with: provider, port: env.mockPort, base: base)
        guard case .error(let error)? = try events(midStream, provider).0.last else { Issue.record("\(name): \(midStream.text)"); return }
        #expect(error.status == 503, "\(name): overloaded / unavailable")
    }

    @Test func theAccessKeyMayComeInTheVendorsHeader() throws {
        let keyed = try KeyedSimulator()
        let port = keyed.port
        defer { withExtendedLifetime(keyed) {} }  // serving to the test's end
        let request = ModelRequest(model: "normal:pace_ms=0", messages: [ModelMessage(role: .user, text: "hi")], stream: false)
        for (name, provider, base) in Self.vendors {
            #expect(try send(request, with: provider, port: port, base: base, key: "sim-key-0123456789").status == 200, "\(name)")
            // Google refuses a key with a 400 (`API_KEY_INVALID`), the others with a 401.
            #expect(try send(request, with: provider, port: port, base: base, key: "sim-key-wrong").status == (name == "gemini" ? 400 : 401), "\(name)")
        }
        // The OpenAI route takes the key as a bearer token only.
        let client = try TestClient(port: port)
        try client.send(TestEnvironment.post("/v1/chat/completions", body: TestEnvironment.chatBody(model: "normal", stream: false),
                                             headers: ["x-api-key": "sim-key-0123456789"]))
        #expect(try client.readResponse().status == 401)
    }

    /// A Gemini key Google refuses (a 400, `API_KEY_INVALID`) is the gateway's problem: the
    /// route's next model answers, and without one the client gets a 502, never a 400 that says
    /// its own request was wrong (review 44 Gemini F1).
    @Test func aGeminiKeyGoogleRefusesFallsBackAndIsNeverTheClientsFault() throws {
        let keyed = try KeyedSimulator()  // takes one key, as Google does
        let port = keyed.port
        defer { withExtendedLifetime(keyed) {} }  // serving to the test's end
        let env = try TestEnvironment(environment: ["WRONG_GEMINI_KEY": "sim-key-wrong"]) { config in
            config.providers["gem"] = .init(name: "gem", kind: .gemini, baseURL: "http://127.0.0.1:\(port)/v1beta",
                                            apiKeyEnvironmentVariable: "WRONG_GEMINI_KEY")
        }
        let fallback = try env.chat(#"{"model":"gem/normal:pace_ms=0","models":["mock/normal:pace_ms=0"],"messages":[{"role":"user","content":"hi"}]}"#)
        #expect(fallback.status == 200, "\(fallback.text)")
        #expect(fallback.json?["model"]?.stringValue == "mock/normal:pace_ms=0", "\(fallback.text)")
        let alone = try env.chat(#"{"model":"gem/normal:pace_ms=0","messages":[{"role":"user","content":"hi"}]}"#)
        #expect(alone.status == 502 && alone.json?["error"]?["code"]?.stringValue == "upstream_auth_failed", "\(alone.text)")
    }

    /// What the outer model's API cannot express is refused before the panel runs, as for a
    /// proxied request, in the client's API's names (review 64B #1: an Anthropic outer model
    /// dropped a json_schema format and an `allowed_tools` choice without a word).
    @Test func aDeliberationsOuterModelRefusesWhatItsAPICannotExpress() throws {
        let env = try TestEnvironment { config in
            let base = config.providers["mock"]!.baseURL
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: base, apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
        }
        // A json_schema format without its schema (one with it is Anthropic's `output_config.format`).
        let schema = #"{"type":"json_schema","json_schema":{"name":"x"}}"#
        let chat = try env.chat(#"{"model":"anth/outer:pace_ms=1","response_format":\#(schema),"messages":[{"role":"user","content":"Q?"}],"tools":[{"type":"fusion"}]}"#)
        #expect(chat.status == 400 && chat.json?["error"]?["param"]?.stringValue == "response_format", "\(chat.text)")
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/responses", body: #"{"model":"anth/outer:pace_ms=1","input":"Q?","tools":[{"type":"openrouter:fusion"},{"type":"function","name":"f","parameters":{"type":"object"}}],"tool_choice":{"type":"allowed_tools","mode":"auto","tools":[{"type":"function","name":"f"}]}}"#))
        let responses = try client.readResponse()
        #expect(responses.status == 400 && responses.json?["error"]?["param"]?.stringValue == "tool_choice", "\(responses.text)")
        #expect(env.mockStats.counts.requests == 0, "no panel ran")
        // A fallback's API counts as the outer model's does.
        let fallback = try env.chat(#"{"model":"mock/outer:pace_ms=1","models":["anth/outer"],"response_format":\#(schema),"messages":[{"role":"user","content":"Q?"}],"tools":[{"type":"fusion"}]}"#)
        #expect(fallback.status == 400, "\(fallback.text)")
        // A tool is named by its place in the client's list, the fusion tool counted (review 65 #4).
        let tool = try env.chat(#"{"model":"anth/outer:pace_ms=1","messages":[{"role":"user","content":"Q?"}],"tools":[{"type":"function","function":{"name":"a","parameters":{"type":"object"}}},{"type":"fusion"},{"type":"web_search_preview"}]}"#)
        #expect(tool.status == 400 && tool.json?["error"]?["param"]?.stringValue == "tools[2]", "\(tool.text)")
    }

    /// Inner calls decode each provider's stream into the same events: a panel spread over three
    /// APIs, judged behind Gemini, answered behind Anthropic.
    @Test func fusionRunsOverEveryVendorsAPI() throws {
        let env = try TestEnvironment { config in
            let base = config.providers["mock"]!.baseURL
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: base, apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
            config.providers["gem"] = .init(name: "gem", kind: .gemini, baseURL: String(base.dropLast(3)) + "/v1beta",
                                            apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
            config.fusion?.outerModel = "anth/outer:pace_ms=1"
            config.fusion?.presets["quality"] = .init(analysisModels: ["anth/expert-1:pace_ms=1", "gem/expert-2:pace_ms=1", "mock/expert-3:pace_ms=1"],
                                                      judge: "gem/outer:pace_ms=1")
        }
        let body = #"{"model":"fusion","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Should cities ban cars from their centres?"}]}"#
        let response = try env.chat(body)
        #expect(response.status == 200, "\(response.text)")
        let answer = response.plainChunksJSON.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.joined()
        #expect(answer.hasPrefix("Drawing on a panel of 3 models (3 answered):"), "\(response.text)")
        #expect(answer.contains("A unique insight from gem/expert-2:pace_ms=1"))
        #expect(response.comments.contains { $0.hasPrefix("fusion judge gem/outer:pace_ms=1: analysis ready") })
        let calls = response.plainChunksJSON.last?["usage"]?["fusion"]?["calls"]?.arrayValue ?? []
        #expect(calls.count == 6 && calls.allSatisfy { ($0["completion_tokens"]?.intValue ?? 0) > 0 }, "usage from every API: \(calls)")
        #expect(env.mockStats.lastRequestHeader("x-api-key") == TestEnvironment.secretKey
                    || env.mockStats.lastRequestHeader("x-goog-api-key") == TestEnvironment.secretKey)
    }
}

/// A simulator on its own loop that answers only the key `sim-key-0123456789`.
final class KeyedSimulator: @unchecked Sendable {
    let thread = EventLoopThread(name: "keyed-mock")
    private var mock: MockUpstream?  // on `thread.loop` only
    private(set) var port = 0

    init() throws {
        port = try thread.loop.submitAndWait { [self] () -> Int in
            let mock = try MockUpstream(loop: thread.loop, port: 0, accessKey: "sim-key-0123456789")
            self.mock = mock
            return mock.port
        }
    }

    deinit {
        thread.loop.execute { [self] in mock?.shutdown() }
        thread.shutdown()
    }
}
