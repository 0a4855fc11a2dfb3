import Foundation
import Fusion
import Gateway
import GatewayCore
import MockUpstream
import Testing

/// `POST /v1/messages/count_tokens` over loopback: counted by an Anthropic upstream (the client's
/// body, its model the upstream's, the provider's key; Fusion by its outer model); a 404 for
/// any other model or a provider without the endpoint (never an estimate); errors in
/// Anthropic's shape with the upstream's status.
@Suite(.timeLimit(.minutes(1))) struct TokenCountRouteTests {
    static let body = #"{"model":"MODEL","system":"Be brief.","messages":[{"role":"user","content":"Hello there, how are you today?"}],"tools":[{"name":"get_weather","description":"The weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}]}"#

    func count(_ env: TestEnvironment, model: String, body: String = Self.body, path: String = "/v1/messages/count_tokens?beta=true") throws -> TestResponse {
        let client = try env.client()
        try client.send(TestEnvironment.post(path, body: body.replacingOccurrences(of: "MODEL", with: model),
                                             headers: ["anthropic-version": "2023-06-01"]))
        return try client.readResponse()
    }

    @Test func anAnthropicModelIsCountedByItsProvider() throws {
        let env = try MessagesRouteTests.environment()
        let response = try count(env, model: "anth/normal")
        #expect(response.status == 200, "\(response.text)")
        // What reached the upstream: the client's body with the upstream's model name, the key.
        let forwarded = env.mockStats.lastRequestBody
        #expect(String(decoding: forwarded, as: UTF8.self) == Self.body.replacingOccurrences(of: "MODEL", with: "normal"))
        #expect(env.mockStats.lastRequestHeader("x-api-key") == TestEnvironment.secretKey)
        #expect(env.mockStats.lastRequestHeader("anthropic-version") == "2023-06-01")
        // The client's betas go with it (`beta.messages.count_tokens(betas=…)`).
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/messages/count_tokens?beta=true", body: Self.body.replacingOccurrences(of: "MODEL", with: "anth/normal"),
                                             headers: ["anthropic-version": "2023-06-01", "anthropic-beta": "token-counting-2024-11-01\r\nanthropic-beta: other-2025-01-01"]))
        #expect(try client.readResponse().status == 200)
        #expect(env.mockStats.lastRequestHeader("anthropic-beta") == "token-counting-2024-11-01,other-2025-01-01", "two lines are one list")
        // The mock counts as its completions' usage does: a token per four bytes of the body.
        #expect(response.json?["input_tokens"]?.intValue == Int64(forwarded.count / 4), "\(response.text)")
        #expect(response.json?.objectValue?.count == 1, "only input_tokens, as Anthropic answers")
    }

    @Test func fusionIsCountedByItsOuterModel() throws {
        let env = try TestEnvironment { config in
            let base = config.providers["mock"]!.baseURL
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: base, apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
            config.fusion?.outerModel = "anth/outer"
        }
        let response = try count(env, model: "fusion")
        #expect(response.status == 200 && (response.json?["input_tokens"]?.intValue ?? 0) > 0, "\(response.text)")
        let sent = try JSONValue.parse(env.mockStats.lastRequestBody)
        #expect(sent["model"] == .string("outer"))
        #expect(sent["tools"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["get_weather", "fusion"], "the tools the outer model sees")
    }

    /// A fusion tool beside a model: that model reads the conversation, with the fusion tool as
    /// the function it sees; the gateway's own tool never reaches Anthropic, which refuses tool
    /// types it does not know (review 55A #1: counted on the configured outer model, or a 404
    /// naming another model's provider).
    @Test func aFusionToolIsCountedByTheModelItIsGivenTo() throws {
        let env = try MessagesRouteTests.environment()  // its outer model is not on an Anthropic provider
        for tool in [#"{"type":"fusion"}"#, #"{"type":"openrouter:fusion","parameters":{"analysis_models":["mock/a","mock/b"]}}"#] {
            let body = Self.body.replacingOccurrences(of: #"}}}}]}"#, with: #"}}}},\#(tool)]}"#)
            let response = try count(env, model: "anth/normal", body: body)
            #expect(response.status == 200, "\(tool): \(response.text)")
            let sent = try JSONValue.parse(env.mockStats.lastRequestBody)
            #expect(sent["model"] == .string("normal"))
            let tools = sent["tools"]?.arrayValue ?? []
            #expect(tools.compactMap { $0["name"]?.stringValue } == ["get_weather", "fusion"], "\(tools)")
            #expect(!tools.contains { $0["type"] != nil } && tools.last?["input_schema"]?["type"] == .string("object"), "\(tools)")
        }
    }

    /// The built-in simulated Anthropic provider counts like a real one (its simulator speaks it).
    @Test func theSimulatedAnthropicProviderCounts() throws {
        let env = try MessagesRouteTests.environment()
        let response = try count(env, model: "sim-anthropic/normal")
        #expect(response.status == 200 && (response.json?["input_tokens"]?.intValue ?? 0) > 0, "\(response.text)")
    }

    @Test(arguments: ["mock/normal", "gem/normal", "fusion", "sim/normal", "anth/error:status=404"])
    func noCountIsMadeUpWhereNoProviderCounts(model: String) throws {
        let env = try MessagesRouteTests.environment()
        let before = env.mockStats.counts.requests
        let response = try count(env, model: model)
        #expect(response.status == 404 && response.json?["error"]?["type"]?.stringValue == "not_found_error", "\(model): \(response.text)")
        #expect(response.text.contains("No token count for model"), "\(response.text)")
        if !model.hasPrefix("anth/") { #expect(env.mockStats.counts.requests == before, "no upstream is asked") }
        // Anthropic's error shape has no code; the metric names it.
        #expect(try env.get("/metrics").metric(#"fusion_gateway_errors_total{code="token_count_unavailable",origin="gateway"}"#) == 1)
    }

    @Test func anUpstreamsRefusalIsTheClientsError() throws {
        let env = try MessagesRouteTests.environment()
        // Anthropic's 404 about the model is the client's error, not a missing endpoint.
        let unknown = try count(env, model: "anth/no-such-model")
        #expect(unknown.status == 404 && unknown.json?["error"]?["type"]?.stringValue == "not_found_error", "\(unknown.text)")
        #expect(unknown.text.contains("no-such-model") && !unknown.text.contains("No token count"))
        // The upstream's status, as on /v1/messages (its 5xx is the gateway's 502).
        for (upstream, status, type) in [(400, 400, "invalid_request_error"), (529, 529, "overloaded_error"), (500, 502, "api_error")] {
            let refused = try count(env, model: "anth/error:status=\(upstream)")
            #expect(refused.status == status && refused.json?["error"]?["type"]?.stringValue == type, "\(status): \(refused.text)")
            #expect(!refused.text.contains(TestEnvironment.secretKey))
        }
    }

    @Test func badRequestsAreAnthropicErrors() throws {
        let env = try MessagesRouteTests.environment()
        let noMessages = try count(env, model: "anth/normal", body: #"{"model":"MODEL"}"#)
        #expect(noMessages.status == 400 && noMessages.json?["type"]?.stringValue == "error", "\(noMessages.text)")
        #expect(noMessages.json?["error"]?["message"]?.stringValue?.hasPrefix("messages:") == true)
        let badLimit = try count(env, model: "anth/normal", body: #"{"model":"MODEL","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#)
        #expect(badLimit.status == 400, "a max_tokens sent is still checked: \(badLimit.text)")
        let unknownProvider = try count(env, model: "nope/x")
        #expect(unknownProvider.status == 404 && unknownProvider.json?["error"]?["type"]?.stringValue == "not_found_error", "\(unknownProvider.text)")
        let client = try env.client()
        try client.send(Array("GET /v1/messages/count_tokens HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8))
        let get = try client.readResponse()
        #expect(get.status == 405 && get.header("allow") == "POST" && get.json?["type"]?.stringValue == "error", "\(get.text)")
    }
}
