import Foundation
import Fusion
import GatewayCore
import PropertyBased
import Providers
import Surfaces
import Testing

@Suite struct MessagesRequestTests {
    func parse(_ text: String) throws(APIError) -> MessagesRequest { try MessagesRequest(body: Array(text.utf8)) }

    /// Structured output asked the Anthropic way reaches a model behind another API as its own
    /// (review 48 surfaces #6: dropped, free text came back); an Anthropic upstream gets
    /// `output_config` as sent. Other formats are refused by the surface.
    @Test func structuredOutputReachesEveryAPI() throws {
        let schema = #"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#
        let request = try parse(#"{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"Where?"}],"output_config":{"format":{"type":"json_schema","schema":\#(schema)}}}"#)
        let neutral = request.modelRequest()
        let openAI = try JSONValue.parse(OpenAIRequestEncoder.body(neutral))
        #expect(openAI["response_format"]?["type"] == .string("json_schema"))
        #expect(openAI["response_format"]?["json_schema"]?["schema"] == (try JSONValue.parse(Array(schema.utf8))))
        #expect(openAI["response_format"]?["json_schema"]?["strict"] == .bool(false), "not closed: strict mode would refuse it")
        try GeminiProvider().validate(neutral)
        try AnthropicProvider().validate(neutral)
        let sent = try JSONValue.parse(AnthropicProvider().httpRequest(
            for: neutral, endpoint: ProviderEndpoint(name: "a", baseURL: "https://api.anthropic.com/v1"), extraHeaders: []).body)
        #expect(sent["output_config"]?["format"]?["type"] == .string("json_schema") && sent["response_format"] == nil)
        for bad in [#"{"type":"xml"}"#, #"{"type":"json_schema"}"#] {
            #expect(throws: APIError.self, "\(bad)") {
                try parse(#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"q"}],"output_config":{"format":\#(bad)}}"#)
            }
        }
    }

    /// A Messages client's schema goes to an OpenAI-format model strict only when strict mode
    /// takes it (review 77A #2: always strict, so a schema with an optional property, which
    /// Anthropic takes, was OpenAI's 400).
    @Test(arguments: [
        (#"{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false}"#, true),
        (#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"required":["a"],"additionalProperties":false}"#, false),
        (#"{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}"#, false),
        (#"{"type":"object","properties":{"a":{"type":"array","items":{"type":"object","properties":{"x":{"type":"string"}},"required":[]}}},"required":["a"],"additionalProperties":false}"#, false),
        (##"{"type":"object","properties":{"a":{"$ref":"#/$defs/p"}},"required":["a"],"additionalProperties":false,"$defs":{"p":{"type":"object","properties":{"x":{"type":"string"}},"required":["x"],"additionalProperties":false}}}"##, true),
        (#"{"type":"object","properties":{"a":{"anyOf":[{"type":"string"},{"type":"object"}]}},"required":["a"],"additionalProperties":false}"#, false),
        (#"{"type":"object","properties":{"a":{"anyOf":[{"type":"string"},{"type":"null"}]}},"required":["a"],"additionalProperties":false}"#, true),
        // What strict mode refuses besides (review 78 #6): a root that is no object, a refused
        // keyword, nesting past 10 levels, more than 1,000 enum values.
        (#"{"type":"array","items":{"type":"object","properties":{},"additionalProperties":false}}"#, false),
        (#"{"type":"object","properties":{"a":{"type":"string","not":{"enum":["x"]}}},"required":["a"],"additionalProperties":false}"#, false),
        (#"{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false,"if":{"required":["a"]},"then":{}}"#, false),
        (StrictSchemaCases.nested(11), false),
        (StrictSchemaCases.nested(5), true),
        (#"{"type":"object","properties":{"a":{"type":"string","enum":[\#((0..<1_001).map { "\"v\($0)\"" }.joined(separator: ","))]}},"required":["a"],"additionalProperties":false}"#, false),
        // Its character limits (review 79 #7): 300 enum values of 60 characters; names past 120,000.
        (#"{"type":"object","properties":{"a":{"type":"string","enum":[\#((0..<300).map { "\"\(String(repeating: "e", count: 56))\($0 + 1000)\"" }.joined(separator: ","))]}},"required":["a"],"additionalProperties":false}"#, false),
        (StrictSchemaCases.wide(2_100, nameLength: 65), false),
        (StrictSchemaCases.wide(100, nameLength: 65), true),
    ])
    func aSchemaIsStrictOnlyWhenStrictModeTakesIt(schema: String, strict: Bool) throws {
        let request = try parse(#"{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"q"}],"output_config":{"format":{"type":"json_schema","schema":\#(schema)}}}"#)
        let openAI = try JSONValue.parse(OpenAIRequestEncoder.body(request.modelRequest()))
        #expect(openAI["response_format"]?["json_schema"]?["strict"] == .bool(strict))
    }

    /// A failed tool call's result (`is_error`) stays failed for Gemini (its `error` key) and for
    /// Anthropic when the history is written anew (review 77A #6: Gemini read it as a success).
    @Test func aFailedToolResultStaysFailed() throws {
        let request = try parse(#"""
            {"model":"m","max_tokens":50,"tools":[{"name":"t","input_schema":{"type":"object"}}],"messages":[
             {"role":"user","content":"q"},
             {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"t","input":{}}]},
             {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"{\"temp\":5}","is_error":true},{"type":"text","text":"go on"}]}]}
            """#)
        let neutral = request.modelRequest()
        #expect(neutral.messages.filter(\.isError).count == 1)
        let gemini = try JSONValue.parse(GeminiProvider().httpRequest(for: neutral, endpoint: ProviderEndpoint(name: "g", baseURL: "https://x.example/v1beta"),
                                                                      extraHeaders: []).body)
        let parts = gemini["contents"]?.arrayValue?.flatMap { $0["parts"]?.arrayValue ?? [] } ?? []
        #expect(parts.compactMap { $0["functionResponse"]?["response"] } == [.object(["error": .object(["temp": .int(5)])])], "\(gemini)")
        var fromChat = neutral
        fromChat.extraFieldsFormat = .openAIChat  // written anew, as for another API's client
        let anthropic = try JSONValue.parse(AnthropicProvider().httpRequest(for: fromChat, endpoint: ProviderEndpoint(name: "a", baseURL: "https://x.example/v1"),
                                                                           extraHeaders: []).body)
        let blocks = anthropic["messages"]?.arrayValue?.flatMap { $0["content"]?.arrayValue ?? [] } ?? []
        #expect(blocks.first { $0["type"] == .string("tool_result") }?["is_error"] == .bool(true), "\(anthropic)")
    }

    /// What the anthropic SDKs send (1.x: x-api-key and sampling fields; 2.x: neither), all at once.
    static let sdkBody = #"""
        {"model":"claude-sonnet-4-5","max_tokens":4096,"stream":true,
         "system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],
         "messages":[
          {"role":"user","content":[{"type":"text","text":"What is this?"},
            {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
            {"type":"image","source":{"type":"url","url":"https://x.example/a.png"}},
            {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="},"title":"a.pdf"},
            {"type":"document","source":{"type":"text","media_type":"text/plain","data":"plain notes"}}]},
          {"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"sig"},{"type":"text","text":"Let me look."},
            {"type":"tool_use","id":"toolu_1","name":"look","input":{"what":"a"}},{"type":"tool_use","id":"toolu_2","name":"weather","input":{}}]},
          {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"a cat"},
            {"type":"tool_result","tool_use_id":"toolu_2","content":[{"type":"text","text":"sunny"}],"is_error":false},
            {"type":"text","text":"Thanks."}]},
          {"role":"assistant","content":"Anything else?"},
          {"role":"user","content":"No."}],
         "tools":[{"name":"look","description":"Look","input_schema":{"type":"object"}},
                  {"type":"custom","name":"weather","input_schema":{"type":"object","properties":{}}},
                  {"type":"web_search_20250305","name":"web_search","max_uses":1}],
         "tool_choice":{"type":"auto","disable_parallel_tool_use":true},
         "thinking":{"type":"enabled","budget_tokens":2048},
         "temperature":1,"top_p":0.9,"top_k":5,"stop_sequences":["END"],"metadata":{"user_id":"u-1"},"service_tier":"auto"}
        """#

    @Test func theSDKsRequestsConvertToTheNeutralRequest() throws {
        let request = try parse(Self.sdkBody)
        #expect(request.model == "claude-sonnet-4-5" && request.stream)
        let neutral = request.modelRequest()
        #expect(neutral.messages.map(\.role) == [.system, .user, .assistant, .tool, .tool, .user, .assistant, .user])
        #expect(neutral.messages[0].content == [.text("Be brief."), .cacheBreakpoint(.object(["type": .string("ephemeral")]))],
                "its cache breakpoint too, for an Anthropic upstream")
        #expect(neutral.messages[1].content == [
            .text("What is this?"), .image(url: "data:image/png;base64,iVBORw0KGgo=", detail: nil), .image(url: "https://x.example/a.png", detail: nil),
            .other(.object(["type": .string("file"), "file": .object(["filename": .string("a.pdf"), "file_data": .string("data:application/pdf;base64,JVBERi0=")])])),
            .text("plain notes"),
        ])
        #expect(neutral.messages[2].content == [.text("Let me look.")], "thinking is a reasoning block, not text")
        #expect(neutral.messages[2].toolCalls == [ToolCall(index: 0, id: "toolu_1", name: "look", arguments: #"{"what":"a"}"#),
                                                  ToolCall(index: 1, id: "toolu_2", name: "weather", arguments: "{}")])
        #expect(neutral.messages[3] == ModelMessage(role: .tool, content: [.text("a cat")], toolCallID: "toolu_1", name: "look"))
        #expect(neutral.messages[4].name == "weather" && neutral.messages[4].text == "sunny")
        #expect(neutral.messages[5].content == [.text("Thanks.")])
        #expect(neutral.maxOutputTokens == 4096 && neutral.temperature == 1 && neutral.topP == 0.9 && neutral.stop == ["END"])
        #expect(neutral.toolChoice == .auto && neutral.parallelToolCalls == false)
        #expect(neutral.reasoning == ModelRequest.Reasoning(maxTokens: 2048))
        #expect(neutral.tools.map(\.functionName) == ["look", "weather", nil])
        #expect(neutral.topK == 5 && neutral.user == "u-1")
        #expect(neutral.extraFields.keys.sorted() == ["metadata", "service_tier"] && neutral.extraFieldsFormat == .anthropicMessages)
        #expect(neutral.includeUsage)
    }

    /// Through the gateway's Anthropic provider, what the client said arrives as it said it.
    @Test func anAnthropicClientsRequestSurvivesTheRoundTripToAnthropic() throws {
        let request = try parse(Self.sdkBody)
        var neutral = request.modelRequest()
        neutral.model = "claude-sonnet-4-5"
        #expect(neutral.messages[2].reasoning == [.thinking(text: "hm", signature: "sig")])
        // Thinking with a forced tool call is refused by the API: asked so (a chat or Responses
        // client's request; a Messages client's is a 400), it is left off.
        neutral.toolChoice = .required
        #expect(try JSONValue.parse(AnthropicProvider().httpRequest(
            for: neutral, endpoint: ProviderEndpoint(name: "a", baseURL: "https://api.anthropic.com/v1"), extraHeaders: []).body)["thinking"] == nil)
        neutral.toolChoice = .auto
        try AnthropicProvider().validate(neutral)
        let sent = try JSONValue.parse(AnthropicProvider().httpRequest(
            for: neutral, endpoint: ProviderEndpoint(name: "a", baseURL: "https://api.anthropic.com/v1"), extraHeaders: []).body)
        let turns = try #require(sent["messages"]?.arrayValue)
        #expect(turns.count == 5)
        #expect(turns[1]["content"]?.arrayValue?.map { $0["type"]?.stringValue ?? "" } == ["thinking", "text", "tool_use", "tool_use"])
        #expect(turns[1]["content"]?.arrayValue?.first == .object(["type": .string("thinking"), "thinking": .string("hm"), "signature": .string("sig")]))
        #expect(turns[2]["content"]?.arrayValue?.map { $0["type"]?.stringValue ?? "" } == ["tool_result", "tool_result", "text"])
        #expect(sent["top_k"] == nil && sent["temperature"] == nil, "thinking is on: the API refuses sampling fields")
        #expect(sent["metadata"]?["user_id"] == .string("u-1") && sent["service_tier"] == .string("auto"))
        #expect(sent["thinking"]?["budget_tokens"] == .int(2048) && sent["max_tokens"] == .int(4096))
        #expect(sent["tool_choice"] == .object(["type": .string("auto"), "disable_parallel_tool_use": .bool(true)]))
        #expect(sent["tools"]?.arrayValue?[2] == .object(["type": .string("web_search_20250305"), "name": .string("web_search"), "max_uses": .int(1)]))
        let original = try JSONValue.parse(Array(Self.sdkBody.utf8))
        #expect(sent["messages"]?.arrayValue?[1]["content"]?.arrayValue?[3] == original["messages"]?.arrayValue?[1]["content"]?.arrayValue?[3])
    }

    /// A conversation that used Anthropic's server tools carries their blocks in its assistant
    /// turn (review 16 #6): an Anthropic upstream gets them back as they came, in their order (its
    /// server tools need them); other upstreams get a cited text block's text and nothing else.
    @Test func serverToolBlocksGoBackToAnthropicAsTheyCame() throws {
        let assistant = #"""
            [{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"tides"}},
             {"type":"web_search_tool_result","tool_use_id":"srvtoolu_1","content":[{"type":"web_search_result","url":"https://t.example","title":"T","encrypted_content":"Zm9v"}]},
             {"type":"text","text":"High tide is at noon.","citations":[{"type":"web_search_result_location","url":"https://t.example","title":"T","encrypted_index":"aWR4","cited_text":"noon"}]},
             {"type":"text","text":" Anything else?"}]
            """#
        let request = try parse(#"{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[{"role":"user","content":"Tides?"},{"role":"assistant","content":\#(assistant)},{"role":"user","content":"No."}]}"#)
        let neutral = request.modelRequest()
        let blocks = try #require(try JSONValue.parse(Array(assistant.utf8)).arrayValue)
        #expect(neutral.messages[1].content == [.providerBlock(blocks[0]), .providerBlock(blocks[1]), .providerBlock(blocks[2]), .text(" Anything else?")])
        try AnthropicProvider().validate(neutral)
        let sent = try JSONValue.parse(AnthropicProvider().httpRequest(
            for: neutral, endpoint: ProviderEndpoint(name: "a", baseURL: "https://api.anthropic.com/v1"), extraHeaders: []).body)
        #expect(sent["messages"]?.arrayValue?[1]["content"] == .array(blocks))
        let openAI = try JSONValue.parse(OpenAIRequestEncoder.body(neutral))
        #expect(openAI["messages"]?.arrayValue?[1] == .object(["role": .string("assistant"), "content": .string("High tide is at noon.\n Anything else?")]))
        try GeminiProvider().validate(neutral)
        let gemini = try JSONValue.parse(GeminiProvider().httpRequest(
            for: neutral, endpoint: ProviderEndpoint(name: "g", baseURL: "https://g.example/v1beta"), extraHeaders: []).body)
        #expect(gemini["contents"]?.arrayValue?[1]["parts"] == .array([.object(["text": .string("High tide is at noon.")]), .object(["text": .string(" Anything else?")])]))
        // Declaring one of Anthropic's server tools for a model elsewhere is a 400 naming it (review 20 B8).
        let declared = try parse(Self.sdkBody).modelRequest()
        do {
            try OpenAICompatibleProvider().validate(declared)
            Issue.record("an OpenAI-compatible upstream was sent web_search_20250305")
        } catch {
            #expect(error.status == 400 && error.param == "tools.2" && error.message.contains("web_search_20250305"), "\(error)")
        }
        // Only in an assistant turn; a user's is refused as before.
        #expect(throws: APIError.self) { try parse(#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"web_search_tool_result","tool_use_id":"x","content":[]}]}]}"#) }
    }

    /// Blocks of a question the SDKs send and the neutral types do not model (a PDF by URL, a
    /// document of `content`, a file by id, `search_result`, `container_upload`, documents and
    /// search results inside a tool result) reach Anthropic as they came; another API refuses
    /// the request naming the block rather than lose part of the question (review 45 Anthropic
    /// #4: each was a 400 before routing).
    @Test func questionBlocksOnlyAnthropicReadsReachItAndAreRefusedElsewhere() throws {
        let user = #"""
            [{"type":"document","source":{"type":"url","url":"https://x.example/report.pdf"}},
             {"type":"document","source":{"type":"content","content":[{"type":"text","text":"A fact."}]},"citations":{"enabled":true}},
             {"type":"image","source":{"type":"file","file_id":"file_01"}},
             {"type":"search_result","source":"https://s.example","title":"S","content":[{"type":"text","text":"found"}]},
             {"type":"container_upload","file_id":"file_02"},
             {"type":"text","text":"Summarise."}]
            """#
        let request = try parse(#"{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[{"role":"user","content":\#(user)}]}"#)
        let neutral = request.modelRequest()
        let blocks = try #require(try JSONValue.parse(Array(user.utf8)).arrayValue)
        #expect(neutral.messages.last?.content == blocks.prefix(5).map(ContentPart.providerBlock) + [.text("Summarise.")])
        try AnthropicProvider().validate(neutral)
        let sent = try JSONValue.parse(AnthropicProvider().httpRequest(
            for: neutral, endpoint: ProviderEndpoint(name: "a", baseURL: "https://api.anthropic.com/v1"), extraHeaders: []).body)
        #expect(sent["messages"]?.arrayValue?.last?["content"] == .array(blocks))
        for provider in [OpenAICompatibleProvider() as any Provider, GeminiProvider()] {
            do {
                try provider.validate(neutral)
                Issue.record("\(provider) took a question it would have sent in part")
            } catch {
                #expect(error.status == 400 && error.message.contains("'document'"), "\(error.message)")
            }
        }
        // Inside a tool result too.
        let result = try parse(#"""
            {"model":"m","max_tokens":5,"messages":[{"role":"user","content":"q"},
             {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"find","input":{}}]},
             {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[
               {"type":"search_result","source":"https://s.example","title":"S","content":[{"type":"text","text":"found"}]},
               {"type":"document","source":{"type":"text","media_type":"text/plain","data":"notes"}}]}]}]}
            """#).modelRequest()
        #expect(result.messages.last?.anthropicOnlyInputBlock?.type == "search_result")
        // Blocks only a model writes stay refused in a user turn; a source must still be one.
        #expect(throws: APIError.self) { try parse(#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"thinking","thinking":"x","signature":"s"}]}]}"#) }
        #expect(throws: APIError.self) { try parse(#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"url"}}]}]}"#) }
        #expect(throws: APIError.self) { try parse(#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":""}]}]}"#) }
    }

    /// `top_k` and `metadata.user_id` reach other vendors under their names there (and nothing
    /// else of the Anthropic client's own fields does).
    @Test func topKAndTheUserIDReachOtherUpstreamsInTheirForm() throws {
        let request = try parse(#"""
            {"model":"m","max_tokens":100,"messages":[{"role":"user","content":"q"}],
             "temperature":0.5,"top_k":7,"metadata":{"user_id":"u-1"},"service_tier":"auto"}
            """#)
        let neutral = request.modelRequest()
        let gemini = try JSONValue.parse(GeminiProvider().httpRequest(
            for: neutral, endpoint: ProviderEndpoint(name: "g", baseURL: "https://g.example/v1beta"), extraHeaders: []).body)
        #expect(gemini["generationConfig"]?["topK"] == .int(7) && gemini["generationConfig"]?["temperature"] == .double(0.5))
        #expect(gemini["metadata"] == nil && gemini["service_tier"] == nil)
        let openAI = try JSONValue.parse(OpenAIRequestEncoder.body(neutral))
        #expect(openAI["user"] == .string("u-1"))
        #expect(openAI["top_k"] == nil && openAI["metadata"] == nil && openAI["service_tier"] == nil, "OpenAI's API refuses fields it lacks")
        let anthropic = try JSONValue.parse(AnthropicProvider().httpRequest(
            for: neutral, endpoint: ProviderEndpoint(name: "a", baseURL: "https://api.anthropic.com/v1"), extraHeaders: []).body)
        #expect(anthropic["top_k"] == .int(7) && anthropic["metadata"] == .object(["user_id": .string("u-1")]) && anthropic["user"] == nil)
    }

    /// Adaptive thinking's effort is the neutral effort: another upstream is asked to reason
    /// as hard; "disabled" asks it not to.
    @Test func adaptiveThinkingsEffortReachesOtherUpstreams() throws {
        let adaptive = try parse(#"{"model":"m","max_tokens":9000,"messages":[{"role":"user","content":"q"}],"thinking":{"type":"adaptive"},"output_config":{"effort":"low"}}"#)
        #expect(adaptive.modelRequest().reasoning == ModelRequest.Reasoning(effort: "low"))
        let gemini = try JSONValue.parse(GeminiProvider().httpRequest(
            for: adaptive.modelRequest(), endpoint: ProviderEndpoint(name: "g", baseURL: "https://g.example/v1beta"), extraHeaders: []).body)
        #expect(gemini["generationConfig"]?["thinkingConfig"]?["thinkingBudget"] == .int(2048))
        let disabled = try parse(#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"q"}],"thinking":{"type":"disabled"}}"#)
        #expect(disabled.modelRequest().reasoning == ModelRequest.Reasoning(enabled: false))
    }

    @Test func fusionIsAskedForByTheAliasOrTheTool() throws {
        let alias = try parse(#"{"model":"fusion","max_tokens":100,"messages":[{"role":"user","content":"Should cities ban cars?"}]}"#)
        guard case .fusion = try FusionPlan.make(request: alias.modelRequest(), settings: .simulated, depth: 0) else {
            Issue.record("no fusion plan for the alias")
            return
        }
        let tool = try parse(#"{"model":"sim/outer","max_tokens":100,"messages":[{"role":"user","content":"q"}],"tools":[{"type":"openrouter:fusion","parameters":{"preset":"budget"}}]}"#)
        guard case .fusion(let fusion) = try FusionPlan.make(request: tool.modelRequest(), settings: .simulated, depth: 0) else {
            Issue.record("no fusion plan")
            return
        }
        #expect(fusion.outerModel == "sim/outer" && fusion.parameters.analysisModels == ["sim/expert-1", "sim/expert-2"])
        guard case .withoutFusion(let model, _) = try FusionPlan.make(request: alias.modelRequest(), settings: .simulated, depth: 1) else {
            Issue.record("an inner call asked for fusion again")
            return
        }
        #expect(model == "sim/outer")
    }

    /// Anthropic's ceiling on a thinking budget holds whichever upstream serves the request,
    /// unless the client turned interleaved thinking on (review 64C #4).
    @Test func aThinkingBudgetMustBeBelowMaxTokensUnlessInterleaved() throws {
        /// The refusal for `max_tokens` and `budget_tokens` with `betas`, nil when accepted.
        func refusal(max: Int, budget: Int, betas: String?) throws -> APIError? {
            let request = try parse(#"{"model":"m","max_tokens":\#(max),"messages":[{"role":"user","content":"x"}],"thinking":{"type":"enabled","budget_tokens":\#(budget)}}"#)
            do {
                try request.validateThinkingBudget(betas: betas)
                return nil
            } catch {
                return error
            }
        }
        #expect(try refusal(max: 2048, budget: 2047, betas: nil) == nil)
        for (max, budget) in [(2048, 2048), (2000, 5000)] {
            let error = try refusal(max: max, budget: budget, betas: nil)
            #expect(error?.status == 400 && error?.param == "max_tokens" && error?.message.contains("thinking.budget_tokens") == true)
            #expect(try refusal(max: max, budget: budget, betas: "fine-grained-tool-streaming-2025-05-14") != nil)
            #expect(try refusal(max: max, budget: budget, betas: "x-1,interleaved-thinking-2025-05-14") == nil)
        }
        let adaptive = try parse(#"{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"x"}],"thinking":{"type":"adaptive"}}"#)
        try adaptive.validateThinkingBudget(betas: nil)
    }

    /// The gateway's own fields never reach Anthropic, which refuses fields it does not know
    /// (review 43 conformance #3); everything else is kept.
    @Test func upstreamBodyLeavesOutTheGatewaysOwnFields() throws {
        let text = #"{"model":"anth/claude-x","max_tokens":5,"stream":true,"stream_options":{"include_fusion_events":true},"#
            + #""plugins":[{"id":"fusion","enabled":false},{"id":"web"}],"messages":[{"role":"user","content":"é"}],"thinking":{"type":"enabled","budget_tokens":1024}}"#
        let body = try JSONValue.parse(try parse(text).upstreamBody(model: "claude-x"))
        #expect(body["stream_options"] == nil && body["plugins"] == .array([.object(["id": .string("web")])]))
        #expect(body["model"] == .string("claude-x") && body["stream"] == .bool(true) && body["thinking"]?["budget_tokens"] == .int(1024))
        let alone = #"{"model":"anth/claude-x","max_tokens":5,"plugins":[{"id":"fusion","enabled":false}],"messages":[{"role":"user","content":"x"}]}"#
        #expect(try JSONValue.parse(try parse(alone).upstreamBody(model: "c"))["plugins"] == nil)
    }

    /// OpenRouter's `models` are the request's fallbacks, as on chat and Responses (review 101
    /// #2: ignored, and sent to Anthropic, which refuses a field it does not know): the
    /// request's own model and repeats dropped, and the field never goes upstream, as the
    /// client's bytes or translated.
    @Test func modelsAreFallbacksAndNeverGoUpstream() throws {
        let text = #"{"model":"anth/a","max_tokens":5,"models":["anth/a","anth/b","mock/c","anth/b"],"messages":[{"role":"user","content":"x"}]}"#
        let request = try parse(text)
        #expect(request.fallbackModels == ["anth/b", "mock/c"])
        let sent = try JSONValue.parse(request.upstreamBody(model: "a"))
        #expect(sent["models"] == nil && sent["model"] == .string("a") && sent["max_tokens"] == .int(5), "\(sent)")
        #expect(request.modelRequest().extraFields["models"] == nil)
        #expect(try parse(#"{"model":"m","max_tokens":5,"models":null,"messages":[{"role":"user","content":"x"}]}"#).fallbackModels.isEmpty)
    }

    @Test func upstreamBodyReplacesOnlyTheModel() throws {
        let text = #"{"model":"anth/claude-x","max_tokens":5,"messages":[{"role":"user","content":"é"}],"x":{"model":"keep"}}"#
        #expect(String(decoding: try parse(text).upstreamBody(model: "claude-x"), as: UTF8.self)
                    == #"{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"é"}],"x":{"model":"keep"}}"#)
    }

    /// Ids Anthropic refuses are made valid in the client's own bytes: every other byte stays
    /// (key order, white space, an integer beyond 64 bits, escapes), and the result reads as
    /// the tree rewrite does, escaped keys included (review 58 #3: the body was written anew).
    @Test func toolIDsAreRewrittenInTheClientsBytes() throws {
        let history = #"[{"role":"user","content":"Weather?"}, {"content":[{"type":"text","text":"Let me look.\u00e9"},"#
            + #"{"input":{"n":123456789012345678901234567890,"x":1.10},"name":"get_weather","id":"functions.get_weather:0","type":"tool_use"},"#
            + #"{"type":"tool_use","\u0069d":"call 2","name":"g","input":{}}],"role":"assistant"},"#
            + #"{"role":"user","content":[{"tool_use_id":"functions.get_weather:0","type":"tool_result","content":"No such city","is_error":true},"#
            + #"{"type":"tool_result","tool_use_id":"call 2","content":[{"type":"text","text":"ok"}]}]}]"#
        let text = #"{"max_tokens":50, "model":"anth/claude-x","messages":\#(history)}"#
        let request = try parse(text)
        let sent = String(decoding: request.upstreamBody(model: "claude-x"), as: UTF8.self)
        let first = AnthropicProvider.toolID("functions.get_weather:0"), second = AnthropicProvider.toolID("call 2")
        #expect(first != "functions.get_weather:0" && second != "call 2")
        let expected = text.replacingOccurrences(of: "anth/claude-x", with: "claude-x")
            .replacingOccurrences(of: "functions.get_weather:0", with: first).replacingOccurrences(of: "call 2", with: second)
        #expect(sent == expected)
        // A body written anew (its `stream_options` left out) rewrites through the tree: the same.
        let rebuilt = try parse(text.replacingOccurrences(of: #"{"max_tokens":50,"#, with: #"{"stream_options":{},"max_tokens":50,"#))
        let rebuiltBody = rebuilt.upstreamBody(model: "claude-x")
        #expect(try JSONValue.parse(Array(sent.utf8)) == JSONValue.parse(rebuiltBody))
        // …its messages the client's bytes with the ids spliced (review 75A #4: re-encoded, the big number rounded).
        let splicedHistory = history.replacingOccurrences(of: "functions.get_weather:0", with: first).replacingOccurrences(of: "call 2", with: second)
        #expect(String(decoding: rebuiltBody, as: UTF8.self).contains(#""messages":\#(splicedHistory)"#), "\(String(decoding: rebuiltBody, as: UTF8.self))")
        // Valid ids: the client's bytes, only the model replaced.
        let valid = text.replacingOccurrences(of: "functions.get_weather:0", with: "toolu_01").replacingOccurrences(of: "call 2", with: "toolu_02")
        #expect(String(decoding: try parse(valid).upstreamBody(model: "claude-x"), as: UTF8.self) == valid.replacingOccurrences(of: "anth/claude-x", with: "claude-x"))
    }

    @Test(arguments: [
        ("[1]", nil as String?),
        (#"{"max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#, "model"),
        (#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#, "max_tokens"),
        (#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#, "max_tokens"),
        (#"{"model":"m","max_tokens":1e300,"messages":[{"role":"user","content":"x"}]}"#, "max_tokens"),
        (#"{"model":"m","max_tokens":5,"messages":[]}"#, "messages"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"wizard","content":"x"}]}"#, "messages.0.role"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":5}]}"#, "messages.0.content"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"},{"role":"user","content":[]}]}"#, "messages.2.content"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":""}]}"#, "messages.0.content"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"},{"role":"user"}]}"#, "messages.2.content"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"nobody","content":"42"}]}]}"#, "messages.0.content.0.tool_use_id"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[]},{"role":"user","content":"r"}]}"#, "messages.1.content"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"server_tool_use"}]}]}"#, "messages.0.content.0.type"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]}]}"#, "messages.0.content.0.type"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"ftp","file_id":"f"}}]}]}"#, "messages.0.content.0.source.type"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png;x,y","data":""}}]}]}"#, "messages.0.content.0.source.media_type"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"image/png","data":""}}]}]}"#, "messages.0.content.0.source.media_type"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":"{}"}]}]}"#, "messages.0.content.0.input"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]}"#, "messages.0.content.0.tool_use_id"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"tool_use"}]}]}]}"#, "messages.0.content.0.content.0.type"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"system":[{"type":"image"}]}"#, "system.0.type"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f"}]}"#, "tools.0.input_schema"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":{"type":"object"}},{"name":"f","input_schema":{"type":"object"}}]}"#, "tools.1.name"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"tool"}}"#, "tool_choice.name"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tool_choice":"auto"}"#, "tool_choice.type"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"tool","name":"nosuch"}}"#, "tool_choice.name"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":{}}],"tool_choice":{"type":"tool","name":"g"}}"#, "tool_choice.name"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"any"}}"#, "tool_choice"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"thinking":{"type":"enabled"}}"#, "thinking.budget_tokens"),
        (#"{"model":"m","max_tokens":5000,"messages":[{"role":"user","content":"x"}],"thinking":{"type":"enabled","budget_tokens":1023}}"#, "thinking.budget_tokens"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"output_config":{"effort":"extreme"}}"#, "output_config.effort"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"output_config":"high"}"#, "output_config"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"stream_options":1}"#, "stream_options"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"stream_options":{"include_fusion_events":1}}"#, "stream_options.include_fusion_events"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"temperature":1.5}"#, "temperature"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"top_k":-1}"#, "top_k"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"top_k":2147483648}"#, "top_k"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"stream":"yes"}"#, "stream"),
        (#"{"model":"m","model":"n","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#, "model"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"models":"n"}"#, "models"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"models":["a","b","c","d","e","f","g","h","i"]}"#, "models"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"models":["n",""]}"#, "models.1"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"models":[3]}"#, "models.0"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"metadata":{"user_id":5}}"#, "metadata.user_id"),
        // Calls and results pair as Anthropic's API requires (review 109 #1, #2).
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},{"role":"user","content":"b"}]}"#, "messages.1.content.0"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"text","text":"x"},{"type":"tool_use","id":"t1","name":"f","input":{}}]},{"role":"user","content":"b"},{"role":"assistant","content":"a"}]}"#, "messages.1.content.1"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"r"},{"type":"tool_result","tool_use_id":"t1","content":"r2"}]}]}"#, "messages.2.content.1.tool_use_id"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"r"}]},{"role":"assistant","content":[{"type":"tool_use","id":"t2","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t2","content":"r"}]},{"role":"assistant","content":"a"},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t9","content":"r"}]}]}"#, "messages.6.content.0.tool_use_id"),
        (#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}},{"type":"tool_use","id":"t2","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t2","content":"r"}]},{"role":"assistant","content":"a"},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"late"}]}]}"#, "messages.1.content.0"),
        (#"{"model":"m","max_tokens":5000,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"},"thinking":{"type":"enabled","budget_tokens":1024}}"#, "tool_choice"),
        (#"{"model":"m","max_tokens":5000,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"f"},"thinking":{"type":"adaptive"}}"#, "tool_choice"),
    ])
    func mistakesAre400sNamingTheFieldInAnthropicsShape(body: String, param: String?) throws {
        // (A call answered in the user turn right after its own, that turn split in two as
        // Anthropic merges it, and a last assistant turn's calls unanswered are all fine.)
        do {
            _ = try parse(body)
            Issue.record("accepted: \(body)")
        } catch {
            #expect(error.status == 400 && error.param == param, "\(body): \(error.message)")
            if let param { #expect(error.message.contains(param), "\(error.message)") }
            let rendered = try JSONValue.parse(MessagesErrors.body(error))
            #expect(rendered["type"] == .string("error") && rendered["error"]?["type"] == .string("invalid_request_error"))
            #expect(rendered["error"]?["message"]?.stringValue == error.message)
        }
    }
}

extension MessagesRequestTests {
    /// What Anthropic's API takes of calls and results is taken (review 109 #1's rule is no wider).
    @Test(arguments: [
        #"[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},{"role":"user","content":"b"},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"r"}]}]"#,
        #"[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]}]"#,
        #"[{"role":"user","content":"q"},{"role":"assistant","content":"a"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},{"role":"user","content":[{"type":"text","text":"x"},{"type":"tool_result","tool_use_id":"t1","content":"r"}]},{"role":"assistant","content":"done"}]"#,
    ])
    func callsAnsweredAsAnthropicTakesThemAreAccepted(messages: String) throws {
        _ = try parse(#"{"model":"m","max_tokens":5,"messages":"# + messages + "}")
    }

    /// Thinking with fusion forced is no forced call of the model's (review 111 #1).
    @Test(arguments: [#"{"type":"tool","name":"fusion"}"#, #"{"type":"any"}"#])
    func thinkingWithForcedFusionIsAccepted(choice: String) throws {
        _ = try parse(#"{"model":"m","max_tokens":5000,"messages":[{"role":"user","content":"q"}],"tools":[{"type":"fusion"}],"tool_choice":"#
                      + choice + #","thinking":{"type":"enabled","budget_tokens":1024}}"#)
    }
}

@Suite struct MessagesErrorsTests {
    @Test func statusesHaveAnthropicsTypesAndHeadersAreKept() throws {
        for (status, type) in [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"), (404, "not_found_error"),
                               (413, "request_too_large"), (429, "rate_limit_error"), (500, "api_error"), (502, "api_error"),
                               (503, "overloaded_error"), (504, "timeout_error"), (422, "invalid_request_error")] {
            #expect(MessagesErrors.type(forStatus: status) == type)
        }
        let limited = APIError(status: 429, type: "rate_limit_error", code: "rate_limited", message: "slow\ndown", headers: [("Retry-After", "2")])
        #expect(MessagesErrors.responseHeaders(limited).map(\.0) == ["Content-Type", "Retry-After"])
        var out: [UInt8] = []
        MessagesErrors.appendEvent(limited, to: &out)
        #expect(String(decoding: out, as: UTF8.self)
                    == "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow\\ndown\"}}\n\n")
    }
}

/// A client's bytes are hostile too: whatever a /v1/messages body holds, it is a request or a 400,
/// and a request converts and encodes for every provider without trapping.
@Suite struct MessagesRequestPropertyTests {
    /// Mostly valid blocks for each role, a few that are not.
    static let userBlocks = [
        #"{"type":"text","text":"é\n\u2028"}"#, #"{"type":"image","source":{"type":"base64","media_type":"image/png","data":"%%"}}"#,
        #"{"type":"image","source":{"type":"base64","media_type":"image/tiff","data":"AAAA"}}"#,
        #"{"type":"image","source":{"type":"url","url":"data:image/png;base64,AAAA"}}"#,
        #"{"type":"document","source":{"type":"text","data":"d"}}"#, #"{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBE"}}"#,
        #"{"type":"thinking","thinking":"t"}"#, "1e999",
    ]
    static let assistantBlocks = [
        #"{"type":"text","text":"ok"}"#, #"{"type":"tool_use","id":"t","name":"f","input":{"a":1e999}}"#,
        #"{"type":"tool_use","id":"v","name":"g","input":{}}"#, #"{"type":"thinking","thinking":"t","signature":"s"}"#,
        #"{"type":"redacted_thinking","data":"x"}"#, "{}",
        #"{"type":"server_tool_use","id":"s","name":"web_search","input":{"query":"q"}}"#, #"{"type":"web_search_tool_result","tool_use_id":"s","content":[]}"#,
        #"{"type":"text","text":"cited","citations":[{"type":"web_search_result_location","url":"u"}]}"#,
    ]
    static let extras = [
        #","tools":[{"name":"f","input_schema":{}}]"#, #","tools":[{"type":"fusion","parameters":{"preset":"x"}}]"#,
        #","tool_choice":{"type":"tool","name":"f"}"#, #","thinking":{"type":"enabled","budget_tokens":9223372036854775807}"#,
        #","thinking":{"type":"adaptive"}"#, #","system":[{"type":"text","text":"s"}]"#, #","temperature":1e999"#, #","top_k":-0"#,
        #","stop_sequences":["\u0000"]"#, #","max_tokens":1"#, #","metadata":{"user_id":null}"#, #","stream":true"#,
        #","top_p":0.5"#, #","service_tier":"auto""#, "]",
    ]
    static let bodies = zip(Gen.element(of: userBlocks).array(of: 0...4), Gen.element(of: assistantBlocks).array(of: 0...3),
                            Gen.element(of: extras).array(of: 0...3), Gen.element(of: ["user", "user", "user", "system"]))
        .map { user, assistant, extra, role -> String in
            let join = { (items: [String?]) in items.compactMap { $0 }.joined(separator: ",") }
            // The user turn answers the calls made just before it, once each (as Anthropic's API
            // requires: anything else is a 400).
            let calls = #"{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}},{"type":"tool_use","id":"u","name":"f","input":{}}]},"#
            let results = [#"{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r"}]}"#, #"{"type":"tool_result","tool_use_id":"u"}"#]
            return #"{"model":"m","max_tokens":4096,"messages":[\#(calls){"role":"\#(role ?? "user")","content":[\#(join(results + user))]},"#
                + #"{"role":"assistant","content":[\#(join(assistant))]}]\#(extra.compactMap { $0 }.joined())}"#
        }

    @Test func anyBodyIsARequestOrA400() async {
        let endpoint = ProviderEndpoint(name: "p", baseURL: "http://127.0.0.1:1/v1", apiKey: "k")
        let accepted = Counter()
        await propertyCheck(count: 500, input: Self.bodies) { body in
            let request: MessagesRequest
            do throws(APIError) {
                request = try MessagesRequest(body: Array(body.utf8))
            } catch {
                #expect(error.status == 400, "\(body)")
                return
            }
            accepted.count += 1
            let neutral = request.modelRequest()
            for provider in [AnthropicProvider(), GeminiProvider(), OpenAICompatibleProvider()] as [any Provider] {
                if (try? provider.validate(neutral)) != nil {
                    #expect(!provider.httpRequest(for: neutral, endpoint: endpoint, extraHeaders: []).body.isEmpty)
                }
            }
        }
        // About one body in ten is valid (every part of it must be); a seed's count varies.
        #expect(accepted.count > 25, "the generator must reach past validation: \(accepted.count)")
    }

    final class Counter: @unchecked Sendable { var count = 0 }
}

enum StrictSchemaCases {
    /// A closed object of `count` string properties with names `nameLength` long.
    static func wide(_ count: Int, nameLength: Int) -> String {
        let names = (0..<count).map { String(repeating: "n", count: nameLength - 5) + String(10_000 + $0) }
        let properties = names.map { "\"\($0)\":{\"type\":\"string\"}" }.joined(separator: ",")
        return #"{"type":"object","properties":{\#(properties)},"required":[\#(names.map { "\"\($0)\"" }.joined(separator: ","))],"additionalProperties":false}"#
    }

    /// A closed object `levels` deep.
    static func nested(_ levels: Int) -> String {
        var schema = #"{"type":"string"}"#
        for _ in 0..<levels { schema = #"{"type":"object","properties":{"a":\#(schema)},"required":["a"],"additionalProperties":false}"# }
        return schema
    }
}
