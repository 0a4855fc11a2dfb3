import Foundation
import GatewayCore
import Providers
import Testing

@Suite struct AnthropicProviderTests {
    let provider = AnthropicProvider()
    let endpoint = ProviderEndpoint(name: "anthropic", baseURL: "https://api.anthropic.com/v1", apiKey: "sk-ant-secret",
                                    headers: ["X-Title": "t"])

    func body(_ request: ModelRequest, endpoint: ProviderEndpoint? = nil) throws -> JSONValue {
        try JSONValue.parse(provider.httpRequest(for: request, endpoint: endpoint ?? self.endpoint, extraHeaders: []).body)
    }

    /// Chat's and Responses' `json_schema` format is Anthropic's `output_config.format`, beside
    /// an adaptive model's effort, and a strict function tool stays strict (review 77A #1: a 400
    /// said the API had no structured output; `strict` was dropped).
    @Test func aJSONSchemaFormatAndStrictToolsAreAnthropicsStructuredOutput() throws {
        let schema = JSONValue.object(["type": .string("object"), "properties": .object(["a": .object(["type": .string("string")])]),
                                       "required": .array([.string("a")]), "additionalProperties": .bool(false)])
        var request = ModelRequest(model: "claude-opus-4-6", messages: [ModelMessage(role: .user, text: "q")])
        request.responseFormat = .object(["type": .string("json_schema"),
                                          "json_schema": .object(["name": .string("r"), "strict": .bool(true), "schema": schema])])
        request.tools = [.function(name: "f", description: nil, parameters: schema, strict: true),
                         .function(name: "g", description: nil, parameters: nil, strict: false)]
        request.reasoning = ModelRequest.Reasoning(effort: "low")
        try provider.validate(request)
        let json = try body(request)
        #expect(json["output_config"]?["format"] == .object(["type": .string("json_schema"), "schema": schema]), "\(json)")
        #expect(json["output_config"]?["effort"] == .string("low"))
        #expect(json["tools"]?.arrayValue?.map { $0["strict"] } == [.bool(true), nil])
        // A format without a schema cannot be one.
        request.responseFormat = .object(["type": .string("json_schema"), "json_schema": .object(["name": .string("r")])])
        #expect(throws: APIError.self) { try provider.validate(request) }
    }

    /// Instructions alone are a 400 naming the list on both native APIs (review 107 #6: an empty
    /// `messages` or `contents` went upstream); OpenAI-compatible APIs take them.
    @Test func instructionsAloneAreRefusedByTheNativeAPIs() throws {
        var request = ModelRequest(model: "claude-x", messages: [ModelMessage(role: .system, text: "be brief"), ModelMessage(role: .developer, text: "d")])
        for native in [AnthropicProvider() as any Provider, GeminiProvider()] {
            do {
                try native.validate(request)
                Issue.record("accepted")
            } catch {
                #expect(error.status == 400 && error.param == "messages", "\(error)")
            }
        }
        try OpenAICompatibleProvider().validate(request)
        request.messages.append(ModelMessage(role: .user, text: "q"))
        try provider.validate(request)
        try GeminiProvider().validate(request)
    }

    /// `image/jpg`, a name OpenAI's API takes, is JPEG's registered name on Anthropic's and
    /// Gemini's APIs (review 77A #5: a 400 for Claude, `image/jpg` for Gemini).
    @Test func aJPGDataURIIsJPEG() throws {
        let request = ModelRequest(model: "claude-x", messages: [
            ModelMessage(role: .user, content: [.image(url: "data:image/jpg;base64,/9j/4AA=", detail: nil)])])
        try provider.validate(request)
        #expect(try body(request)["messages"]?.arrayValue?.first?["content"]?.arrayValue?.first?["source"]?["media_type"] == .string("image/jpeg"))
        let gemini = try JSONValue.parse(GeminiProvider().httpRequest(for: request, endpoint: ProviderEndpoint(name: "g", baseURL: "https://x.example/v1beta"),
                                                                      extraHeaders: []).body)
        #expect(gemini["contents"]?.arrayValue?.first?["parts"]?.arrayValue?.first?["inlineData"]?["mimeType"] == .string("image/jpeg"), "\(gemini)")
    }

    static var richRequest: ModelRequest {
        var request = ModelRequest(model: "claude-x", messages: [
            ModelMessage(role: .system, text: "Be brief."),
            ModelMessage(role: .user, content: [.text("What is in these?"), .image(url: "https://x.example/a.png", detail: "low"),
                                                .image(url: "https://x.example/report.PDF?dl=1#page=2", detail: nil),
                                                .image(url: "data:image/png;base64,iVBORw0KGgo=", detail: nil),
                                                .other(.object(["type": .string("file"), "file": .object([
                                                    "filename": .string("a.pdf"), "file_data": .string("data:application/pdf;base64,JVBERi0=")])]))]),
            ModelMessage(role: .developer, text: "Use metric units."),
            ModelMessage(role: .user, text: "And the weather?"),
            ModelMessage(role: .assistant, content: [.text("Looking.")], toolCalls: [
                ToolCall(index: 0, id: "toolu_1", name: "look", arguments: #"{"what":"a"}"#),
                ToolCall(index: 1, id: "toolu_2", name: "weather", arguments: ""),
            ]),
            ModelMessage(role: .tool, content: [.text("a cat")], toolCallID: "toolu_1", name: "look"),
            ModelMessage(role: .tool, content: [.text("sunny"), .image(url: "https://x.example/sky.png", detail: nil)], toolCallID: "toolu_2"),
            ModelMessage(role: .user, text: "Thanks."),
            ModelMessage(role: .assistant, text: ""),
        ])
        request.tools = [
            .function(name: "look", description: "Look at things",
                      parameters: .object(["type": .string("object"), "properties": .object(["what": .object(["type": .string("string")])])]),
                      strict: true),
            .function(name: "weather", description: nil, parameters: nil, strict: nil),
            .other(.object(["type": .string("web_search_20250305"), "name": .string("web_search"), "max_uses": .int(2)])),
        ]
        request.toolChoice = .required
        request.parallelToolCalls = false
        request.maxOutputTokens = 1000
        request.temperature = 0.5
        request.topP = 0.9
        request.stop = ["END"]
        request.extraFields = ["seed": .int(7)]  // an OpenAI client's field: not Anthropic's
        return request
    }

    @Test func aRichRequestEncodesToTheGoldenBody() throws {
        let golden = try JSONValue.parse(Array(#"""
            {"model":"claude-x",
             "system":[{"type":"text","text":"Be brief."},{"type":"text","text":"Use metric units."}],
             "messages":[
              {"role":"user","content":[
                {"type":"text","text":"What is in these?"},
                {"type":"image","source":{"type":"url","url":"https://x.example/a.png"}},
                {"type":"document","source":{"type":"url","url":"https://x.example/report.PDF?dl=1#page=2"}},
                {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
                {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="}},
                {"type":"text","text":"And the weather?"}]},
              {"role":"assistant","content":[
                {"type":"text","text":"Looking."},
                {"type":"tool_use","id":"toolu_1","name":"look","input":{"what":"a"}},
                {"type":"tool_use","id":"toolu_2","name":"weather","input":{}}]},
              {"role":"user","content":[
                {"type":"tool_result","tool_use_id":"toolu_1","content":"a cat"},
                {"type":"tool_result","tool_use_id":"toolu_2","content":[
                  {"type":"text","text":"sunny"},{"type":"image","source":{"type":"url","url":"https://x.example/sky.png"}}]},
                {"type":"text","text":"Thanks."}]}],
             "stream":true,
             "tools":[
              {"name":"look","description":"Look at things","input_schema":{"type":"object","properties":{"what":{"type":"string"}}},"strict":true},
              {"name":"weather","input_schema":{"type":"object","properties":{}}},
              {"type":"web_search_20250305","name":"web_search","max_uses":2}],
             "tool_choice":{"type":"any","disable_parallel_tool_use":true},
             "max_tokens":1000,"temperature":0.5,"stop_sequences":["END"]}
            """#.utf8))
        try provider.validate(Self.richRequest)
        #expect(try body(Self.richRequest) == golden)
    }

    @Test func headersCarryTheKeyAndAPinnedVersion() {
        let http = provider.httpRequest(for: Self.richRequest, endpoint: endpoint, extraHeaders: [("x-fusion-depth", "1")])
        #expect(http.url == "https://api.anthropic.com/v1/messages")
        #expect(http.headers.map(\.0) == ["Content-Type", "Accept", "x-api-key", "anthropic-version", "X-Title", "x-fusion-depth"])
        #expect(http.headers.contains { $0 == ("x-api-key", "sk-ant-secret") })
        #expect(http.headers.contains { $0 == ("anthropic-version", "2023-06-01") })
        #expect(http.headers.contains { $0 == ("Accept", "text/event-stream") })
        #expect(!http.headers.contains { $0.0 == "Authorization" })
    }

    @Test func anEndpointMayPinAnotherVersionWhichDropsSamplingFields() throws {
        var pinned = endpoint
        pinned.headers = ["anthropic-version": "2026-10-21"]
        let http = provider.httpRequest(for: Self.richRequest, endpoint: pinned, extraHeaders: [])
        #expect(http.headers.filter { $0.0.lowercased() == "anthropic-version" }.map(\.1) == ["2026-10-21"])
        let json = try JSONValue.parse(http.body)
        #expect(json["temperature"] == nil && json["top_p"] == nil)
    }

    /// OpenAI's temperature range is 0–2, Anthropic's 0–1; Claude models since 4.5 refuse
    /// `temperature` with `top_p`: the temperature is kept, clamped.
    @Test func samplingFitsTheAPIsRules() throws {
        var request = ModelRequest(model: "m", messages: [ModelMessage(role: .user, text: "hi")])
        request.topP = 0.9
        #expect(try body(request)["top_p"] == .double(0.9))
        for (temperature, sent) in [(1.7, 1.0), (-1.0, 0.0), (0.3, 0.3)] {
            request.temperature = temperature
            let json = try body(request)
            #expect(json["temperature"]?.doubleValue == sent && json["top_p"] == nil, "\(temperature)")
        }
    }

    /// Claude 4.6 and later think adaptively (Opus 4.7 refuses a budget); earlier models, and
    /// names that are no Claude version, take the budget.
    @Test func eachClaudeIsAskedToThinkTheWayItTakes() throws {
        for (model, adaptive) in [("claude-opus-4-7", true), ("claude-opus-4.7", true), ("claude-opus-4-6-20260205", true),
                                  ("claude-sonnet-5", true), ("claude-mythos-preview", true), ("anthropic.claude-opus-4-8-v1:0", true),
                                  ("claude-sonnet-4-5-20250929", false), ("claude-haiku-4-5", false), ("claude-sonnet-4-20250514", false),
                                  ("claude-3-7-sonnet-20250219", false), ("claude-opus-4-1", false), ("my-deployment", false),
                                  ("tool-call:think=1", false)] {
            var request = ModelRequest(model: model, messages: [ModelMessage(role: .user, text: "Q")])
            request.reasoning = ModelRequest.Reasoning(effort: "high")
            let thinking = try body(request)["thinking"]
            #expect((thinking?["type"] == .string("adaptive")) == adaptive && (thinking?["budget_tokens"] == nil) == adaptive, "\(model): \(thinking ?? .null)")
        }
        var request = ModelRequest(model: "claude-opus-4-7", messages: [ModelMessage(role: .user, text: "Q")])
        for (reasoning, effort) in [(ModelRequest.Reasoning(effort: "minimal"), "low"), (.init(effort: "xhigh"), "xhigh"), (.init(effort: "max"), "max"),
                                    (.init(maxTokens: 2000), "low"), (.init(maxTokens: 8000), "medium"), (.init(maxTokens: 30000), "high"),
                                    (.init(), nil)] as [(ModelRequest.Reasoning, String?)] {
            request.reasoning = reasoning
            let json = try body(request)
            #expect(json["output_config"]?["effort"]?.stringValue == effort && json["thinking"]?["display"] == .string("summarized"), "\(reasoning): \(json)")
            #expect(json["max_tokens"]?.intValue ?? 0 > 4096, "room to think beyond the default answer")
        }
        // A budget past any output cap: room to think within the adaptive models' least cap
        // (review 71B #5: 2^31 made a 16,781,312-token max_tokens).
        for budget: Int64 in [Int64(Int32.max), 200_000] {
            request.reasoning = ModelRequest.Reasoning(maxTokens: budget)
            #expect(try body(request)["max_tokens"] == .int(64_000), "\(budget)")
        }
        request.model = "claude-opus-4-6"
        request.reasoning = ModelRequest.Reasoning(effort: "xhigh", exclude: true)
        var json = try body(request)
        #expect(json["output_config"]?["effort"] == .string("high") && json["thinking"]?["display"] == .string("omitted"), "4.6 has no xhigh")
        // A limit the budgeted form has no room under still thinks adaptively, within it; a
        // client's own output_config keeps its other members.
        request.maxOutputTokens = 500
        request.reasoning = ModelRequest.Reasoning(effort: "low")
        request.extraFields = ["output_config": .object(["format": .object(["type": .string("json_schema")])])]
        request.extraFieldsFormat = .anthropicMessages
        json = try body(request)
        #expect(json["max_tokens"] == .int(500) && json["thinking"]?["type"] == .string("adaptive"))
        #expect(json["output_config"] == .object(["format": .object(["type": .string("json_schema")]), "effort": .string("low")]))
        request.reasoning = ModelRequest.Reasoning(enabled: false)
        json = try body(request)
        #expect(json["thinking"] == nil && json["output_config"]?["effort"] == nil, "off is off")
    }

    @Test func maxTokensIsAlwaysSentAndThinkingFitsUnderIt() throws {
        var request = ModelRequest(model: "m", messages: [ModelMessage(role: .user, text: "hi")])
        request.temperature = 0.3
        #expect(try body(request)["max_tokens"] == .int(4096))
        #expect(try body(request)["thinking"] == nil && body(request)["temperature"] == .double(0.3))

        request.reasoning = ModelRequest.Reasoning(effort: "high")
        var json = try body(request)
        #expect(json["thinking"] == .object(["type": .string("enabled"), "budget_tokens": .int(16384)]))
        #expect(json["max_tokens"] == .int(4096 + 16384), "the answer keeps its room")
        #expect(json["temperature"] == nil, "the API refuses changed sampling with thinking")

        request.maxOutputTokens = 5000
        json = try body(request)
        #expect(json["max_tokens"] == .int(5000) && json["thinking"]?["budget_tokens"] == .int(4999))

        request.maxOutputTokens = 1024
        json = try body(request)
        #expect(json["thinking"] == nil && json["max_tokens"] == .int(1024) && json["temperature"] == .double(0.3), "no room to think")

        request.maxOutputTokens = nil
        request.reasoning = ModelRequest.Reasoning(maxTokens: 3000)
        #expect(try body(request)["thinking"]?["budget_tokens"] == .int(3000))
        request.reasoning = ModelRequest.Reasoning(maxTokens: -5)
        #expect(try body(request)["thinking"]?["budget_tokens"] == .int(1024), "the API's minimum")
        request.reasoning = ModelRequest.Reasoning(maxTokens: .max)
        #expect(try body(request)["max_tokens"]?.intValue ?? 0 > 0, "no overflow")
        request.reasoning = ModelRequest.Reasoning(effort: "none")
        #expect(try body(request)["thinking"] == nil)
        request.reasoning = ModelRequest.Reasoning(effort: "high", maxTokens: 2000, enabled: false)
        #expect(try body(request)["thinking"] == nil, "OpenRouter's enabled: false")
        #expect(try JSONValue.parse(GeminiProvider().httpRequest(for: request, endpoint: endpoint, extraHeaders: []).body)["generationConfig"]?["thinkingConfig"]
                    == .object(["thinkingBudget": .int(0)]), "Gemini thinks unless told not to")
        // Thinking cannot go with a forced tool call on this API: the tool choice wins.
        request.reasoning = ModelRequest.Reasoning(effort: "low")
        request.tools = [.function(name: "f", description: nil, parameters: nil, strict: nil)]
        for (choice, thinks) in [(ToolChoice.required, false), (.function("f"), false), (.auto, true), (.none, true)] {
            request.toolChoice = choice
            #expect(try (body(request)["thinking"] != nil) == thinks, "\(choice)")
        }
        request.tools = []
        request.toolChoice = nil
        for (effort, budget) in [("minimal", 1024), ("low", 2048), ("medium", 8192), ("xhigh", 32768), ("max", 65536), ("unheard-of", 8192)] {
            request.reasoning = ModelRequest.Reasoning(effort: effort)
            #expect(try body(request)["thinking"]?["budget_tokens"] == .int(Int64(budget)), "\(effort)")
        }
        #expect(AnthropicProvider(defaultMaxTokens: -1).defaultMaxTokens == 1)
        // Within a budgeted model's own output cap when the client set no limit (review 18 B10):
        // Opus 4 and 4.1 32,000, the other models from 3.7 to 4.5 64,000.
        for (model, effort, maxTokens, budget) in [("claude-opus-4-1-20250805", "max", 32000, 27904), ("claude-opus-4-20250514", "xhigh", 32000, 27904),
                                                   ("claude-sonnet-4-5", "max", 64000, 59904), ("claude-3-7-sonnet-20250219", "max", 64000, 59904),
                                                   ("claude-haiku-4-5", "xhigh", 36864, 32768), ("claude-opus-4-5", "high", 20480, 16384),
                                                   ("my-deployment", "max", 69632, 65536)] {
            request.model = model
            request.reasoning = ModelRequest.Reasoning(effort: effort)
            let sent = try body(request)
            #expect(sent["max_tokens"] == .int(Int64(maxTokens)) && sent["thinking"]?["budget_tokens"] == .int(Int64(budget)), "\(model) \(effort): \(sent)")
        }
        request.maxOutputTokens = 100_000 // the client's own limit goes as given
        #expect(try body(request)["max_tokens"] == .int(100_000))
    }

    /// Signed reasoning goes back at the head of its assistant turn; a tool loop whose assistant
    /// turn lost it (a client that kept only the text) is asked without thinking, which the API
    /// would refuse there.
    @Test func reasoningBlocksLeadTheirTurnAndAToolLoopWithoutThemThinksNoMore() throws {
        let call = ToolCall(index: 0, id: "toolu_1", name: "weather", arguments: "{}")
        let signed: [ReasoningBlock] = [.thinking(text: "Rain?", signature: "sig"), .redacted(data: "ZW5j")]
        var request = ModelRequest(model: "m", messages: [
            ModelMessage(role: .user, text: "Weather?"),
            ModelMessage(role: .assistant, content: [.text("Looking.")], toolCalls: [call], reasoning: signed),
            ModelMessage(role: .tool, content: [.text("rain")], toolCallID: "toolu_1"),
        ])
        request.reasoning = ModelRequest.Reasoning(effort: "low")
        var json = try body(request)
        let turn = json["messages"]?.arrayValue?.dropFirst().first?["content"]?.arrayValue ?? []
        #expect(turn.map { $0["type"]?.stringValue ?? "" } == ["thinking", "redacted_thinking", "text", "tool_use"])
        #expect(turn.first == .object(["type": .string("thinking"), "thinking": .string("Rain?"), "signature": .string("sig")]))
        #expect(turn[1] == .object(["type": .string("redacted_thinking"), "data": .string("ZW5j")]))
        #expect(json["thinking"]?["budget_tokens"] == .int(2048))

        request.messages[1].reasoning = []
        request.temperature = 0.5
        json = try body(request)
        #expect(json["thinking"] == nil && json["temperature"] == .double(0.5), "\(json)")
        // The loop is over once the model answered and the user speaks again: thinking is back.
        request.messages += [ModelMessage(role: .assistant, text: "Rain."), ModelMessage(role: .user, text: "And tomorrow?")]
        #expect(try body(request)["thinking"] != nil)
        // Blocks of an earlier turn are kept as they came; other providers never see them.
        #expect(try body(request)["messages"]?.arrayValue?.dropFirst().first?["content"]?.arrayValue?.first?["type"] == .string("text"))
        request.messages[1].reasoning = signed
        let openAI = try JSONValue.parse(OpenAICompatibleProvider().httpRequest(for: request, endpoint: endpoint, extraHeaders: []).body)
        #expect(!String(decoding: openAI.serialized(), as: UTF8.self).contains("sig"))
    }

    /// Another model's tool-call ids (Kimi's `functions.get_weather:0`) reach the API in its
    /// pattern, the call and its result still paired, two ids never one; whitespace-only stop
    /// sequences (which the API refuses) are left out.
    @Test func toolIDsAreMadeValidAndStopsNeedText() throws {
        let ids = ["functions.get_weather:0", "functions_get_weather_0", "functions:get_weather.0", "toolu_01-Ab", "", "🙂", "a b"]
        var request = ModelRequest(model: "m", messages: [ModelMessage(role: .user, text: "Weather?")])
        request.messages.append(ModelMessage(role: .assistant, content: [], toolCalls: ids.enumerated().map {
            ToolCall(index: $0.offset, id: $0.element, name: "get_weather", arguments: "{}")
        }))
        request.messages += ids.map { ModelMessage(role: .tool, content: [.text("20")], toolCallID: $0) }
        request.stop = ["\n", " \t", "END", ""]
        let json = try body(request)
        let uses = json["messages"]?.arrayValue?.dropFirst().first?["content"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
        let results = json["messages"]?.arrayValue?.last?["content"]?.arrayValue?.compactMap { $0["tool_use_id"]?.stringValue } ?? []
        #expect(uses == results && Set(uses).count == ids.count, "\(uses)")
        #expect(uses[3] == "toolu_01-Ab" && uses[1] == "functions_get_weather_0", "valid ids are kept")
        for id in uses { #expect(!id.isEmpty && id.utf8.allSatisfy { $0 < 0x80 && (Character(UnicodeScalar($0)).isLetter || Character(UnicodeScalar($0)).isNumber || $0 == 0x5F || $0 == 0x2D) }, "\(id)") }
        #expect(json["stop_sequences"] == .array([.string("END")]))
    }

    /// A history with tool blocks and no tools offered (Fusion's final turn, a chat client's last
    /// turn without `tools`) defines the tools the history called, none callable: Anthropic
    /// refuses tool blocks in a request without tools (review 59C #1).
    @Test func aToolHistoryWithoutToolsDefinesThemUncallable() throws {
        var request = ModelRequest(model: "m", messages: [ModelMessage(role: .user, text: "Weather?")])
        request.messages.append(ModelMessage(role: .assistant, content: [], toolCalls: [
            ToolCall(index: 0, id: "c1", name: "get_weather", arguments: "{}"), ToolCall(index: 1, id: "c2", name: "fusion", arguments: "{}"),
            ToolCall(index: 2, id: "c3", name: "get_weather", arguments: "{}"), ToolCall(index: 3, id: "c4", name: "bad name!", arguments: "{}"),
        ]))
        request.messages += ["c1", "c2", "c3", "c4"].map { ModelMessage(role: .tool, content: [.text("20")], toolCallID: $0) }
        let json = try body(request)
        #expect(json["tools"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["get_weather", "fusion"])
        #expect(json["tools"]?.arrayValue?.first?["input_schema"] == .object(["type": .string("object")]))
        #expect(json["tool_choice"] == .object(["type": .string("none")]))
        // Offered tools are the request's own, as they came.
        request.tools = [.function(name: "f", description: nil, parameters: nil, strict: nil)]
        #expect(try body(request)["tools"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["f"] && body(request)["tool_choice"] == nil)
        // No tool block, no tools.
        let plain = try body(ModelRequest(model: "m", messages: [ModelMessage(role: .user, text: "hi")]))
        #expect(plain["tools"] == nil && plain["tool_choice"] == nil)
    }

    @Test func toolChoicesAndAnthropicClientsOwnFields() throws {
        var request = ModelRequest(model: "m", messages: [ModelMessage(role: .user, text: "hi")])
        request.tools = [.function(name: "f", description: nil, parameters: nil, strict: nil)]
        let expected: [(ToolChoice?, Bool?, JSONValue?)] = [
            (.auto, nil, .object(["type": .string("auto")])),
            (ToolChoice.none, false, .object(["type": .string("none")])),
            (.function("f"), nil, .object(["type": .string("tool"), "name": .string("f")])),
            (nil, false, .object(["type": .string("auto"), "disable_parallel_tool_use": .bool(true)])),
            (nil, nil, nil),
        ]
        for (choice, parallel, json) in expected {
            request.toolChoice = choice
            request.parallelToolCalls = parallel
            #expect(try body(request)["tool_choice"] == json, "\(String(describing: choice))")
        }
        request.tools = []
        request.toolChoice = .required
        #expect(try body(request)["tool_choice"] == nil, "no tools, no choice")

        request.extraFields = ["top_k": .int(5), "metadata": .object(["user_id": .string("u")])]
        request.extraFieldsFormat = .anthropicMessages
        #expect(try body(request)["top_k"] == .int(5) && body(request)["metadata"]?["user_id"] == .string("u"))
        request.reasoning = ModelRequest.Reasoning(effort: "low")
        #expect(try body(request)["top_k"] == nil, "no sampling changes with thinking")
    }

    @Test func aToolResultGoesAheadOfTextInItsUserTurn() throws {
        let request = ModelRequest(model: "m", messages: [
            ModelMessage(role: .assistant, content: [], toolCalls: [ToolCall(index: 0, id: "t1", name: "f", arguments: "{}")]),
            ModelMessage(role: .user, text: "also this"),
            ModelMessage(role: .tool, content: [], toolCallID: "t1"),
        ])
        let turns = try #require(body(request)["messages"]?.arrayValue)
        #expect(turns.count == 2)
        #expect(turns[1]["content"] == .array([.object(["type": .string("tool_result"), "tool_use_id": .string("t1")]),
                                               .object(["type": .string("text"), "text": .string("also this")])]))
    }

    @Test(arguments: [
        ("arguments", "messages[0].tool_calls[0].function.arguments"),
        ("repeated-key", "messages[0].tool_calls[0].function.arguments"),
        ("huge-number", "messages[0].tool_calls[0].function.arguments"),
        ("audio", "messages[1].content[0]"),
        ("tiff", "messages[1].content[1]"),
        ("broken-data", "messages[1].content[2]"),
        ("no-id", "messages[2].tool_call_id"),
        ("schema", "response_format"),
        ("empty-turn", "messages[1].content"),
        ("choices", "n"),
        ("logprobs", "logprobs"),
        ("hosted-tool", "tools[1]"),
    ])
    func whatTheAPICannotExpressIsRefusedNamingTheField(_ fault: String, _ param: String) {
        var messages = [
            ModelMessage(role: .assistant, content: [], toolCalls: [ToolCall(index: 0, id: "t", name: "f", arguments: "{}")]),
            ModelMessage(role: .user, content: [.text("x"), .image(url: "data:image/png;base64,AAAA", detail: nil),
                                                .image(url: "https://x.example/ok.tiff", detail: nil)]),
            ModelMessage(role: .tool, content: [.text("r")], toolCallID: "t"),
        ]
        var request = ModelRequest(model: "m", messages: messages)
        #expect(throws: Never.self) { try provider.validate(request) }
        switch fault {
        case "arguments": messages[0].toolCalls[0].arguments = "[1,2]"
        // Read leniently, these became `{"a":2}` and `{"a":null}` upstream (review 59C #6).
        case "repeated-key": messages[0].toolCalls[0].arguments = #"{"a":1,"\u0061":2}"#
        case "huge-number": messages[0].toolCalls[0].arguments = #"{"a":[1e999]}"#
        case "audio": messages[1].content[0] = .other(.object(["type": .string("input_audio")]))
        case "tiff": messages[1].content[1] = .image(url: "data:image/tiff;base64,AAAA", detail: nil)
        case "broken-data": messages[1].content[2] = .image(url: "data:image/png;base64,%%%", detail: nil)
        case "no-id": messages[2].toolCallID = nil
        case "empty-turn": messages[1].content = [.text("")]  // left out, the question would be lost
        case "choices": request.extraFields["n"] = .int(3)
        case "logprobs": request.extraFields["logprobs"] = .bool(true)
        case "hosted-tool":  // Responses' web search: no shape on this API (Anthropic's own server tools go through)
            request.tools = [.function(name: "f", description: nil, parameters: nil, strict: nil), .other(.object(["type": .string("web_search_20250305")]))]
            #expect(throws: Never.self) { try provider.validate(request) }
            request.tools[1] = .other(.object(["type": .string("web_search_preview")]))
        default: request.responseFormat = .object(["type": .string("json_schema")])
        }
        request.messages = messages
        do {
            try provider.validate(request)
            Issue.record("\(fault) was accepted")
        } catch {
            #expect(error.status == 400 && error.param == param, "\(fault): \(error.message)")
        }
    }

    @Test func aWholeMessageDecodesToTheEventsOfAStream() throws {
        let body = Array(#"""
            {"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[
              {"type":"thinking","thinking":"hm","signature":"sig"},
              {"type":"redacted_thinking","data":"xx"},
              {"type":"text","text":"Hi"},
              {"type":"server_tool_use","id":"srv","name":"web_search","input":{"query":"q"}},
              {"type":"tool_use","id":"toolu_1","name":"f","input":{"b":[1],"a":"x"}}],
             "stop_reason":"tool_use","stop_sequence":null,
             "usage":{"input_tokens":10,"cache_creation_input_tokens":1,"cache_read_input_tokens":4,"output_tokens":7,"output_tokens_details":{"thinking_tokens":2}}}
            """#.utf8)
        #expect(try provider.decodeResponse(body, redactor: .none) == [
            .reasoning("hm"), .reasoningSignature("sig"), .redactedReasoning("xx"), .text("Hi"), .providerBlock(.stop),
            .providerBlock(.start(.object(["type": .string("server_tool_use"), "id": .string("srv"), "name": .string("web_search"),
                                           "input": .object(["query": .string("q")])]))), .providerBlock(.stop),
            .toolCall(ToolCallFragment(index: 0, id: "toolu_1", name: "f", arguments: #"{"a":"x","b":[1]}"#)),
            .finish(.toolCalls),
            .usage(Usage(promptTokens: 15, completionTokens: 7, totalTokens: 22, reasoningTokens: 2, cachedTokens: 4, cacheWriteTokens: 1)),
        ])
        let error = try provider.decodeResponse(Array(#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.utf8),
                                                redactor: .none)
        #expect(error == [.error(APIError(status: 503, type: "upstream_error", code: "overloaded",
                                          message: "The upstream reported an error: Overloaded"))])
        #expect(throws: StreamDecodingError.self) { try provider.decodeResponse(Array("[]".utf8), redactor: .none) }
        // A message with no content array, or a tool_use whose input is no object, is no answer
        // (review 16 #7: an empty success, arguments no client's API can carry).
        for broken in [#"{"type":"message","content":"just a string","stop_reason":"end_turn"}"#, #"{"type":"message","stop_reason":"end_turn"}"#,
                       #"{"type":"message","content":[{"type":"tool_use","id":"t","name":"f","input":[1,2]}],"stop_reason":"tool_use"}"#] {
            let events = try provider.decodeResponse(Array(broken.utf8), redactor: .none)
            #expect(events.count == 1 && { if case .error(let error) = events[0] { error.code == "upstream_protocol_error" } else { false } }(), "\(broken)")
        }
        let calls = (0...1024).map { #"{"type":"tool_use","id":"t\#($0)","name":"f","input":{}}"# }.joined(separator: ",")
        let many = try provider.decodeResponse(Array(#"{"type":"message","content":[\#(calls)],"stop_reason":"tool_use"}"#.utf8), redactor: .none)
        #expect(many.count == 1 && { if case .error = many[0] { true } else { false } }(), "as many calls as a stream may carry")
        let typeless = try provider.decodeResponse(Array(#"{"type":"message","content":[{"notype":1},{"type":12},{"type":"text","text":"ok"}],"stop_reason":"end_turn"}"#.utf8),
                                                   redactor: .none)
        #expect(!typeless.contains { if case .providerBlock(.start) = $0 { true } else { false } } && typeless.contains(.text("ok")))
    }

    /// Kimi's Anthropic-compatible endpoint gives parallel `tool_use` blocks one id: each call
    /// gets its own, streamed and whole, so a client can answer each (review 52A #2).
    @Test func toolUseBlocksSharingAnIDEachGetTheirOwn() throws {
        let provider = AnthropicProvider()
        let whole = try provider.decodeResponse(Array(#"{"type":"message","content":[{"type":"tool_use","id":"t","name":"f","input":{}},{"type":"tool_use","id":"t","name":"g","input":{}}],"stop_reason":"tool_use"}"#.utf8),
                                                redactor: .none)
        #expect(whole.compactMap { if case .toolCall(let call) = $0 { call.id } else { nil } } == ["t", "t_1"], "\(whole)")
        let block = { (index: Int, name: String) in
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":\(index),\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"\(name)\",\"input\":{}}}\n\n"
                + "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":\(index)}\n\n"
        }
        let stream = Array((block(0, "f") + block(1, "g") + "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n").utf8)
        let (events, _) = try ProviderFixtures.decode([stream], with: provider)
        #expect(events.compactMap { if case .toolCall(let call) = $0 { call.id } else { nil } } == ["t", "t_1"], "\(events)")
    }

    /// What Anthropic never sends is refused, not half kept (review 98): a tool call's input for
    /// a block never started (#4: dropped without a word), an input given whole in its start and
    /// then in pieces (#5: the start's lost), a second message (#6: its prompt count replaced the
    /// first's), thinking interleaved with another block (#3); a negative count is no count (#6:
    /// a measured 0).
    @Test func whatAnthropicNeverSendsIsRefusedNotHalfKept() throws {
        func event(_ json: String) -> String { "event: x\ndata: " + json + "\n\n" }
        let start = event(#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":10,"output_tokens":1}}}"#)
        let tool = event(#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{"pre":1}}}"#)
        let json = { (index: Int) in event(#"{"type":"content_block_delta","index":\#(index),"delta":{"type":"input_json_delta","partial_json":"{\"post\":2}"}}"#) }
        let text = event(#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#)
            + event(#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hi"}}"#)
        let listInput = event(#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":["pre"]}}"#)
        for (name, stream) in [("an unstarted block's input", start + text + json(5)), ("input whole then in pieces", start + tool + json(0)),
                               ("an input that is no object", start + listInput + json(0)),
                               ("a second message", start + text + start)] {
            #expect(throws: StreamDecodingError.self, "\(name)") { _ = try ProviderFixtures.decode([Array(stream.utf8)], with: provider) }
        }
        // A start's input alone, or `{}` then pieces, is the input.
        let stop = event(#"{"type":"content_block_stop","index":0}"#)
        let end = event(#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":-12}}"#) + event(#"{"type":"message_stop"}"#)
        let empty = event(#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#)
        for (stream, input) in [(start + tool + stop + end, #"{"pre":1}"#), (start + empty + json(0) + stop + end, #"{"post":2}"#)] {
            let (events, _) = try ProviderFixtures.decode([Array(stream.utf8)], with: provider)
            let arguments = events.compactMap { if case .toolCall(let call) = $0 { call.arguments } else { nil } }.joined()
            #expect(arguments == input && events.contains(.finish(.toolCalls)), "\(events)")
            // -12 output tokens is no count: no usage measured as 0 (the gateway estimates it).
            #expect(!events.contains { if case .usage = $0 { true } else { false } }, "\(events)")
        }
        // A thinking block's signature after another block's text is refused (#3: it was a
        // block of its own, detached from its thinking); a thinking block never stopped, then
        // text, is not.
        let thinking = event(#"{"type":"content_block_start","index":2,"content_block":{"type":"thinking","thinking":""}}"#)
            + event(#"{"type":"content_block_delta","index":2,"delta":{"type":"thinking_delta","thinking":"R1"}}"#)
        let signature = event(#"{"type":"content_block_delta","index":2,"delta":{"type":"signature_delta","signature":"s"}}"#)
        let more = event(#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":" more"}}"#)
        let finish = event(#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}"#) + event(#"{"type":"message_stop"}"#)
        #expect(throws: StreamDecodingError.self) { _ = try ProviderFixtures.decode([Array((start + text + thinking + more + signature + finish).utf8)], with: provider) }
        let unstopped = try ProviderFixtures.decode([Array((start + thinking + signature + text + finish).utf8)], with: provider).0
        #expect(unstopped.contains(.reasoningSignature("s")) && unstopped.contains(.text("Hi")), "\(unstopped)")
        // Nor thinking without an index, or for a block that is not the open thinking block
        // (stopped, never started) (review 99 #3).
        let unindexed = event(#"{"type":"content_block_start","content_block":{"type":"thinking","thinking":"R"}}"#)
        let stopped = event(#"{"type":"content_block_stop","index":2}"#)
        let ghost = event(#"{"type":"content_block_delta","index":7,"delta":{"type":"thinking_delta","thinking":"ghost"}}"#)
        for stream in [start + unindexed + finish, start + thinking + stopped + signature + finish, start + ghost + finish] {
            #expect(throws: StreamDecodingError.self, "\(stream)") { _ = try ProviderFixtures.decode([Array(stream.utf8)], with: provider) }
        }
        // A prompt count that is no count makes no measured usage, however well the answer is
        // counted: the gateway estimates the call (review 99 #2: a measured prompt of 0).
        for input in ["-10", "null", #""10""#] {
            let counted = event(#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":\#(input),"output_tokens":1}}}"#)
            let events = try ProviderFixtures.decode([Array((counted + text + finish).utf8)], with: provider).0
            #expect(!events.contains { if case .usage = $0 { true } else { false } }, "\(input): \(events)")
            let whole = try provider.decodeResponse(Array(#"{"type":"message","content":[{"type":"text","text":"x"}],"stop_reason":"end_turn","usage":{"input_tokens":\#(input),"output_tokens":3}}"#.utf8), redactor: .none)
            #expect(!whole.contains { if case .usage = $0 { true } else { false } }, "\(input): \(whole)")
        }
        // `message_start`'s output count is a placeholder: the prompt's count it gives for an
        // estimate carries no answer (review 100 #2: 5000 was taken as the answer's size).
        var decoder = provider.streamDecoder(maxEventBytes: 1 << 20, redactor: .none)
        let placeholder = event(#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":10,"output_tokens":5000}}}"#)
        _ = try Array((placeholder + text).utf8).withUnsafeBytes { try decoder.decode($0) { _ in } }
        #expect(decoder.promptUsage == Usage(promptTokens: 10, completionTokens: 0, totalTokens: 10), "\(String(describing: decoder.promptUsage))")
        // The sequence that matched reaches a Messages client only as a stop sequence could be:
        // short, printable (review 100 #3).
        for (sequence, kept) in [("\n\nHuman:", true), ("END", true), ("\u{202E}x", false), ("\u{1B}[2J", false), ("a\u{2028}b", false), (String(repeating: "Z", count: 100_000), false)] {
            let body = try JSONSerialization.data(withJSONObject: ["type": "message", "content": [] as [Any], "stop_reason": "stop_sequence", "stop_sequence": sequence])
            #expect(try provider.decodeResponse(Array(body), redactor: .none).first == .stopDetail(reason: "stop_sequence", sequence: kept ? sequence : nil))
        }
        // `tool_use` with no call made is `stop` (#7).
        let (said, _) = try ProviderFixtures.decode([Array((start + text + end).utf8)], with: provider)
        #expect(said.contains(.finish(.stop)), "\(said)")
        // A streamed input that starts as anything but an object is refused, as a whole answer's
        // is (review 119 #2: `[1,2]` completed a Responses call); leading spaces are fine.
        let streamed = { (json: String) in event(#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\#(json)"}}"#) }
        for bad in ["[1,2]", #"  \"x\""#, "5"] {
            #expect(throws: StreamDecodingError.self, "\(bad)") { _ = try ProviderFixtures.decode([Array((start + empty + streamed(bad) + stop + end).utf8)], with: provider) }
        }
        let spaced = try ProviderFixtures.decode([Array((start + empty + streamed(" ") + streamed(#" {\"a\":1}"#) + stop + end).utf8)], with: provider).0
        #expect(spaced.compactMap { if case .toolCall(let call) = $0 { call.arguments } else { nil } }.joined() == #"  {"a":1}"#, "\(spaced)")
        // A block or delta whose type is no identifier is not passed on, streamed or whole (review
        // 119 #1: `""` and `123` reached a streamed Messages client, which would send them back).
        let odd = event(#"{"type":"content_block_start","index":3,"content_block":{"type":"","x":1}}"#)
            + event(#"{"type":"content_block_start","index":4,"content_block":{"type":123}}"#)
            + event(#"{"type":"content_block_start","index":5,"content_block":{"type":"mcp_tool_use","id":"m"}}"#)
            + event(#"{"type":"content_block_delta","index":5,"delta":{"type":"Weird Delta","v":1}}"#)
            + event(#"{"type":"content_block_delta","index":5,"delta":{"type":"mcp_delta","v":2}}"#)
        let passed = try ProviderFixtures.decode([Array((start + odd + text + finish).utf8)], with: provider).0.compactMap { event -> JSONValue? in
            switch event {
            case .providerBlock(.start(let block)): block
            case .providerBlock(.delta(let delta)): delta
            default: nil
            }
        }
        #expect(passed.map { $0["type"]?.stringValue } == ["mcp_tool_use", "mcp_delta"], "\(passed)")
        let whole = try provider.decodeResponse(Array(#"{"type":"message","content":[{"type":""},{"type":123},{"type":"mcp_tool_use","id":"m"}],"stop_reason":"end_turn"}"#.utf8), redactor: .none)
        #expect(whole.filter { if case .providerBlock(.start) = $0 { true } else { false } }.count == 1, "\(whole)")
    }

    /// `"stop_reason": null` is still an end: stop (tool_calls after a tool call), streamed and whole.
    @Test func aNullStopReasonIsStillAFinish() throws {
        let stream = Array("""
            event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}\n\n\
            event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n\
            event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n\
            event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":2}}\n\n\
            event: message_stop\ndata: {"type":"message_stop"}\n\n
            """.utf8)
        var decoder = provider.streamDecoder(maxEventBytes: 1 << 20, redactor: .none)
        var events: [ModelEvent] = []
        _ = try stream.withUnsafeBytes { try decoder.decode($0) { events.append($0) } }
        #expect(events.filter { if case .finish = $0 { true } else { false } } == [.finish(.stop)], "\(events)")
        #expect(try provider.decodeResponse(Array(#"{"type":"message","content":[{"type":"text","text":"x"}],"stop_reason":null}"#.utf8),
                                            redactor: .none).last == .finish(.stop))
        #expect(try provider.decodeResponse(Array(#"{"type":"message","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]}"#.utf8),
                                            redactor: .none).last == .finish(.toolCalls))
    }

    @Test func stopReasonsMapToOpenAIsFinishReasons() throws {
        let events = { (reason: String) throws -> [ModelEvent] in
            try self.provider.decodeResponse(Array(#"{"type":"message","content":[],"stop_reason":"\#(reason)"}"#.utf8), redactor: .none)
        }
        for (reason, finish) in [("end_turn", FinishReason.stop), ("stop_sequence", .stop), ("pause_turn", .stop), ("max_tokens", .length),
                                 ("model_context_window_exceeded", .length), ("tool_use", .stop), ("refusal", .contentFilter),
                                 ("something_new", .stop)] {
            // What the finish loses comes first, for Anthropic clients; the four it keeps do not.
            let kept = ["end_turn", "max_tokens", "tool_use", "refusal"].contains(reason)
            let detail: [ModelEvent] = kept ? [] : [.stopDetail(reason: reason, sequence: nil)]
            #expect((try? events(reason)) == detail + [.finish(finish)], "\(reason)")
        }
        // `tool_use` names calls: with none made it is `stop` on every surface (review 98 #7).
        #expect(try provider.decodeResponse(Array(#"{"type":"message","content":[{"type":"tool_use","id":"t","name":"f","input":{}}],"stop_reason":"tool_use"}"#.utf8),
                                            redactor: .none).last == .finish(.toolCalls))
        // The sequence that matched; an upstream's odd reason is not echoed.
        #expect(try provider.decodeResponse(Array(#"{"type":"message","content":[],"stop_reason":"stop_sequence","stop_sequence":"END"}"#.utf8),
                                            redactor: .none) == [.stopDetail(reason: "stop_sequence", sequence: "END"), .finish(.stop)])
        for odd in ["<script>", "Pause Turn", String(repeating: "a", count: 65), ""] {
            #expect((try? events(odd))?.count == 1, "\(odd)")
        }
    }
}

@Suite struct AnthropicErrorTests {
    let provider = AnthropicProvider()

    func error(_ status: Int, _ body: String, headers: [(String, String)] = [], secrets: [String] = []) -> APIError {
        provider.error(status: status, body: Array(body.utf8), headers: headers, provider: "anthropic", redactor: Redactor(secrets: secrets))
    }

    @Test func overloadedIsAServiceUnavailableTheClientMayRetry() {
        let mapped = error(529, #"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#,
                           headers: [("retry-after", "2"), ("request-id", "req_1")])
        #expect(mapped.status == 503 && mapped.code == "overloaded" && mapped.type == "upstream_error")
        #expect(mapped.message == "Provider 'anthropic' is overloaded (HTTP 529): Overloaded")
        #expect(mapped.headers.map(\.0) == ["Retry-After"])
        #expect(RetryPolicy().decide(status: 529, connectFailed: false, headers: [], attempt: 1, hasNextModel: false, jitter: 0)
                    != .fail, "the gateway retries the upstream's 529 itself")
    }

    @Test func rateLimitsKeepRetryAfterAndCredentialsBecomeBadGateway() {
        let limited = error(429, #"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#,
                            headers: [("retry-after", "7")])
        #expect(limited.status == 429 && limited.code == "rate_limited" && limited.headers.map(\.1) == ["7"])
        let denied = error(401, #"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key sk-ant-999999"}}"#,
                           secrets: ["sk-ant-999999"])
        #expect(denied.status == 502 && denied.code == "upstream_auth_failed")
        #expect(!denied.message.contains("sk-ant-999999") && denied.message.contains("[redacted]"))
    }

    @Test func clientErrorsKeepTheirStatusTypeAndTrimmedMessage() {
        let rejected = error(400, #"{"type":"error","error":{"type":"invalid_request_error","message":"messages.0: line one\nline two"}}"#)
        #expect(rejected.status == 400 && rejected.type == "invalid_request_error" && rejected.code == "upstream_rejected")
        #expect(rejected.message == "Provider 'anthropic' rejected the request (HTTP 400): messages.0: line one line two")
        let cloudflare = error(413, String(repeating: "<html>too large</html>\n", count: 100))
        #expect(cloudflare.status == 413 && cloudflare.message.count < 400 && !cloudflare.message.contains("\n"))
        let server = error(500, #"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#)
        #expect(server.status == 502 && server.type == "upstream_error")
        // Raw bytes for a body: no control character reaches the message (review 98 #8).
        let binary = error(500, String(decoding: (0...255).map { UInt8($0) }, as: UTF8.self))
        #expect(!binary.message.unicodeScalars.contains { $0.properties.generalCategory == .control }, "\(binary.message)")
        // Nor one that reorders or hides text (review 99 #4).
        let bidi = error(500, #"{"type":"error","error":{"type":"api_error","message":"bad \u202Eevil\u200B \u2066x\u2069"}}"#)
        #expect(!bidi.message.unicodeScalars.contains { $0.properties.generalCategory == .format } && bidi.message.hasSuffix("bad  evil   x"), "\(bidi.message)")
    }

    @Test func streamErrorTypesHaveTheirStatuses() throws {
        for (type, status, code) in [("overloaded_error", 503, "overloaded"), ("rate_limit_error", 429, "rate_limited"),
                                     ("api_error", 502, "upstream_error"), ("authentication_error", 502, "upstream_auth_failed"),
                                     ("invalid_request_error", 400, "upstream_rejected"), ("timeout_error", 504, "upstream_error"),
                                     ("request_too_large", 413, "upstream_rejected"), ("brand_new_error", 502, "upstream_error")] {
            let bytes = Array("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"\(type)\",\"message\":\"m\"}}\n\n".utf8)
            let (events, end) = try ProviderFixtures.decode([bytes], with: provider)
            guard case .error(let error)? = events.first else { Issue.record("\(type): \(events)"); continue }
            #expect(error.status == status && error.code == code && end == .complete, "\(type)")
        }
    }
}
