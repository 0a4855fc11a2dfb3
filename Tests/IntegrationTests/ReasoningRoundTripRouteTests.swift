import Fusion
import Gateway
import GatewayCore
import MockUpstream
import Providers
import Surfaces
import Testing

/// Extended thinking with tools through the chat and Responses APIs to an Anthropic upstream (the
/// simulator, which refuses what the API refuses: a thinking block it did not sign, and a tool
/// loop whose assistant turn does not start with its thinking block while thinking is on).
@Suite struct ReasoningRoundTripRouteTests {
    static func environment() throws -> TestEnvironment {
        try TestEnvironment { config in
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: config.providers["mock"]!.baseURL,
                                             apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
            config.fusion?.outerModel = "anth/outer:pace_ms=0:think=1"
        }
    }

    static let tools = #"[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{}}}}]"#
    static let signature = "bW9jay1zaWduYXR1cmU="  // the simulator's

    /// What the upstream was asked last: its last assistant turn's block types, and whether thinking was on.
    static func lastTurn(_ env: TestEnvironment) throws -> (blocks: [String], thinking: Bool) {
        let sent = try JSONValue.parse(env.mockStats.lastRequestBody)
        let assistant = sent["messages"]?.arrayValue?.last { $0["role"] == .string("assistant") }
        let blocks = assistant?["content"]?.arrayValue ?? []
        if let first = blocks.first, first["type"] == .string("thinking") {
            #expect(first["signature"] == .string(signature) && first["thinking"] == .string("The user wants a tool."), "\(first)")
        }
        return (blocks.compactMap { $0["type"]?.stringValue }, sent["thinking"] != nil)
    }

    @Test(arguments: [true, false]) func aChatClientSendsTheThinkingBackInReasoningDetails(stream: Bool) throws {
        let env = try Self.environment()
        let first = try env.chat(#"{"model":"anth/tool-call:pace_ms=0:think=1","stream":\#(stream),"reasoning":{"effort":"low"},"tools":\#(Self.tools),"messages":[{"role":"user","content":"Weather?"}]}"#)
        #expect(first.status == 200, "\(first.text)")
        let details: [JSONValue]
        let calls: JSONValue
        if stream {
            let deltas = first.plainChunksJSON.compactMap { $0["choices"]?.arrayValue?.first?["delta"] }
            details = deltas.compactMap { $0["reasoning_details"]?.arrayValue }.flatMap { $0 }
            let id = deltas.compactMap { $0["tool_calls"]?.arrayValue?.first?["id"]?.stringValue }.first ?? ""
            calls = .array([.object(["id": .string(id), "type": .string("function"),
                                     "function": .object(["name": .string("get_weather"), "arguments": .string("{}")])])])
        } else {
            let message = first.json?["choices"]?.arrayValue?.first?["message"]
            details = message?["reasoning_details"]?.arrayValue ?? []
            calls = message?["tool_calls"] ?? .null
        }
        #expect(details == [ReasoningDetail.json(.thinking(text: "The user wants a tool.", signature: Self.signature), index: 0)], "\(first.text)")
        let id = calls.arrayValue?.first?["id"]?.stringValue ?? ""
        func turn(_ details: [JSONValue]?) -> String {
            let assistant: JSONValue = .object(["role": .string("assistant"), "content": .null, "tool_calls": calls,
                                                "reasoning_details": details.map(JSONValue.array) ?? .null])
            return #"{"model":"anth/normal:pace_ms=0","reasoning":{"effort":"low"},"tools":\#(Self.tools),"messages":[{"role":"user","content":"Weather?"},\#(String(decoding: assistant.serialized(), as: UTF8.self)),{"role":"tool","tool_call_id":"\#(id)","content":"rain"}]}"#
        }
        let second = try env.chat(turn(details))
        #expect(second.status == 200, "\(second.text)")
        #expect(try Self.lastTurn(env) == (["thinking", "tool_use"], true))
        // A client that kept only the text: the loop goes on without thinking, not a 400.
        let plain = try env.chat(turn(nil))
        #expect(plain.status == 200, "\(plain.text)")
        #expect(try Self.lastTurn(env) == (["tool_use"], false))
    }

    @Test(arguments: [true, false]) func aResponsesClientSendsTheItemsBackAsTheyCame(stream: Bool) throws {
        let env = try Self.environment()
        try Self.responsesToolLoop(through: env, models: "anth/", stream: stream)
        #expect(try Self.lastTurn(env) == (["thinking", "tool_use"], true))
    }

    /// The same through an OpenRouter-like upstream (review 52A #1): a second gateway whose
    /// provider `or` is the first one's chat completions (which speak OpenRouter's
    /// `reasoning_details`, as OpenRouter does for Claude). The signed thinking reaches the
    /// Responses client, and goes back to `or` on the next turn, or the simulator behind it
    /// refuses the tool loop.
    @Test(arguments: [true, false]) func aResponsesClientsThinkingRoundTripsThroughAnOpenRouterLikeUpstream(stream: Bool) throws {
        let inner = try Self.environment()
        let outer = try TestEnvironment { config in
            var provider = GatewayConfig.Provider(name: "or", baseURL: "http://127.0.0.1:\(inner.gatewayPort)/v1")
            provider.reasoningField = .object
            config.providers["or"] = provider
        }
        try Self.responsesToolLoop(through: outer, models: "or/anth/", stream: stream)
        #expect(try Self.lastTurn(inner) == (["thinking", "tool_use"], true))
    }

    /// A Responses client's tool loop with thinking on `models` (a prefix of the simulator's
    /// `tool-call` and `normal`): its first answer's reasoning item carries the signed block, and
    /// the client sends its output items back with the tool's result.
    static func responsesToolLoop(through env: TestEnvironment, models: String, stream: Bool,
                                  sourceLocation: SourceLocation = #_sourceLocation) throws {
        let body = #"{"model":"\#(models)tool-call:pace_ms=0:think=1","stream":\#(stream),"reasoning":{"effort":"low"},"tools":[{"type":"function","name":"get_weather","parameters":{"type":"object","properties":{}}}],"input":"Weather?"}"#
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/responses", body: body))
        let first = try client.readResponse()
        #expect(first.status == 200, "\(first.text)", sourceLocation: sourceLocation)
        let response = stream ? first.namedEvents.last { $0.name == "response.completed" }?.data["response"] : first.json
        let output = response?["output"]?.arrayValue ?? []
        #expect(output.compactMap { $0["type"]?.stringValue } == ["reasoning", "function_call"], "\(first.text)", sourceLocation: sourceLocation)
        #expect(output.first?["encrypted_content"]?.stringValue.flatMap { ReasoningBlock(token: $0) }
                    == .thinking(text: "The user wants a tool.", signature: Self.signature), "\(first.text)", sourceLocation: sourceLocation)
        let callID = output.last?["call_id"] ?? .null
        let input: [JSONValue] = [.object(["role": .string("user"), "content": .string("Weather?")])] + output
            + [.object(["type": .string("function_call_output"), "call_id": callID, "output": .string("rain")])]
        let next = JSONValue.object(["model": .string("\(models)normal:pace_ms=0"), "reasoning": .object(["effort": .string("low")]),
                                     "input": .array(input)])
        let again = try env.client()
        try again.send(TestEnvironment.post("/v1/responses", body: String(decoding: next.serialized(), as: UTF8.self)))
        let second = try again.readResponse()
        #expect(second.status == 200, "\(second.text)", sourceLocation: sourceLocation)
    }

    /// Fusion's outer model thinks, then calls fusion: its final turn carries that thinking back.
    @Test func fusionsFinalTurnCarriesTheOuterModelsThinking() throws {
        let env = try Self.environment()
        let response = try env.chat(#"{"model":"fusion","stream":true,"reasoning":{"effort":"low"},"messages":[{"role":"user","content":"Should cities ban cars?"}]}"#)
        #expect(response.status == 200 && response.text.contains("[DONE]"), "\(response.text)")
        #expect(!response.text.contains("\"error\""), "\(response.text)")
        let last = try Self.lastTurn(env)
        #expect(last == (["thinking", "tool_use"], true), "\(last) \(String(decoding: env.mockStats.lastRequestBody, as: UTF8.self))")
    }

    /// Fusion's outer model runs Anthropic's web search before it calls fusion (review 16 #6): a
    /// Messages client gets the search's blocks, and the final turn carries them back in place
    /// (the simulator, as the API, refuses a `server_tool_use` without its result).
    @Test(arguments: [true, false]) func fusionsFinalTurnCarriesTheOuterModelsServerTools(stream: Bool) throws {
        let env = try TestEnvironment { config in
            config.providers["anth"] = .init(name: "anth", kind: .anthropic, baseURL: config.providers["mock"]!.baseURL,
                                             apiKeyEnvironmentVariable: "TEST_PROVIDER_KEY")
            config.fusion?.outerModel = "anth/outer:pace_ms=0:server_search=1"
        }
        let client = try env.client()
        try client.send(TestEnvironment.post("/v1/messages", body: #"{"model":"fusion","max_tokens":1024,"stream":\#(stream),"messages":[{"role":"user","content":"Should cities ban cars?"}]}"#,
                                             headers: ["anthropic-version": "2023-06-01"]))
        let response = try client.readResponse()
        #expect(response.status == 200, "\(response.text)")
        let types = stream ? response.namedEvents.filter { $0.name == "content_block_start" }.compactMap { $0.data["content_block"]?["type"]?.stringValue }
                           : (response.json?["content"]?.arrayValue ?? []).compactMap { $0["type"]?.stringValue }
        #expect(Array(types.prefix(2)) == ["server_tool_use", "web_search_tool_result"] && types.last == "text", "\(types) \(response.text)")
        #expect(!response.text.contains("\"error\""), "\(response.text)")
        let sent = try JSONValue.parse(env.mockStats.lastRequestBody)
        let assistant = sent["messages"]?.arrayValue?.last { $0["role"] == .string("assistant") }
        let blocks = assistant?["content"]?.arrayValue ?? []
        #expect(blocks.compactMap { $0["type"]?.stringValue } == ["server_tool_use", "web_search_tool_result", "tool_use"], "\(blocks)")
        #expect(blocks.first?["input"] == .object(["query": .string("Should cities ban cars?")]), "\(blocks)")
    }
}
