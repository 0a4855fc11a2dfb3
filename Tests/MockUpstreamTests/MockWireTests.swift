import GatewayCore
import HTTPServer
@testable import MockUpstream
import Providers
import Testing

/// The simulator's Anthropic and Gemini APIs, checked with the gateway's own decoders: whatever a
/// scenario says, each vendor's bytes decode to the same answer, tool calls, finish and usage.
/// (The mock itself shares no code with the providers: each side is the other's test.)
@Suite struct MockWireTests {
    enum Vendor: String, CaseIterable { case openAI, anthropic, gemini }

    static func wire(_ vendor: Vendor, _ script: MockScript) -> any MockWire {
        switch vendor {
        case .openAI: MockOpenAIStream(script: script, includeUsage: true)
        case .anthropic: MockAnthropicStream(script: script)
        case .gemini: MockGeminiStream(script: script)
        }
    }

    static func provider(_ vendor: Vendor) -> any Provider {
        switch vendor {
        case .openAI: OpenAICompatibleProvider()
        case .anthropic: AnthropicProvider()
        case .gemini: GeminiProvider()
        }
    }

    static let question: JSONValue = .object(["messages": .array([
        .object(["role": .string("user"), "content": .string("Should cities ban cars from their centres?")])])])

    static func script(_ model: String, request: JSONValue = question) throws -> MockScript {
        try MockScript(scenario: MockScenario.parse(model: model), model: model, request: request,
                       rawBody: Array(request.serialized()), id: "x1")
    }

    /// The bytes of a whole stream: its start, `steps` steps (all by default), then the finish or
    /// the scenario's failure.
    static func stream(_ vendor: Vendor, _ script: MockScript, steps: Int? = nil, ending: (inout any MockWire, inout [UInt8]) -> Void) -> [UInt8] {
        var wire = wire(vendor, script)
        var out: [UInt8] = []
        wire.appendStart(to: &out)
        for step in script.steps.prefix(steps ?? script.steps.count) { wire.appendStep(step, to: &out) }
        ending(&wire, &out)
        return out
    }

    static func decode(_ bytes: [UInt8], _ vendor: Vendor) throws -> (events: [ModelEvent], end: StreamEnd) {
        var decoder = provider(vendor).streamDecoder(maxEventBytes: 1 << 20, redactor: .none)
        var events: [ModelEvent] = []
        // Byte by byte: the vendor's framing must hold however a socket splits it.
        for byte in bytes { _ = try [byte].withUnsafeBytes { try decoder.decode($0) { events.append($0) } } }
        try decoder.finish { events.append($0) }  // the body's end, as the relays read it
        return (events, decoder.end())
    }

    /// What events say, summed up.
    struct Answer: Equatable {
        var text = "", reasoning = "", finish: FinishReason?, usage: Usage?, error: APIError?
        var calls = ToolCallAccumulator()

        init(_ events: [ModelEvent]) {
            for event in events {
                switch event {
                case .text(let piece): text += piece
                case .reasoning(let piece): reasoning += piece
                case .toolCall(let fragment): calls.add(fragment)
                case .finish(let reason): finish = reason
                case .usage(let reported): usage = reported
                case .error(let reported): error = reported
                case .reasoningSignature, .redactedReasoning, .stopDetail, .messageExtras, .refusal, .providerBlock: break
                }
            }
        }

        func expectMatches(_ script: MockScript, _ label: String) {
            #expect(text == script.fullContent, "\(label)")
            #expect(reasoning == script.fullReasoning, "\(label)")
            #expect(finish == (script.callsTool ? .toolCalls : .stop), "\(label)")
            #expect(usage?.completionTokens == Int64(script.completionTokens), "\(label)")
            #expect(usage?.promptTokens == Int64(script.promptTokens), "\(label)")
            #expect(calls.calls.map(\.name) == script.toolCalls.map(\.name), "\(label)")
            #expect(calls.calls.map(\.id) == script.toolCalls.map(\.id), "\(label)")
            for (call, expected) in zip(calls.calls, script.toolCalls) {
                #expect((try? JSONValue.parse(Array(call.arguments.utf8))) == (try? JSONValue.parse(Array(expected.arguments.utf8))), "\(label)")
            }
        }
    }

    static let models = ["normal", "tool-call", "empty", "expert-3", "paced:deltas=5", "researcher:parallel=2", "echo"]

    @Test(arguments: Vendor.allCases, models)
    func aStreamDecodesToWhatTheScenarioSays(vendor: Vendor, model: String) throws {
        let researcherRequest: JSONValue = .object([
            "messages": .array([.object(["role": .string("user"), "content": .string("What do studies say?")])]),
            "tools": .array([.object(["type": .string("function"), "function": .object(["name": .string("web_search")])])]),
        ])
        let script = try Self.script(model, request: model.hasPrefix("researcher") ? researcherRequest : Self.question)
        let (events, end) = try Self.decode(Self.stream(vendor, script) { wire, out in wire.appendFinish(to: &out) }, vendor)
        #expect(end == .complete)
        Answer(events).expectMatches(script, "\(vendor) \(model)")
        let whole = try Self.provider(vendor).decodeResponse(Self.wire(vendor, script).wholeResponse(), redactor: .none)
        var wholeAnswer = Answer(whole)
        if vendor == .openAI { wholeAnswer.reasoning = script.fullReasoning }  // its whole response has no reasoning field
        wholeAnswer.expectMatches(script, "\(vendor) \(model) whole")
    }

    @Test(arguments: Vendor.allCases)
    func failuresMidStreamAreWhatTheVendorSends(vendor: Vendor) throws {
        let script = try Self.script("error-mid-stream")
        let failed = try Self.decode(Self.stream(vendor, script, steps: 3) { wire, out in wire.appendMidStreamError(to: &out) }, vendor)
        guard case .error(let error)? = failed.events.last else { Issue.record("\(vendor): \(failed.events)"); return }
        #expect(failed.end == .complete)
        #expect(error.status == (vendor == .openAI ? 502 : 503), "\(vendor): \(error)")
        // OpenAI's wire: OpenRouter's `server_error` code, kept (review 81B #2).
        #expect(error.code == ["overloaded", "unavailable", "server_error"][[.anthropic, .gemini, .openAI].firstIndex(of: vendor)!])
        #expect(Answer(failed.events).text == script.steps.prefix(3).map { if case .content(let text) = $0 { text } else { "" } }.joined())

        #expect(throws: StreamDecodingError.self) {
            _ = try Self.decode(Self.stream(vendor, script, steps: 2) { wire, out in wire.appendMalformed(to: &out) }, vendor)
        }
        let cut = try Self.decode(Self.stream(vendor, script, steps: 2) { _, _ in }, vendor)
        #expect(cut.end == .truncated, "a disconnect leaves the stream truncated: \(vendor)")
    }

    @Test(arguments: Vendor.allCases)
    func errorsBeforeTheStreamAreInTheVendorsShape(vendor: Vendor) throws {
        let wire = type(of: Self.wire(vendor, try Self.script("normal")))
        let limited = wire.errorResponse(APIError(status: 429, type: "rate_limit_error", code: "rate_limited", message: "slow down",
                                                  headers: [("Retry-After", "2")]))
        let mapped = Self.provider(vendor).error(status: limited.status, body: limited.body, headers: limited.headers, provider: "sim",
                                                 redactor: .none)
        #expect(mapped.status == 429 && mapped.code == "rate_limited" && mapped.message.contains("slow down"))
        // Google says it in the body only: read from there.
        #expect(mapped.headers.map(\.1) == [vendor == .gemini ? "2000" : "2"])
        let body = try JSONValue.parse(limited.body)
        switch vendor {
        case .anthropic: #expect(body["type"] == .string("error") && body["error"]?["type"] == .string("rate_limit_error"))
        case .gemini: #expect(body["error"]?["status"] == .string("RESOURCE_EXHAUSTED") && body["error"]?["code"] == .int(429))
        case .openAI: #expect(body["error"]?["code"] == .string("rate_limited"))
        }
        let failed = wire.errorResponse(APIError(status: 503, type: "server_error", code: "mock_flaky", message: "down"))
        #expect(Self.provider(vendor).error(status: 503, body: failed.body, headers: [], provider: "sim", redactor: .none).status == 503)
    }

    /// The gateway's own requests, as its providers encode them, drive the same scenario logic:
    /// the outer model calls fusion, the judge judges, the final answer reads the tool result.
    @Test func theGatewaysNativeRequestsDriveTheRoles() throws {
        let endpoint = ProviderEndpoint(name: "sim", baseURL: "http://127.0.0.1:1/v1")
        var outer = ModelRequest(model: "outer", messages: [ModelMessage(role: .user, text: "Should cities ban cars entirely?")])
        outer.tools = [.function(name: "fusion", description: nil, parameters: nil, strict: nil)]
        let judge = ModelRequest(model: "outer", messages: [
            ModelMessage(role: .system, text: "You are the judge of a fusion-gateway deliberation. Compare."),
            ModelMessage(role: .user, text: "<answer model=\"a/x\">\n- Trade-offs matter.\n</answer>\n<answer model=\"b/y\">\n- Trade-offs matter.\n</answer>\n"),
        ])
        var final = outer
        final.messages += [ModelMessage(role: .assistant, content: [], toolCalls: [ToolCall(index: 0, id: "c1", name: "fusion", arguments: "{}")]),
                           ModelMessage(role: .tool, content: [.text(#"{"status":"error","failure_reason":"all_panels_failed"}"#)],
                                        toolCallID: "c1", name: "fusion")]
        let shapes: [(String, (ModelRequest) throws -> JSONValue)] = [
            ("anthropic", { MockAnthropicStream.chatShape(of: try JSONValue.parse(AnthropicProvider().httpRequest(for: $0, endpoint: endpoint, extraHeaders: []).body)) }),
            ("gemini", { MockGeminiStream.chatShape(of: try JSONValue.parse(GeminiProvider().httpRequest(for: $0, endpoint: endpoint, extraHeaders: []).body),
                                                    model: $0.model) }),
        ]
        for (vendor, shape) in shapes {
            let calls = try Self.script("outer", request: shape(outer)).toolCalls
            #expect(calls.map(\.name) == ["fusion"], "\(vendor)")
            let analysis = try JSONValue.parse(Array(Self.script("outer", request: shape(judge)).fullContent.utf8))
            #expect(analysis["consensus"] == .array([.string("Trade-offs matter.")]), "\(vendor)")
            #expect(try Self.script("outer", request: shape(final)).fullContent.contains("all_panels_failed"), "\(vendor)")
        }
    }

    /// A client sends its tool turns back and refuses a repeated call id: every answer's calls
    /// have ids of their own (a simulated agent loop failed on its third turn when each turn
    /// called `fusion` under the same id).
    @Test func everyAnswersToolCallsHaveIdsOfTheirOwn() throws {
        let tools: JSONValue = .array(["fusion", "web_search"].map { .object(["type": .string("function"), "function": .object(["name": .string($0)])]) })
        let request: JSONValue = .object(["messages": Self.question["messages"]!, "tools": tools])
        var ids: [String] = []
        for answer in ["chatcmpl-mock-5e1f00a21", "chatcmpl-mock-5e1f00a22", "chatcmpl-mock-77c0d9e11"] {
            for model in ["outer", "tool-call", "researcher:parallel=2"] {
                let scenario = try MockScenario.parse(model: model)
                ids += MockScript(scenario: scenario, model: model, request: request, rawBody: [], id: answer).toolCalls.map(\.id)
            }
        }
        #expect(ids.count == 12)
        #expect(Set(ids).count == ids.count, "\(ids)")
    }

    @Test func geminiPathsNameTheModelAndTheMethod() {
        #expect(MockGeminiStream.route("/v1beta/models/sim%2Fexpert-1:streamGenerateContent")! == ("sim/expert-1", true))
        #expect(MockGeminiStream.route("/v1/models/normal:generateContent")! == ("normal", false))
        #expect(MockGeminiStream.route("/v1beta/models/normal:countTokens") == nil)
        #expect(MockGeminiStream.route("/v1beta/models/:generateContent") == nil)
        #expect(MockGeminiStream.route("/v1/chat/completions") == nil)
    }
}
