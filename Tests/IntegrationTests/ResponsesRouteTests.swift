import Foundation
import Gateway
import GatewayCore
import Testing

/// `POST /v1/responses` over loopback: any provider's answer as Responses events or a Response
/// object, Fusion as an `openrouter:fusion` item with `response.fusion_call.*` events, failures as
/// `response.failed` or an error in OpenAI's shape, the response id findable as a generation.
@Suite(.timeLimit(.minutes(1))) struct ResponsesRouteTests {
    static func environment() throws -> TestEnvironment {
        try TestEnvironment { config in
            let base = config.providers["mock"]!.baseURL
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: base, apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
            config.providers["gem"] = .init(name: "gem", kind: .gemini, baseURL: String(base.dropLast(3)) + "/v1beta",
                                            apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
        }
    }

    func post(_ env: TestEnvironment, _ body: String, path: String = "/v1/responses") throws -> TestResponse {
        let client = try env.client()
        try client.send(TestEnvironment.post(path, body: body))
        return try client.readResponse()
    }

    /// The stream's events, checking what every Responses stream must hold on the way.
    func events(_ response: TestResponse) -> [(name: String, data: JSONValue)] {
        let events = response.namedEvents
        #expect(events.first?.name == "response.created" && events.dropFirst().first?.name == "response.in_progress", "\(response.text)")
        #expect(events.enumerated().allSatisfy { $0.element.data["sequence_number"]?.intValue == Int64($0.offset) }, "numbered from 0")
        #expect(events.allSatisfy { $0.data["type"]?.stringValue == $0.name })
        return events
    }

    /// A tool's schema and a structured output's schema reach every kind of upstream in the
    /// client's order, as the client wrote them: the order of a schema's properties is the order
    /// a model writes its fields in (review 74A #1: they were sorted, `answer` before `reasoning`).
    @Test(arguments: ["mock", "anth", "gem"])
    func schemasKeepTheClientsOrder(provider: String) throws {
        let env = try Self.environment()
        let schema = #"{"type":"object","properties":{"zeta_reasoning":{"type":"string"},"alpha_answer":{"type":"string"}},"required":["zeta_reasoning","alpha_answer"]}"#
        let tools = #"[{"type":"function","name":"lookup","parameters":{"type":"object","properties":{"zeta_query":{"type":"string"},"alpha_limit":{"type":"integer"}}}}]"#
        let format = provider == "mock" ? #","text":{"format":{"type":"json_schema","name":"v","schema":\#(schema)}}"# : ""
        let response = try post(env, #"{"model":"\#(provider)/echo","input":"hi","stream":false,"tools":\#(tools)\#(format)}"#)
        #expect(response.status == 200, "\(response.text.prefix(300))")
        let echoed = response.json?["output"]?.arrayValue?.compactMap { $0["content"]?.arrayValue?.first?["text"]?.stringValue }.joined() ?? ""
        func before(_ first: String, _ second: String) -> Bool {
            guard let a = echoed.range(of: first), let b = echoed.range(of: second) else { return false }
            return a.lowerBound < b.lowerBound
        }
        #expect(before("zeta_query", "alpha_limit"), "\(echoed.prefix(600))")
        if provider == "mock" { #expect(before("zeta_reasoning", "alpha_answer"), "\(echoed.prefix(600))") }
    }

    @Test(arguments: ["mock", "anth", "gem"])
    func aResponseStreamsFromEveryKindOfProvider(provider: String) throws {
        let env = try Self.environment()
        let response = try post(env, #"{"model":"\#(provider)/normal:pace_ms=0","input":"Hello there","stream":true}"#)
        #expect(response.status == 200, "\(response.text)")
        let events = self.events(response)
        let text = events.filter { $0.name == "response.output_text.delta" }.compactMap { $0.data["delta"]?.stringValue }.joined()
        #expect(text.contains("You asked: \"Hello there\""), "\(provider): \(text)")
        let completed = try #require(events.last, "\(response.text)")
        #expect(completed.name == "response.completed")
        #expect(completed.data["response"]?["output"]?.arrayValue?.first?["content"]?.arrayValue?.first?["text"]?.stringValue == text)
        #expect((completed.data["response"]?["usage"]?["output_tokens"]?.intValue ?? 0) > 0)
        let id = try #require(completed.data["response"]?["id"]?.stringValue)
        #expect(id.hasPrefix("resp_") && response.header("x-generation-id") == "gen-" + id.dropFirst(5))
        #expect(env.eventually { (try? env.generation(id)) != nil }, "the response id finds its generation record")
    }

    @Test(arguments: ["mock", "anth", "gem"])
    func aWholeResponseWithFunctionCalls(provider: String) throws {
        let env = try Self.environment()
        let tools = #"[{"type":"function","name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}]"#
        let response = try post(env, #"{"model":"\#(provider)/tool-call:pace_ms=0","input":"Weather in Paris?","tools":\#(tools)}"#)
        #expect(response.status == 200, "\(response.text)")
        let object = try #require(response.json)
        #expect(object["object"] == .string("response") && object["status"] == .string("completed"), "\(response.text)")
        let call = object["output"]?.arrayValue?.first { $0["type"] == .string("function_call") }
        #expect(call?["name"] == .string("get_weather"), "\(response.text)")
        let arguments = try call?["arguments"]?.stringValue.map { try JSONValue.parse(Array($0.utf8)) }
        #expect(arguments?["location"] == .string("Paris, France"))
    }

    /// A fallback that answers is the Response's `model`, streamed and whole, as chat's and the
    /// record's (review 64B #2: the model that failed).
    @Test(arguments: [false, true])
    func aFallbackThatAnswersIsTheModel(stream: Bool) throws {
        let env = try Self.environment()
        let response = try post(env, #"{"model":"mock/error:status=503","models":["mock/normal:pace_ms=0"],"input":"hi","stream":\#(stream)}"#)
        #expect(response.status == 200, "\(response.text)")
        let model = stream ? events(response).last?.data["response"]?["model"] : response.json?["model"]
        #expect(model == .string("mock/normal:pace_ms=0"), "\(response.text.prefix(600))")
    }

    /// A stream whose head went out (a keep-alive committed it) before a fallback took over names
    /// the fallback that answered: `response.created` waits for the answer's first event, so
    /// one Response names one model, the one that wrote it (review 65 #5, review 107 #1).
    @Test func aStreamNamesTheFallbackThatAnswered() throws {
        let env = try Self.environment()
        let first = "mock/error-mid-stream:after=0:first_ms=600"
        let response = try post(env, #"{"model":"\#(first)","models":["mock/normal:pace_ms=0"],"input":"hi","stream":true}"#)
        #expect(response.comments.contains("keep-alive"), "the head went out before the fallback: \(response.text.prefix(400))")
        let models = events(response).compactMap { $0.data["response"]?["model"]?.stringValue }
        #expect(models.count >= 3 && Set(models) == ["mock/normal:pace_ms=0"], "\(models)")
        #expect(events(response).last?.name == "response.completed", "\(response.text.prefix(800))")
    }

    /// An upstream that answers 200 and then fails before any answer (an error event or chunk
    /// first; Anthropic's `overloaded_error`, Gemini's `UNAVAILABLE`), with no retry left: the
    /// client gets the failure's HTTP status and OpenAI's error body, as on chat, which the SDKs
    /// retry by status (review 107 #1: a 200 stream ending in `response.failed`).
    @Test(arguments: ["mock", "anth", "gem"])
    func aFailureBeforeAnyAnswerKeepsItsStatus(provider: String) throws {
        let env = try TestEnvironment { config in
            let base = config.providers["mock"]!.baseURL
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: base, apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
            config.providers["gem"] = .init(name: "gem", kind: .gemini, baseURL: String(base.dropLast(3)) + "/v1beta",
                                            apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
            config.upstream.retry = RetryPolicy(maxRetries: 0, baseDelayMilliseconds: 20, maxDelayMilliseconds: 20)
            config.upstream.keepAliveIntervalMilliseconds = 30_000  // no keep-alive commits the head first
        }
        let model = "\(provider)/error-mid-stream:after=0:pace_ms=0"
        let response = try post(env, #"{"model":"\#(model)","input":"hi","stream":true}"#)
        let chat = try env.chat(TestEnvironment.chatBody(model: model))
        #expect(response.status != 200 && response.status == chat.status, "as chat's \(chat.status): \(response.text.prefix(600))")
        #expect(response.json?["error"]?["message"]?.stringValue?.isEmpty == false, "\(response.text.prefix(600))")
        #expect(response.json?["error"]?["code"] == chat.json?["error"]?["code"], "\(response.text.prefix(600)) \(chat.text.prefix(600))")
        #expect(!response.text.contains("response.created"))
    }

    /// An upstream that said only what Responses does not show (Anthropic's `server_tool_use`
    /// block, a tool call's fragment before its name) and then failed failed before any answer:
    /// its status, not a 200 ending in `response.failed` (review 108 #3). Chat translates the
    /// Anthropic wire the same way; a passed-through chat stream showed the fragment.
    @Test(arguments: ["anth", "mock"])
    func aFailureAfterOnlyWhatIsNotShownKeepsItsStatus(provider: String) throws {
        let env = try TestEnvironment { config in
            let base = config.providers["mock"]!.baseURL
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: base, apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
            config.upstream.retry = RetryPolicy(maxRetries: 0, baseDelayMilliseconds: 20, maxDelayMilliseconds: 20)
            config.upstream.keepAliveIntervalMilliseconds = 30_000
        }
        let model = "\(provider)/error-mid-stream:after=0:pace_ms=0:unshown=1"
        let response = try post(env, #"{"model":"\#(model)","input":"hi","stream":true}"#)
        #expect(response.status != 200 && response.json?["error"]?["message"]?.stringValue?.isEmpty == false, "\(response.text.prefix(600))")
        #expect(!response.text.contains("response.created"))
        // Nothing shown, nothing charged, as the status says (review 111 #2: an estimate was).
        let record = try #require(try env.generation(response.header("x-generation-id")), "\(response.headers)")
        #expect(record["tokens_completion"] == .int(0) && record["total_cost"]?.doubleValue ?? 1 == 0, "\(record)")
        let chat = try env.chat(TestEnvironment.chatBody(model: model))
        #expect((chat.status == 200) == (provider == "mock"), "\(chat.status): \(chat.text.prefix(600))")
        // With a fallback, the fallback answers.
        let fallback = try post(env, #"{"model":"\#(model)","models":["mock/normal:pace_ms=0"],"input":"hi","stream":true}"#)
        #expect(fallback.status == 200 && events(fallback).last?.name == "response.completed", "\(fallback.text.prefix(600))")
    }

    @Test func failuresComeAsResponsesErrors() throws {
        let env = try Self.environment()
        let invalid = try post(env, #"{"model":"mock/normal","input":42}"#)
        #expect(invalid.status == 400 && invalid.json?["error"]?["param"]?.stringValue?.hasPrefix("input") == true, "\(invalid.text)")
        // Structured output reaches a Claude model as its own (review 77A #1: a 400 named
        // `text.format`, the client's name for it).
        let format = try post(env, #"{"model":"anth/normal","input":"hi","text":{"format":{"type":"json_schema","name":"s","schema":{"type":"object"}}}}"#)
        #expect(format.status == 200, "\(format.text)")
        let stateful = try post(env, #"{"model":"mock/normal","input":"hi","previous_response_id":"resp_1"}"#)
        #expect(stateful.status == 400 && stateful.json?["error"]?["param"] == .string("previous_response_id"), "\(stateful.text)")
        // Not retried (a 503 is, and a loaded machine's retry delays let a keep-alive commit the
        // stream's head first, as it should: the failure then comes in the stream).
        let refused = try post(env, #"{"model":"mock/error:status=422","input":"hi","stream":true}"#)
        #expect(refused.status == 422, "an upstream failure before the stream keeps its status: \(refused.text)")
        #expect(refused.json?["error"]?["message"] != nil)

        let broken = try post(env, #"{"model":"mock/error-mid-stream:pace_ms=0","input":"hi","stream":true}"#)
        let last = events(broken).last
        #expect(last?.name == "response.failed", "\(broken.text)")
        #expect(last?.data["response"]?["error"]?["message"]?.stringValue?.isEmpty == false)
        #expect(last?.data["error"] == nil, "never a top-level error, which would make the SDKs raise before the client sees the response")
        // The SDKs' stored-response calls: a 404 that says why, in OpenAI's shape.
        for request in ["GET /v1/responses/resp_abc HTTP/1.1", "DELETE /v1/responses/resp_abc HTTP/1.1", "GET /v1/responses/resp_abc/input_items HTTP/1.1"] {
            let client = try env.client()
            try client.send(request + "\r\nHost: localhost\r\n\r\n")
            let stored = try client.readResponse()
            #expect(stored.status == 404 && stored.json?["error"]?["code"] == .string("response_not_found"), "\(request): \(stored.text)")
            #expect(stored.json?["error"]?["message"]?.stringValue?.contains("'resp_abc'") == true)
        }
        // The SDKs' responses.input_tokens.count and responses.compact: not offered, said so
        // (review 49 SDK F3: "no response with id 'input_tokens'").
        for name in ["input_tokens", "compact"] {
            let offered = try post(env, #"{"model":"mock/normal","input":"hi"}"#, path: "/v1/responses/\(name)")
            #expect(offered.status == 404 && offered.json?["error"]?["message"]?.stringValue?.contains("is not offered") == true, "\(offered.text)")
        }
        let truncated = try post(env, #"{"model":"mock/normal:pace_ms=0:truncate=1","input":"hi","stream":true}"#)
        #expect(events(truncated).last?.name == "response.failed", "a truncated upstream stream is no clean completion: \(truncated.text)")
    }

    @Test func fusionStreamsAsFusionCallEvents() throws {
        let env = try Self.environment()
        let body = #"{"model":"mock/outer:pace_ms=1","input":"Should cities ban cars?","stream":true,"tools":[{"type":"openrouter:fusion","parameters":{"preset":"budget"}}],"tool_choice":"required"}"#
        let response = try post(env, body)
        #expect(response.status == 200, "\(response.text)")
        let names = events(response).map(\.name)
        let fusion = names.filter { $0.hasPrefix("response.fusion_call.") }
        #expect(fusion.first == "response.fusion_call.in_progress" && fusion.last == "response.fusion_call.completed", "\(fusion)")
        #expect(fusion.filter { $0 == "response.fusion_call.panel.added" }.count == 2)
        #expect(fusion.filter { $0 == "response.fusion_call.panel.completed" }.count == 2)
        #expect(fusion.contains("response.fusion_call.analysis.completed"))
        let completed = try #require(response.namedEvents.last)
        #expect(completed.name == "response.completed")
        let output = completed.data["response"]?["output"]?.arrayValue ?? []
        let item = output.first { $0["type"] == .string("openrouter:fusion") }
        #expect(item?["status"] == .string("completed") && item?["analysis"]?["consensus"] != nil, "\(output)")
        #expect(item?["responses"]?.arrayValue?.count == 2)
        let answer = output.last?["content"]?.arrayValue?.first?["text"]?.stringValue ?? ""
        #expect(answer.contains("Drawing on a panel of 2 models"), "\(answer)")
        #expect(completed.data["response"]?["usage"]?["fusion"]?["calls"]?.arrayValue?.count == 4, "panel, judge, final: forced skips the first turn")
    }

    /// openai-node's `responses.stream()` throws on an event type it does not know, so its
    /// requests (`X-Stainless-Helper-Method: stream`, `X-Stainless-Lang: js`) get the run as its
    /// item only, the answer and the item whole; `stream_options.include_fusion_events` decides
    /// for any client (review 44 Responses #1: the helper failed every Fusion run).
    @Test func nodesStreamHelperGetsTheRunAsItsItemOnly() throws {
        let env = try Self.environment()
        let body = #"{"model":"mock/outer:pace_ms=1","input":"Should cities ban cars?","stream":true,"plugins":[{"id":"fusion","preset":"budget"}]"#
        let node = ["X-Stainless-Helper-Method": "stream", "X-Stainless-Lang": "js"]
        func run(_ extra: String, headers: [String: String]) throws -> [(name: String, data: JSONValue)] {
            let client = try env.client()
            try client.send(TestEnvironment.post("/v1/responses", body: body + extra + "}", headers: headers))
            let response = try client.readResponse()
            #expect(response.status == 200, "\(response.text)")
            return events(response)
        }
        let helper = try run("", headers: node)
        #expect(!helper.contains { $0.name.hasPrefix("response.fusion_call.") }, "\(helper.map(\.name))")
        #expect(helper.map(\.name).filter { $0.hasPrefix("response.") && !$0.hasPrefix("response.output_text") && !$0.hasPrefix("response.content_part") }
                    .allSatisfy { ["response.created", "response.in_progress", "response.output_item.added", "response.output_item.done",
                                   "response.completed"].contains($0) }, "only events OpenAI's SDK knows: \(helper.map(\.name))")
        let item = helper.first { $0.name == "response.output_item.done" && $0.data["item"]?["type"] == .string("openrouter:fusion") }
        #expect(item?.data["item"]?["analysis"]?["consensus"] != nil && item?.data["item"]?["id"] != nil, "the run whole, in its item")
        let output = helper.last?.data["response"]?["output"]?.arrayValue ?? []
        #expect(helper.last?.name == "response.completed" && output.last?["type"] == .string("message"))
        // Asked for, the helper gets them too; another client that says no gets none.
        #expect(try run(#","stream_options":{"include_fusion_events":true}"#, headers: node).contains { $0.name == "response.fusion_call.completed" })
        #expect(try !run(#","stream_options":{"include_fusion_events":false}"#, headers: [:]).contains { $0.name.hasPrefix("response.fusion_call.") })
        #expect(try run("", headers: ["X-Stainless-Helper-Method": "stream", "X-Stainless-Lang": "python"]).contains { $0.name == "response.fusion_call.completed" },
                "Python's helper keeps events it does not know")
    }

    /// A conversation that sends every answer back, as the README says, goes on turn after turn:
    /// each forced run's fusion call has an id of its own (review 60C #1: all were
    /// `call_fusion`, and the third request was a 400 for a repeated id).
    @Test func aPluginConversationSendsItsTurnsBack() throws {
        let env = try Self.environment()
        var input: [JSONValue] = [.object(["role": .string("user"), "content": .string("Should cities ban cars?")])]
        var callIDs: [String] = []
        for turn in 0..<3 {
            let body = JSONValue.object(["model": .string("mock/outer:pace_ms=0"), "input": .array(input),
                                         "plugins": .array([.object(["id": .string("fusion"), "preset": .string("budget")])])])
            let response = try post(env, String(decoding: body.serialized(), as: UTF8.self))
            #expect(response.status == 200 && response.json?["status"] == .string("completed"), "turn \(turn): \(response.text)")
            let output = response.json?["output"]?.arrayValue ?? []
            callIDs += output.compactMap { $0["type"] == .string("openrouter:fusion") ? $0["call_id"]?.stringValue : nil }
            input += output + [.object(["role": .string("user"), "content": .string("And bicycles, turn \(turn)?")])]
        }
        #expect(callIDs.count == 3 && Set(callIDs).count == 3 && callIDs.allSatisfy { $0.hasPrefix("call_fusion_") }, "\(callIDs)")
    }

    @Test func fusionWholeAndThePluginForm() throws {
        let env = try Self.environment()
        let response = try post(env, #"{"model":"mock/outer:pace_ms=1","input":"Should cities ban cars?","plugins":[{"id":"fusion","preset":"budget"}]}"#)
        #expect(response.status == 200, "\(response.text)")
        let output = response.json?["output"]?.arrayValue ?? []
        #expect(output.first?["type"] == .string("openrouter:fusion") && output.first?["panel"]?["answered"]?.intValue == 2, "\(response.text)")
        #expect(output.last?["type"] == .string("message"))
        let record = try env.generation(response.json?["id"]?.stringValue)
        #expect(record?["router"] == .string("openrouter/fusion") && record?["entry_point"] == .string("fusion_plugin"), "\(String(describing: record))")
        let alias = try post(env, #"{"model":"openrouter/fusion","input":"Should cities ban cars?","tool_choice":"required"}"#)
        #expect(alias.status == 200, "\(alias.text)")
        let aliased = try env.generation(alias.json?["id"]?.stringValue)
        #expect(aliased?["router"] == .string("openrouter/fusion") && aliased?["entry_point"] == .string("openrouter/fusion"))
        #expect(alias.json?["model"] == .string("mock/outer:pace_ms=1"), "the concrete model, not the alias")
    }
}
