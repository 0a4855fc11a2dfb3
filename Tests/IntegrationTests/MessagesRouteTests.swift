import Foundation
import Gateway
import GatewayCore
import MockUpstream
import Testing

/// `POST /v1/messages` over loopback: Anthropic clients served from any provider (OpenAI-compatible
/// and Gemini upstreams translated, an Anthropic upstream given the client's own bytes), Fusion
/// included, every error in Anthropic's shape.
@Suite(.timeLimit(.minutes(1))) struct MessagesRouteTests {
    static func environment() throws -> TestEnvironment {
        try TestEnvironment { config in
            let base = config.providers["mock"]!.baseURL
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: base, apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
            config.providers["gem"] = .init(name: "gem", kind: .gemini, baseURL: String(base.dropLast(3)) + "/v1beta",
                                            apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
        }
    }

    static func body(model: String, stream: Bool, prompt: String = "Hello there", extra: String = "") -> String {
        #"{"model":"\#(model)","max_tokens":256,"stream":\#(stream),"messages":[{"role":"user","content":"\#(prompt)"}]\#(extra)}"#
    }

    func post(_ env: TestEnvironment, _ body: String, headers: [String: String] = ["anthropic-version": "2023-06-01"]) throws -> TestResponse {
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/messages", body: body, headers: headers))
        return try client.readResponse()
    }

    /// The text of a Messages stream, checking its event grammar on the way.
    func streamedText(_ response: TestResponse) -> String {
        let events = response.namedEvents
        #expect(events.first?.name == "message_start", "\(response.text)")
        #expect(events.suffix(2).map(\.name) == ["message_delta", "message_stop"], "\(response.text)")
        #expect(events.allSatisfy { $0.data["type"]?.stringValue == $0.name }, "each event's type is its name")
        let usage = events.first { $0.name == "message_delta" }?.data["usage"]
        #expect((usage?["output_tokens"]?.intValue ?? 0) > 0, "usage on message_delta: \(String(describing: usage))")
        return events.filter { $0.name == "content_block_delta" }.compactMap { $0.data["delta"]?["text"]?.stringValue }.joined()
    }

    @Test(arguments: ["mock", "anth", "gem"])
    func aMessageStreamsFromEveryKindOfProvider(provider: String) throws {
        let env = try Self.environment()
        let response = try post(env, Self.body(model: "\(provider)/normal:pace_ms=0", stream: true))
        #expect(response.status == 200 && response.header("content-type")?.hasPrefix("text/event-stream") == true, "\(response.text)")
        let text = streamedText(response)
        #expect(text.contains("You asked: \"Hello there\""), "\(provider): \(text)")
        let id = response.header("x-generation-id")
        #expect(response.namedEvents.first?.data["message"]?["id"]?.stringValue == id, "the message id is the generation id")
        #expect(response.namedEvents.first?.data["message"]?["model"] == .string("\(provider)/normal:pace_ms=0"))
        #expect(env.eventually { (try? env.generation(id)) != nil }, "a record under the same id")
    }

    /// `message_start` carries the prompt's usage when the upstream said it first (an Anthropic
    /// upstream's own `message_start`): clients that read input tokens there (LangChain's
    /// per-event usage, cost meters) see the real count, not 0. Other upstreams say it only at
    /// the end: 0 there, the count on `message_delta`.
    @Test(arguments: ["mock", "anth"])
    func messageStartCarriesThePromptUsageTheUpstreamGaveFirst(provider: String) throws {
        let env = try Self.environment()
        let response = try post(env, Self.body(model: "\(provider)/normal:pace_ms=0", stream: true))
        let events = response.namedEvents
        #expect(events.filter { $0.name == "message_start" }.count == 1 && events.first?.name == "message_start", "\(response.text)")
        let start = events.first?.data["message"]?["usage"]?["input_tokens"]?.intValue
        let end = events.first { $0.name == "message_delta" }?.data["usage"]?["input_tokens"]?.intValue
        #expect((end ?? 0) > 0)
        #expect(start == (provider == "anth" ? end : 0), "\(provider): message_start \(String(describing: start)), message_delta \(String(describing: end))")
    }

    @Test(arguments: ["mock", "anth", "gem"])
    func aWholeMessageFromEveryKindOfProvider(provider: String) throws {
        let env = try Self.environment()
        let response = try post(env, Self.body(model: "\(provider)/tool-call:pace_ms=0", stream: false, prompt: "Weather in Paris?",
                                               extra: #","tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"location":{"type":"string"}}}}]"#))
        #expect(response.status == 200, "\(response.text)")
        let message = try #require(response.json)
        #expect(message["type"] == .string("message") && message["role"] == .string("assistant"))
        #expect(message["stop_reason"] == .string("tool_use"), "\(response.text)")
        let tool = message["content"]?.arrayValue?.first { $0["type"] == .string("tool_use") }
        #expect(tool?["name"] == .string("get_weather") && tool?["input"]?["location"] == .string("Paris, France"), "\(response.text)")
        #expect(message["id"]?.stringValue == response.header("x-generation-id"))
    }

    /// An Anthropic upstream's thinking blocks reach an Anthropic client with their signatures,
    /// streamed and whole: what it must send back on its next turn (extended thinking with tools).
    @Test(arguments: [true, false]) func thinkingKeepsItsSignature(stream: Bool) throws {
        let env = try Self.environment()
        let response = try post(env, Self.body(model: "anth/empty:pace_ms=0", stream: stream))
        #expect(response.status == 200, "\(response.text)")
        let signature = "bW9jay1zaWduYXR1cmU="  // the mock's
        if stream {
            let events = response.namedEvents
            #expect(events.contains { $0.data["delta"] == .object(["type": .string("signature_delta"), "signature": .string(signature)]) },
                    "\(response.text)")
        } else {
            let block = response.json?["content"]?.arrayValue?.first
            #expect(block?["type"] == .string("thinking") && block?["signature"] == .string(signature), "\(response.text)")
            #expect(block?["thinking"] == .string("Thinking about the question…"))
        }
    }

    /// A block only Anthropic reads (a PDF by URL) reaches an Anthropic model, is refused by name
    /// for another, and for a deliberation, whose panel reads the conversation as text (review
    /// 46 #3: it was left out of every member's question, and the answer was a 200).
    @Test func questionBlocksOnlyAnthropicReadsAreRefusedWhereTheyWouldBeLost() throws {
        let env = try Self.environment()
        let content = #"[{"type":"document","source":{"type":"url","url":"https://x.example/q3.pdf"}},{"type":"text","text":"Q3 revenue?"}]"#
        func body(_ model: String) -> String { #"{"model":"\#(model)","max_tokens":100,"messages":[{"role":"user","content":\#(content)}]}"# }
        #expect(try post(env, body("anth/normal:pace_ms=0")).status == 200)
        for model in ["mock/normal:pace_ms=0", "fusion"] {
            let refused = try post(env, body(model))
            #expect(refused.status == 400 && refused.text.contains("'document'"), "\(model): \(refused.status) \(refused.text)")
            // Named where the client put it, in Anthropic's syntax and place (review 48 surfaces #7).
            #expect(refused.json?["error"]?["message"]?.stringValue?.hasPrefix("messages.0.content.0: Blocks of type 'document'") == true,
                    "\(model): \(refused.text)")
        }
        // A tool another API cannot take, named as Anthropic's SDK names it: `tools.0`.
        let hosted = try post(env, #"{"model":"gem/normal:pace_ms=0","max_tokens":100,"messages":[{"role":"user","content":"q"}],"#
                                   + #""tools":[{"type":"web_search_20250305","name":"web_search"}]}"#)
        #expect(hosted.status == 400 && hosted.text.contains("tools.0") && !hosted.text.contains("tools[0]"), "\(hosted.text)")
    }

    /// Another upstream's call ids (Kimi's `functions.f:0`) reach a Messages client as they came;
    /// a conversation carrying them on to an Anthropic model is encoded with valid ids, a call
    /// and its result still paired (review 55A #2: relayed as sent, Anthropic refused it).
    @Test func callIDsAnthropicRefusesAreMadeValidForIt() throws {
        let env = try Self.environment()
        let history = #"[{"role":"user","content":"Weather?"},"#
            + #"{"role":"assistant","content":[{"type":"tool_use","id":"functions.get_weather:0","name":"get_weather","input":{"city":"Oslo"}}]},"#
            + #"{"role":"user","content":[{"type":"tool_result","tool_use_id":"functions.get_weather:0","content":"No such city","is_error":true}]}]"#
        // Anthropic refuses tool blocks in a request without tools: the client gives its tool.
        let tools = #","tools":[{"name":"get_weather","input_schema":{"type":"object"}}]"#
        let response = try post(env, #"{"model":"anth/normal:pace_ms=0","max_tokens":50,"messages":\#(history)\#(tools)}"#)
        #expect(response.status == 200, "\(response.text)")
        let sent = try JSONValue.parse(env.mockStats.lastRequestBody)
        let turns = sent["messages"]?.arrayValue ?? []
        let callID = turns.count == 3 ? turns[1]["content"]?.arrayValue?.first?["id"]?.stringValue ?? "" : ""
        #expect(!callID.isEmpty && callID.utf8.allSatisfy { $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") || (0x30...0x39).contains($0)
            || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }, "\(callID)")
        #expect(turns.last?["content"]?.arrayValue?.first?["tool_use_id"]?.stringValue == callID, "\(sent)")
        // Only the ids are rewritten: the rest is the client's (review 56 #3: `is_error` was lost).
        #expect(turns.last?["content"]?.arrayValue?.first?["is_error"] == .bool(true), "\(sent)")
        // Its token count too (review 56 #4).
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/messages/count_tokens", body: #"{"model":"anth/normal","messages":\#(history)\#(tools)}"#,
                                             headers: ["anthropic-version": "2023-06-01"]))
        #expect(try client.readResponse().status == 200)
        #expect(!String(decoding: env.mockStats.lastRequestBody, as: UTF8.self).contains("functions.get_weather:0"))
        // Ids Anthropic takes still go as the client sent them, its bytes relayed.
        let valid = history.replacingOccurrences(of: "functions.get_weather:0", with: "toolu_01")
        _ = try post(env, #"{"model":"anth/normal:pace_ms=0","max_tokens":50,"messages":\#(valid)\#(tools)}"#)
        #expect(String(decoding: env.mockStats.lastRequestBody, as: UTF8.self).contains(#""id":"toolu_01""#))
    }

    @Test func anAnthropicUpstreamGetsTheClientsOwnFields() throws {
        let env = try Self.environment()
        let extra = #","metadata":{"user_id":"u-42"},"thinking":{"type":"enabled","budget_tokens":1024}"#
        let body = Self.body(model: "anth/normal:pace_ms=0", stream: false, extra: extra).replacingOccurrences(of: #""max_tokens":256"#, with: #""max_tokens":2048"#)
        let response = try post(env, body)
        #expect(response.status == 200, "\(response.text)")
        let sent = try JSONValue.parse(env.mockStats.lastRequestBody)
        #expect(sent["metadata"]?["user_id"] == .string("u-42") && sent["thinking"]?["budget_tokens"]?.intValue == 1024)
        #expect(sent["model"] == .string("normal:pace_ms=0"), "only the model is replaced")
        #expect(env.mockStats.lastRequestHeader("x-api-key") == TestEnvironment.secretKey)
    }

    /// OpenRouter's `models` serve Messages clients as chat's: a fallback answers when the
    /// model fails, and is the message's `model`, streamed and whole; an Anthropic upstream
    /// never sees the field (it refuses one it does not know). Before, the field was ignored and
    /// sent on (review 101 #2).
    @Test(arguments: [false, true])
    func aFallbackAnswersWhenTheModelFails(stream: Bool) throws {
        let env = try Self.environment()
        let failing = try post(env, Self.body(model: "anth/error:status=503", stream: stream, extra: #","models":["mock/normal:pace_ms=0"]"#))
        #expect(failing.status == 200, "\(failing.text)")
        let model = stream ? failing.namedEvents.first?.data["message"]?["model"] : failing.json?["model"]
        #expect(model == .string("mock/normal:pace_ms=0"), "\(failing.text.prefix(600))")
        let text = stream ? streamedText(failing) : failing.json?["content"]?.arrayValue?.first?["text"]?.stringValue ?? ""
        #expect(text.contains("You asked"), "\(failing.text.prefix(600))")
        let kept = try post(env, Self.body(model: "anth/normal:pace_ms=0", stream: stream, extra: #","models":["mock/normal:pace_ms=0"]"#))
        #expect(kept.status == 200, "\(kept.text)")
        let sent = try JSONValue.parse(env.mockStats.lastRequestBody)
        #expect(sent["models"] == nil && sent["model"] == .string("normal:pace_ms=0"), "\(sent)")
        let wrong = try post(env, Self.body(model: "anth/normal:pace_ms=0", stream: stream, extra: #","models":[""]"#))
        #expect(wrong.status == 400 && wrong.json?["error"]?["type"] == .string("invalid_request_error"), "\(wrong.text)")
        // A fallback that cannot be, or cannot serve the request, is named by its model (review
        // 102 #4: "tools.0: Gemini's API takes function tools only" for a Claude request; review
        // 104 #5: by its place among the fallbacks, not the client's list, it had the wrong index).
        let unknown = try post(env, Self.body(model: "anth/normal:pace_ms=0", stream: stream, extra: #","models":["anth/normal:pace_ms=0","nosuch/model"]"#))
        #expect(unknown.json?["error"]?["message"]?.stringValue?.contains("Invalid fallback 'nosuch/model' in 'models'") == true, "\(unknown.text)")
        let tool = #","tools":[{"type":"web_search_20250305","name":"web_search"}],"models":["gem/normal:pace_ms=0"]"#
        let unserved = try post(env, Self.body(model: "anth/normal:pace_ms=0", stream: stream, extra: tool))
        #expect(unserved.status == 400, "\(unserved.text)")
        #expect(unserved.json?["error"]?["message"]?.stringValue?.contains("The fallback 'gem/normal:pace_ms=0' in 'models' cannot serve this request") == true,
                "\(unserved.text)")
    }

    /// The SDKs' `betas=` is the `anthropic-beta` header: it reaches an Anthropic upstream (with
    /// the provider's own betas), as the body's beta-only fields need it; never another vendor.
    @Test func aClientsBetasReachAnAnthropicUpstream() throws {
        let env = try TestEnvironment { config in
            let base = config.providers["mock"]!.baseURL
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: base, apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY",
                                             headers: ["anthropic-beta": "configured-2025-01-01"])
        }
        let betas = ["anthropic-version": "2023-06-01", "anthropic-beta": " context-management-2025-06-27 ,fine-grained-tool-streaming-2025-05-14,configured-2025-01-01"]
        let response = try post(env, Self.body(model: "anth/normal:pace_ms=0", stream: true), headers: betas)
        #expect(response.status == 200, "\(response.text)")
        #expect(env.mockStats.lastRequestHeader("anthropic-beta")
                == "configured-2025-01-01,context-management-2025-06-27,fine-grained-tool-streaming-2025-05-14")
        let openAI = try post(env, Self.body(model: "mock/normal:pace_ms=0", stream: false), headers: betas)
        #expect(openAI.status == 200 && env.mockStats.lastRequestHeader("anthropic-beta") == nil, "not for another vendor's API")
        for bad in ["a b", "x\u{7f}", String(repeating: "b", count: 129), Array(repeating: "b", count: 33).enumerated().map { "b\($0.offset)" }.joined(separator: ",")] {
            let refused = try post(env, Self.body(model: "anth/normal:pace_ms=0", stream: false),
                                   headers: ["anthropic-version": "2023-06-01", "anthropic-beta": bad])
            #expect(refused.status == 400 && refused.json?["error"]?["type"] == .string("invalid_request_error")
                    && refused.json?["type"] == .string("error"), "\(bad.prefix(40)): \(refused.text)")
        }
    }

    /// A thinking budget at or above `max_tokens` is Anthropic's 400 on every upstream, before
    /// any call; the interleaved-thinking beta lifts the ceiling (review 64C #4).
    @Test func aThinkingBudgetAboveMaxTokensIsRefusedUnlessInterleaved() throws {
        let env = try Self.environment()
        let extra = #","thinking":{"type":"enabled","budget_tokens":1024}"#
        let calls = env.mockStats.counts.requests
        let refused = try post(env, Self.body(model: "mock/normal:pace_ms=0", stream: true, extra: extra))
        #expect(refused.status == 400 && refused.json?["type"] == .string("error"), "\(refused.text)")
        #expect(refused.json?["error"]?["type"] == .string("invalid_request_error"))
        #expect(refused.json?["error"]?["message"]?.stringValue?.contains("thinking.budget_tokens") == true)
        #expect(env.mockStats.counts.requests == calls, "refused before any upstream call")
        let interleaved = try post(env, Self.body(model: "mock/normal:pace_ms=0", stream: false, extra: extra),
                                   headers: ["anthropic-version": "2023-06-01", "anthropic-beta": "interleaved-thinking-2025-05-14"])
        #expect(interleaved.status == 200, "\(interleaved.text)")
    }

    @Test func errorsComeInAnthropicsShape() throws {
        let env = try Self.environment()
        func expectError(_ response: TestResponse, status: Int, type: String, _ note: String) {
            #expect(response.status == status, "\(note): \(response.text)")
            #expect(response.json?["type"] == .string("error") && response.json?["error"]?["type"] == .string(type), "\(note): \(response.text)")
            #expect(response.json?["error"]?["message"]?.stringValue?.isEmpty == false, "\(note)")
        }
        expectError(try post(env, #"{"model":"mock/normal","messages":[{"role":"user","content":"hi"}]}"#), status: 400,
                    type: "invalid_request_error", "max_tokens is required")
        expectError(try post(env, Self.body(model: "nosuch/model", stream: true)), status: 404, type: "not_found_error", "unknown provider")
        expectError(try post(env, Self.body(model: "mock/error:status=500", stream: false)), status: 502, type: "api_error", "upstream 500: a bad gateway")
        expectError(try post(env, Self.body(model: "mock/rate-limited:retry_after=30", stream: true)), status: 429, type: "rate_limit_error",
                    "upstream 429")
        expectError(try post(env, "[1,2]"), status: 400, type: "invalid_request_error", "not an object")
        // An overloaded upstream (Anthropic's 529, after the gateway's retries): a 529 to
        // Anthropic's clients, whose SDKs raise OverloadedError for that status alone.
        expectError(try post(env, Self.body(model: "anth/error:status=529", stream: false)), status: 529, type: "overloaded_error", "upstream 529")
        let overloaded = try post(env, Self.body(model: "mock/error:status=529", stream: true))
        expectError(overloaded, status: 529, type: "overloaded_error", "upstream 529")
        // The record states the status sent (review 119 #5: 503).
        let id = overloaded.header("x-generation-id")
        #expect(env.eventually { (try? env.generation(id))?["status"] == .int(529) }, "\(String(describing: try? env.generation(id)))")
        // A system prompt among the turns is refused as Anthropic refuses it.
        let system = try post(env, #"{"model":"mock/normal","max_tokens":5,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]}"#)
        expectError(system, status: 400, type: "invalid_request_error", "a system turn")
        #expect(system.json?["error"]?["message"]?.stringValue?.contains("top-level `system` parameter") == true)

        let client = try env.client()
        try client.send("GET /v1/messages HTTP/1.1\r\nHost: localhost\r\n\r\n")
        expectError(try client.readResponse(), status: 405, type: "invalid_request_error", "GET")

        // Broken off mid-stream: an `error` event after what was sent.
        let broken = try post(env, Self.body(model: "mock/error-mid-stream:pace_ms=0", stream: true))
        #expect(broken.status == 200)
        let last = broken.namedEvents.last
        #expect(last?.name == "error" && last?.data["error"]?["type"]?.stringValue?.isEmpty == false, "\(broken.text)")
        #expect(!broken.namedEvents.contains { $0.name == "message_stop" }, "never a clean end")
    }

    @Test func gatewayKeysAreAcceptedInXApiKeyAndRefusedInAnthropicsShape() throws {
        let env = try TestEnvironment { $0.server.apiKeys = ["gw-key-0123456789"] }
        let refused = try post(env, Self.body(model: "mock/normal:pace_ms=0", stream: false))
        #expect(refused.status == 401 && refused.json?["error"]?["type"] == .string("authentication_error"), "\(refused.text)")
        let accepted = try post(env, Self.body(model: "mock/normal:pace_ms=0", stream: false),
                                headers: ["x-api-key": "gw-key-0123456789", "anthropic-version": "2023-06-01"])
        #expect(accepted.status == 200, "\(accepted.text)")
        let wrong = try post(env, Self.body(model: "mock/normal:pace_ms=0", stream: false), headers: ["x-api-key": "gw-key-wrong"])
        #expect(wrong.status == 401)
        // Anthropic's SDKs listing models with a wrong key: refused in their shape too (review 10);
        // other clients in OpenAI's.
        for (headers, anthropic) in [(["x-api-key": "gw-key-wrong", "anthropic-version": "2023-06-01"], true), (["authorization": "Bearer nope"], false)] {
            let client = try env.client()
            let lines = headers.map { "\($0.key): \($0.value)\r\n" }.joined()
            try client.send("GET /v1/models HTTP/1.1\r\nHost: localhost\r\n\(lines)\r\n")
            let models = try client.readResponse()
            #expect(models.status == 401 && (models.json?["type"] == .string("error")) == anthropic, "\(models.text)")
            #expect(models.json?["error"]?["type"] == .string("authentication_error"))
        }
    }

    /// A turn that calls the client's tool and fusion together: Messages cannot carry the answered
    /// fusion call back, so no deliberation runs (none would survive into the next turn); the turn
    /// comes back with the client's tool_use, and the upstream saw one call.
    @Test(arguments: [true, false]) func aParallelTurnDoesNotPayForADeliberationItWouldLose(stream: Bool) throws {
        let env = try Self.environment()
        let tools = #","tools":[{"name":"lookup","input_schema":{"type":"object"}},{"type":"fusion","parameters":{"preset":"budget"}}]"#
        let response = try post(env, Self.body(model: "mock/outer:pace_ms=1:with_fusion=1", stream: stream,
                                               prompt: "Please lookup the local rules and ask the panel whether cities should ban cars", extra: tools))
        #expect(response.status == 200, "\(response.text)")
        if stream {
            let stop = response.namedEvents.first { $0.name == "message_delta" }?.data["delta"]?["stop_reason"]
            #expect(stop == .string("tool_use"), "\(response.text)")
            let blocks = response.namedEvents.filter { $0.name == "content_block_start" }.compactMap { $0.data["content_block"] }
            #expect(blocks.compactMap { $0["name"]?.stringValue } == ["lookup"], "\(response.text)")
            #expect(response.comments.contains { $0.contains("skipped") }, "the comments say why")
        } else {
            #expect(response.json?["stop_reason"] == .string("tool_use"), "\(response.text)")
            #expect(response.json?["content"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["lookup"])
        }
        #expect(env.mockStats.counts.requests == 1, "only the outer model's turn reached an upstream")
    }

    @Test func fusionReachesAnthropicClients() throws {
        let env = try Self.environment()
        let streamed = try post(env, Self.body(model: "fusion", stream: true, prompt: "Should cities ban cars?"))
        #expect(streamed.status == 200, "\(streamed.text)")
        let text = streamedText(streamed)
        #expect(text.contains("Drawing on a panel of 3 models"), "\(text)")
        #expect(streamed.comments.contains { $0.hasPrefix("fusion judge") }, "the deliberation as comments, which the SDKs skip")
        #expect(!streamed.namedEvents.contains { $0.name.hasPrefix("fusion") }, "no event the SDKs would hand on")
        // A streaming client learns what a whole one does: the result and each call's usage.
        let delta = try #require(streamed.namedEvents.first { $0.name == "message_delta" }?.data)
        #expect(delta["fusion"]?["panel"]?["answered"] == .int(3) && delta["fusion"]?["analysis"]?["consensus"] != nil, "\(delta)")
        #expect(delta["usage"]?["fusion"]?["calls"]?.arrayValue?.count == 6, "outer twice, three members, the judge: \(delta)")

        let whole = try post(env, Self.body(model: "fusion", stream: false, prompt: "Should cities ban cars?"))
        #expect(whole.status == 200, "\(whole.text)")
        #expect(whole.json?["fusion"]?["analysis"]?["consensus"] != nil, "\(whole.text)")
        #expect(whole.json?["content"]?.arrayValue?.first?["text"]?.stringValue?.contains("Drawing on a panel") == true)
        #expect(whole.json?["model"] == .string("mock/outer:pace_ms=1"), "the concrete model, not the alias")
        // Each call's usage, as the stream's message_delta carries it (review 62C #10).
        #expect(whole.json?["usage"]?["fusion"]?["calls"]?.arrayValue?.count == 6, "\(whole.json?["usage"] ?? .null)")
    }

    /// A deliberation whose outer model fails and a fallback of `models` answers names the
    /// fallback in its stream's `message_start`, as its `usage.fusion`, its whole answer and its
    /// record do (review 102 #1: the stream named the model that failed). Messages' stream names
    /// its model with the answer's first event, after the fallback took over.
    @Test func aDeliberationsFallbackIsTheModelItsStreamNames() throws {
        let env = try Self.environment()
        let extra = #","models":["mock/outer:pace_ms=1"],"plugins":[{"id":"fusion"}]"#
        let streamed = try post(env, Self.body(model: "mock/error:status=503", stream: true, prompt: "Should cities ban cars?", extra: extra))
        #expect(streamed.status == 200, "\(streamed.text.prefix(600))")
        #expect(streamedText(streamed).contains("Drawing on a panel"), "\(streamed.text.suffix(600))")
        let start = streamed.namedEvents.first { $0.name == "message_start" }?.data["message"]?["model"]
        #expect(start == .string("mock/outer:pace_ms=1"), "\(streamed.text.prefix(800))")
        let calls = streamed.namedEvents.first { $0.name == "message_delta" }?.data["usage"]?["fusion"]?["calls"]?.arrayValue ?? []
        #expect(calls.contains { $0["role"] == .string("outer_final") && $0["model"] == .string("mock/outer:pace_ms=1") }, "\(calls)")
        let whole = try post(env, Self.body(model: "mock/error:status=503", stream: false, prompt: "Should cities ban cars?", extra: extra))
        #expect(whole.json?["model"] == .string("mock/outer:pace_ms=1"), "\(whole.text.prefix(600))")
    }

    /// A program asks for the deliberation as named events, as on chat (review 19 F7): the
    /// judge's items, each member's exact deltas; the Messages stream itself is unchanged.
    @Test func fusionEventsOnMessagesWhenAsked() throws {
        let env = try Self.environment()
        let streamed = try post(env, Self.body(model: "fusion", stream: true, prompt: "Should cities ban cars?",
                                               extra: #","stream_options":{"include_fusion_events":true}"#))
        #expect(streamed.status == 200, "\(streamed.text)")
        let names = Set(streamed.namedEvents.map(\.name))
        #expect(names.isSuperset(of: ["fusion.judge.item", "fusion.member.delta", "fusion.completed", "message_start", "message_stop"]), "\(names)")
        #expect(streamed.namedEvents.filter { $0.name.hasPrefix("fusion.") }.allSatisfy { $0.data["type"]?.stringValue == $0.name })
        #expect(streamedText(streamed).contains("Drawing on a panel of 3 models"))
        let bad = try post(env, Self.body(model: "fusion", stream: true, extra: #","stream_options":{"include_fusion_events":"yes"}"#))
        #expect(bad.status == 400 && bad.json?["error"]?["type"] == .string("invalid_request_error"), "\(bad.text)")
    }
}
