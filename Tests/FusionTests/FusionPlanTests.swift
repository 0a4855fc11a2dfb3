import Fusion
import GatewayCore
import Providers
import Surfaces
import Testing

@Suite struct FusionPlanTests {
    let settings = FusionSettings.simulated

    func plan(_ body: String, depth: Int = 0, settings: FusionSettings? = .simulated) throws(APIError) -> FusionPlan {
        let chat = try ChatRequest(body: Array(body.utf8))
        return try FusionPlan.make(request: chat.modelRequest(), settings: settings, depth: depth, structuredEvents: try chat.includeFusionEvents())
    }

    func error(_ body: String) -> APIError? {
        do {
            _ = try plan(body)
            return nil
        } catch {
            return error
        }
    }

    @Test func aliasResolvesToTheOuterModelWithDefaults() throws {
        guard case .fusion(let request) = try plan(#"{"model":"openrouter/fusion","messages":[{"role":"user","content":"q"}]}"#) else {
            Issue.record("not fusion")
            return
        }
        #expect(request.outerModel == "sim/outer")
        #expect(request.parameters.analysisModels == ["sim/expert-1", "sim/expert-2", "sim/expert-3"])
        #expect(request.judgeModel == "sim/outer")
        #expect(request.parameters.maxToolCalls == 8)
    }

    @Test func serverToolOnAnyModelKeepsTheCallersTools() throws {
        let body = #"{"model":"p/m","stream":true,"stream_options":{"include_fusion_events":true},"messages":[{"role":"user","content":"q"}],"tools":[{"type":"function","function":{"name":"lookup"}},{"type":"openrouter:fusion","parameters":{"analysis_models":["p/a","p/b"],"model":"p/j","preset":"budget","temperature":0.5,"max_completion_tokens":300,"reasoning":{"effort":"high","max_tokens":100},"max_tool_calls":3}}]}"#
        guard case .fusion(let request) = try plan(body) else {
            Issue.record("not fusion")
            return
        }
        #expect(request.outerModel == "p/m")
        #expect(request.parameters.analysisModels == ["p/a", "p/b"])
        #expect(request.judgeModel == "p/j")
        #expect(request.parameters.temperature == 0.5)
        #expect(request.parameters.maxToolCalls == 3)
        #expect(request.callerTools.count == 1)
        #expect(request.structuredEvents)
        let first = OpenAIRequestEncoder.json(FusionPrompts.outerFirstRequest(request))
        let names = first["tools"]?.arrayValue?.compactMap { $0["function"]?["name"]?.stringValue }
        #expect(names == ["lookup", "fusion"])
        #expect(first["stream_options"] == .object(["include_usage": .bool(true)]), "our own flag never goes upstream")
    }

    /// `reasoning` in the fusion parameters means what it means on a plain request: `enabled:
    /// false` is no thinking (it was ignored, and any `reasoning` object switched thinking on), and
    /// thinking asked for gets its budget on top of the gateway's default output limit (4,096 with a
    /// 16,384 budget left an Anthropic member one visible token).
    @Test func fusionReasoningMeansWhatItDoesOnAPlainRequest() throws {
        func member(_ reasoning: String, limit: String = "") throws -> ModelRequest {
            let body = #"{"model":"p/m","messages":[{"role":"user","content":"q"}],"tools":[{"type":"fusion","parameters":{"reasoning":"#
                + reasoning + limit + "}}]}"
            guard case .fusion(let request) = try plan(body) else { throw APIError.invalidRequest("not fusion") }
            return FusionPrompts.innerRequest(model: "m", messages: [ModelMessage(role: .user, text: "q")], parameters: request.parameters,
                                              defaultMaxTokens: FusionSettings.simulated.defaultMaxTokens)
        }
        let gemini = GeminiProvider(), anthropic = AnthropicProvider()
        let geminiEndpoint = ProviderEndpoint(name: "gemini", baseURL: "https://generativelanguage.googleapis.com/v1beta", apiKey: "k")
        let anthropicEndpoint = ProviderEndpoint(name: "anthropic", baseURL: "https://api.anthropic.com/v1", apiKey: "k")
        func geminiBody(_ request: ModelRequest) throws -> JSONValue { try JSONValue.parse(gemini.httpRequest(for: request, endpoint: geminiEndpoint, extraHeaders: []).body) }
        func anthropicBody(_ request: ModelRequest) throws -> JSONValue {
            var request = request
            request.model = "claude-sonnet-4-5"
            return try JSONValue.parse(anthropic.httpRequest(for: request, endpoint: anthropicEndpoint, extraHeaders: []).body)
        }

        let off = try member(#"{"enabled":false}"#)
        #expect(off.reasoning?.enabled == false && off.maxOutputTokens == 4096)
        #expect(try geminiBody(off)["generationConfig"]?["thinkingConfig"]?["thinkingBudget"] == .int(0))
        #expect(try anthropicBody(off)["thinking"] == nil)

        let high = try member(#"{"effort":"high"}"#)
        #expect(high.maxOutputTokens == Int64(20_480))
        let claude = try anthropicBody(high)
        #expect(claude["max_tokens"] == .int(4096 + 16384) && claude["thinking"]?["budget_tokens"] == .int(16384), "\(claude)")
        // The caller's own limit is the limit, reasoning included.
        #expect(try member(#"{"effort":"high"}"#, limit: #","max_completion_tokens":5000"#).maxOutputTokens == 5000)
        #expect(error(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"tools":[{"type":"fusion","parameters":{"reasoning":{"enabled":"yes"}}}]}"#)?.param
                == "tools[0].parameters.reasoning.enabled")
    }

    /// A custom tool beside fusion is refused naming it (its calls have no neutral form: the outer
    /// model's would reach the client nameless, review 51 #1); without fusion it is the
    /// upstream's to take.
    @Test func customToolsAreNotOfferedWithFusion() throws {
        let tools = #""tools":[{"type":"custom","custom":{"name":"code_exec"}},{"type":"fusion"}]"#
        #expect(error(#"{"model":"sim/outer","messages":[{"role":"user","content":"q"}],\#(tools)}"#)?.param == "tools[0]")
        guard case .passthrough = try plan(#"{"model":"sim/outer","messages":[{"role":"user","content":"q"}],"tools":[{"type":"custom","custom":{"name":"code_exec"}}]}"#) else {
            Issue.record("a custom tool alone is no fusion request")
            return
        }
    }

    @Test func presetsSelectThePanel() throws {
        guard case .fusion(let request) = try plan(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"tools":[{"type":"fusion","parameters":{"preset":"budget"}}]}"#) else { return }
        #expect(request.parameters.analysisModels == ["sim/expert-1", "sim/expert-2"])
        // OpenRouter's plugin presets run the config's presets of that intent.
        for (name, expected) in [("general-budget", "budget"), ("general-high", "quality")] {
            guard case .fusion(let named) = try plan(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"plugins":[{"id":"fusion","preset":""#
                + name + #""}]}"#) else { Issue.record("not fusion"); continue }
            #expect(named.parameters.preset == expected)
        }
        let refusal = error(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"plugins":[{"id":"fusion","preset":"general-gold"}]}"#)
        #expect(refusal?.param == "plugins[0].preset")
        #expect(refusal?.message.contains("general-budget, general-high") == true, "every accepted name is listed: \(refusal?.message ?? "")")
    }

    @Test func depthOneNeverInjectsTheTool() throws {
        guard case .withoutFusion(let model, let request) = try plan(#"{"model":"fusion","messages":[{"role":"user","content":"q"}],"tools":[{"type":"fusion"}],"tool_choice":"required"}"#, depth: 1) else {
            Issue.record("fusion at depth 1")
            return
        }
        #expect(model == "sim/outer")
        let body = OpenAIRequestEncoder.json(request)
        #expect(body["tools"] == nil)
        #expect(body["tool_choice"] == nil)
        guard case .withoutFusion(_, let kept) = try plan(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"tools":[{"type":"function","function":{"name":"f"}},{"type":"fusion"}]}"#, depth: 2) else { return }
        #expect(kept.tools.count == 1)
        // A choice naming the fusion tool goes with it, even beside the caller's own tools (an
        // upstream refuses a tool_choice naming a tool it was not given).
        for choice in [#"{"type":"function","function":{"name":"fusion"}}"#, #"{"type":"openrouter:fusion"}"#] {
            guard case .withoutFusion(_, let nested) = try plan(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"tools":[{"type":"function","function":{"name":"f"}},{"type":"openrouter:fusion"}],"tool_choice":"#
                + choice + "}", depth: 1) else { Issue.record("fusion at depth 1"); return }
            #expect(nested.toolChoice == nil && OpenAIRequestEncoder.json(nested)["tool_choice"] == nil, "\(choice)")
        }
    }

    /// `tool_choice: {"type": "openrouter:fusion"}` forces Fusion on chat as on Responses, and is
    /// never forwarded as it came; naming the fusion tool without offering it is a 400.
    @Test func theServerToolsOwnChoiceForcesFusion() throws {
        for body in [#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"tools":[{"type":"openrouter:fusion"}],"tool_choice":{"type":"openrouter:fusion"}}"#,
                     #"{"model":"openrouter/fusion","messages":[{"role":"user","content":"q"}],"tool_choice":{"type":"openrouter:fusion"}}"#] {
            guard case .fusion(let request) = try plan(body) else { Issue.record("not fusion: \(body)"); continue }
            #expect(request.forced, "\(body)")
            let first = OpenAIRequestEncoder.json(FusionPrompts.outerFirstRequest(request))
            #expect(first["tool_choice"]?["type"]?.stringValue != "openrouter:fusion", "\(first)")
        }
        #expect(error(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"tool_choice":{"type":"openrouter:fusion"}}"#)?.param == "tool_choice")
        #expect(error(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"tool_choice":{"type":"function","function":{"name":"fusion"}}}"#)?.param == "tool_choice")
    }

    @Test func plainRequestsPassThrough() throws {
        guard case .passthrough = try plan(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"tools":[{"type":"function","function":{"name":"f"}}]}"#) else {
            Issue.record("not passthrough")
            return
        }
    }

    @Test(arguments: [
        (#"[{"type":"fusion","parameters":{"analysis_models":[]}}]"#, "tools[0].parameters.analysis_models"),
        (#"[{"type":"fusion","parameters":{"analysis_models":["a","b","c","d","e","f","g","h","i"]}}]"#, "tools[0].parameters.analysis_models"),
        (#"[{"type":"fusion","parameters":{"analysis_models":["a",3]}}]"#, "tools[0].parameters.analysis_models[1]"),
        // One model twice: the analysis could not tell its answers apart (review 122 #1).
        (#"[{"type":"fusion","parameters":{"analysis_models":["p/a","p/b","p/a"]}}]"#, "tools[0].parameters.analysis_models[2]"),
        (#"[{"type":"fusion","parameters":{"analysis_models":"a"}}]"#, "tools[0].parameters.analysis_models"),
        (#"[{"type":"fusion","parameters":{"model":""}}]"#, "tools[0].parameters.model"),
        (#"[{"type":"fusion","parameters":{"max_tool_calls":0}}]"#, "tools[0].parameters.max_tool_calls"),
        (#"[{"type":"fusion","parameters":{"max_tool_calls":17}}]"#, "tools[0].parameters.max_tool_calls"),
        (#"[{"type":"fusion","parameters":{"max_completion_tokens":0}}]"#, "tools[0].parameters.max_completion_tokens"),
        (#"[{"type":"fusion","parameters":{"max_completion_tokens":2147483648}}]"#, "tools[0].parameters.max_completion_tokens"),
        (#"[{"type":"fusion","parameters":{"reasoning":{"max_tokens":2147483648}}}]"#, "tools[0].parameters.reasoning.max_tokens"),
        (#"[{"type":"fusion","parameters":{"temperature":2.5}}]"#, "tools[0].parameters.temperature"),
        (#"[{"type":"fusion","parameters":{"temperature":"hot"}}]"#, "tools[0].parameters.temperature"),
        (#"[{"type":"fusion","parameters":{"reasoning":"high"}}]"#, "tools[0].parameters.reasoning"),
        (#"[{"type":"fusion","parameters":{"reasoning":{"effort":"maximal"}}}]"#, "tools[0].parameters.reasoning.effort"),
        (#"[{"type":"fusion","parameters":{"reasoning":{"max_tokens":-1}}}]"#, "tools[0].parameters.reasoning.max_tokens"),
        (#"[{"type":"fusion","parameters":{"preset":"gold"}}]"#, "tools[0].parameters.preset"),
        (#"[{"type":"fusion","parameters":{"analysis_modles":["a"]}}]"#, "tools[0].parameters.analysis_modles"),
        (#"[{"type":"fusion","parameters":[1]}]"#, "tools[0].parameters"),
        (#"[{"type":"fusion"},{"type":"openrouter:fusion"}]"#, "tools[1]"),
        (#"[{"type":"function","function":{"name":"fusion"}},{"type":"fusion"}]"#, "tools[0].function.name"),
    ])
    func invalidParametersAreRejectedNamingTheField(tools: String, param: String) {
        let failure = error(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"tools":\#(tools)}"#)
        #expect(failure?.status == 400)
        #expect(failure?.param == param, "\(failure?.message ?? "accepted")")
    }

    @Test func thePluginIsTheServerToolThatForcesTheDeliberation() throws {
        let body = #"{"model":"p/m","messages":[{"role":"user","content":"q"}],"plugins":[{"id":"web","max_results":3},{"id":"fusion","preset":"budget","model":"p/j","max_tool_calls":2,"tools":[]},{"id":"response-healing"}]}"#
        guard case .fusion(let request) = try plan(body) else {
            Issue.record("not fusion")
            return
        }
        #expect(request.forced, "the plugin runs the panel whatever the outer model would decide")
        #expect(request.outerModel == "p/m")
        #expect(request.parameters.analysisModels == ["sim/expert-1", "sim/expert-2"] && request.judgeModel == "p/j")
        #expect(request.parameters.maxToolCalls == 2)
        #expect(request.parameters.webSearch == false && request.parameters.judgeWebSearch == false, "tools: [] switches the web off")
        #expect(request.parameterPath == "plugins[1]")
        let upstream = OpenAIRequestEncoder.json(FusionPrompts.outerFirstRequest(request))
        #expect(upstream["plugins"] == .array([.object(["id": .string("web"), "max_results": .int(3)]),
                                               .object(["id": .string("response-healing")])]),
                "other plugins pass through untouched, ours never goes upstream")
        // The alias takes its parameters from the plugin too; the tool is not forced by the alias alone.
        guard case .fusion(let alias) = try plan(#"{"model":"fusion","messages":[{"role":"user","content":"q"}],"plugins":[{"id":"fusion"}]}"#) else { return }
        #expect(alias.forced && alias.outerModel == "sim/outer" && alias.base.extraFields["plugins"] == nil)
        guard case .fusion(let tool) = try plan(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"tools":[{"type":"fusion"}]}"#) else { return }
        #expect(!tool.forced)
    }

    @Test func aDisabledPluginOrOtherPluginsLeaveTheRequestAlone() throws {
        guard case .passthrough = try plan(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"plugins":[{"id":"fusion","enabled":false},{"id":"web"}]}"#) else {
            Issue.record("a disabled plugin ran fusion")
            return
        }
        // ... and the switched-off plugin never reaches the upstream (review 17 #4), on either API.
        let chat = try ChatRequest(body: Array(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"plugins":[{"id":"fusion","enabled":false},{"id":"web"}]}"#.utf8))
        #expect(try JSONValue.parse(chat.upstreamBody(model: "m"))["plugins"] == .array([.object(["id": .string("web")])]))
        let alone = try ChatRequest(body: Array(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"plugins":[{"id":"fusion","enabled":false}]}"#.utf8))
        #expect(try JSONValue.parse(alone.upstreamBody(model: "m"))["plugins"] == nil)
        let responses = try ResponsesRequest(body: Array(#"{"model":"p/m","input":"q","plugins":[{"id":"fusion","enabled":false}]}"#.utf8))
        #expect(responses.modelRequest().extraFields["plugins"] == nil)
        guard case .passthrough = try plan(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"plugins":"not ours to judge"}"#) else {
            Issue.record("not passthrough")
            return
        }
        guard case .withoutFusion(_, let request) = try plan(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"plugins":[{"id":"fusion"}]}"#, depth: 1) else {
            Issue.record("fusion at depth 1")
            return
        }
        #expect(request.extraFields["plugins"] == nil, "an inner call never carries the plugin on")
    }

    @Test(arguments: [
        (#"[{"id":"fusion","analysis_models":[]}]"#, "plugins[0].analysis_models"),
        (#"[{"id":"web"},{"id":"fusion","temperature":3}]"#, "plugins[1].temperature"),
        (#"[{"id":"fusion","reasoning":{"effort":"maximal"}}]"#, "plugins[0].reasoning.effort"),
        (#"[{"id":"fusion","preset":"gold"}]"#, "plugins[0].preset"),
        (#"[{"id":"fusion","max_tool_calls":17}]"#, "plugins[0].max_tool_calls"),
        (#"[{"id":"fusion","analysis_modles":["a"]}]"#, "plugins[0].analysis_modles"),
        (#"[{"id":"fusion","enabled":"yes"}]"#, "plugins[0].enabled"),
        (#"[{"id":"fusion","tools":{}}]"#, "plugins[0].tools"),
        (#"[{"id":"fusion","tools":[{"type":"openrouter:web_search"},{"type":"openrouter:bash"}]}]"#, "plugins[0].tools[1].type"),
        (#"[{"id":"fusion"},{"id":"fusion","model":"p/j"}]"#, "plugins[1]"),
    ])
    func invalidPluginsAreRejectedNamingTheField(plugins: String, param: String) {
        let failure = error(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"plugins":\#(plugins)}"#)
        #expect(failure?.status == 400)
        #expect(failure?.param == param, "\(failure?.message ?? "accepted")")
    }

    @Test func aPluginAndAServerToolTogetherAreRefused() {
        let failure = error(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"tools":[{"type":"openrouter:fusion"}],"plugins":[{"id":"fusion"}]}"#)
        #expect(failure?.status == 400 && failure?.param == "plugins[0]")
        #expect(failure?.message.contains("tools[0]") == true)
        do {
            _ = try plan(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"plugins":[{"id":"fusion"}]}"#, settings: nil)
            Issue.record("accepted")
        } catch {
            #expect(error.param == "plugins[0]" && error.message.contains("not configured"))
        }
    }

    @Test func aDeliberationAnswersOneChoice() throws {
        for body in [#"{"model":"fusion","messages":[{"role":"user","content":"q"}],"n":3}"#,
                     #"{"model":"p/m","messages":[{"role":"user","content":"q"}],"n":2,"plugins":[{"id":"fusion"}]}"#] {
            let failure = error(body)
            #expect(failure?.status == 400 && failure?.param == "n", "\(body)")
        }
        guard case .fusion = try plan(#"{"model":"fusion","messages":[{"role":"user","content":"q"}],"n":1}"#) else {
            Issue.record("n: 1 refused")
            return
        }
        // An inner call (depth 1) is a plain completion: n is the upstream's business.
        guard case .withoutFusion = try plan(#"{"model":"fusion","messages":[{"role":"user","content":"q"}],"n":3}"#, depth: 1) else {
            Issue.record("depth 1 refused n")
            return
        }
    }

    @Test func fusionEventsFlagMustBeBoolean() {
        let failure = error(#"{"model":"fusion","messages":[{"role":"user","content":"q"}],"stream_options":{"include_fusion_events":"yes"}}"#)
        #expect(failure?.param == "stream_options.include_fusion_events")
    }

    @Test func unconfiguredFusionIsAClearError() {
        do {
            _ = try plan(#"{"model":"fusion","messages":[{"role":"user","content":"q"}]}"#, settings: nil)
            Issue.record("accepted")
        } catch {
            #expect(error.status == 400)
            #expect(error.message.contains("not configured"))
        }
    }

    @Test func finalCallCarriesTheToolResultAndDropsTheTool() throws {
        guard case .fusion(let request) = try plan(#"{"model":"fusion","messages":[{"role":"user","content":"q"}],"tool_choice":"required"}"#) else { return }
        let call = ToolCall(index: 0, id: "call_1", name: "fusion", arguments: "{}")
        let body = OpenAIRequestEncoder.json(FusionPrompts.outerFinalRequest(request, assistantContent: [], calls: [call],
                                                                             results: [("call_1", #"{"status":"ok"}"#)]))
        #expect(body["tools"] == nil)
        #expect(body["tool_choice"] == nil)
        let messages = try #require(body["messages"]?.arrayValue)
        #expect(messages.count == 3)
        #expect(messages[1]["tool_calls"]?.arrayValue?.first?["id"] == .string("call_1"))
        #expect(messages[1]["content"] == .string(""), "never null: some servers reject it")
        #expect(messages[2] == .object(["role": .string("tool"), "tool_call_id": .string("call_1"), "content": .string(#"{"status":"ok"}"#)]))
    }

    @Test func panelGetsTheConversationWithToolTrafficAsText() throws {
        let body = #"{"model":"fusion","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"first"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"lookup","arguments":"{\"k\":1}"}}]},{"role":"tool","tool_call_id":"c","content":"42"},{"role":"user","content":[{"type":"text","text":"second"}]}]}"#
        guard case .fusion(let request) = try plan(body) else { return }
        let full = FusionPrompts.panelMessages(request, question: request.lastUserText, context: .conversation)
        #expect(full.count == 5)
        #expect(full[2].text == #"[called lookup with {"k":1}]"#)
        #expect(full[3].role == .user)
        #expect(full[3].text == "[tool result]\n42")
        let onlyQuestion = FusionPrompts.panelMessages(request, question: "other?", context: .lastMessage)
        #expect(onlyQuestion == [ModelMessage(role: .user, text: "other?")])
        let withQuestion = FusionPrompts.panelMessages(request, question: "other?", context: .conversation)
        #expect(withQuestion.last?.text == "other?")
        // An Anthropic client's server-tool turn reaches members as its text (review 20 B1).
        var neutral = try ChatRequest(body: Array(body.utf8)).modelRequest()
        neutral.messages[2] = ModelMessage(role: .assistant, content: [
            .providerBlock(.object(["type": .string("server_tool_use"), "id": .string("s"), "name": .string("web_search")])),
            .providerBlock(.object(["type": .string("text"), "text": .string("Tides at noon."), "citations": .array([])])),
        ])
        guard case .fusion(let cited) = try FusionPlan.make(request: neutral, settings: .simulated, depth: 0) else { return }
        #expect(FusionPrompts.panelMessages(cited, question: cited.lastUserText, context: .conversation)[2].text == "Tides at noon.")
    }
}

@Suite struct JudgeAnalysisTests {
    let panel: Set<String> = ["p/a", "p/b"]

    @Test func acceptsFencedJSONAndKeepsOnlyTheFiveFields() throws {
        let reply = "```json\n{\"consensus\":[\"c\"],\"contradictions\":[],\"partial_coverage\":[],\"unique_insights\":[],\"blind_spots\":[],\"summary\":\"extra\"}\n```"
        let analysis = try JudgeAnalysis.parse(reply, panel: panel).get()
        #expect(analysis.objectValue?.keys.sorted() == JudgeAnalysis.fields.sorted())
    }

    /// A citation padded with white space is accepted as the model it names, and goes out as that
    /// name, labels or not (the fuzzer's finding: `"   p/a"` went out padded).
    @Test func aPaddedCitationGoesOutAsTheModelsName() throws {
        let reply = #"{"consensus":[],"contradictions":[{"topic":"t","stances":[{"model":" p/b ","stance":"no"}]}],"partial_coverage":[{"models":["  p/a"],"point":"x"}],"unique_insights":[{"model":"\tp/a","insight":"z"}],"blind_spots":[]}"#
        for labels in [nil, NeutralLabels(models: ["p/a", "p/b"], neutral: true, seed: nil)] {
            let analysis = try JudgeAnalysis.parse(reply, panel: panel, labels: labels).get()
            #expect(analysis["unique_insights"]?.arrayValue?.first?["model"] == .string("p/a"), "\(analysis)")
            #expect(analysis["partial_coverage"]?.arrayValue?.first?["models"]?.arrayValue?.first == .string("p/a"))
            #expect(analysis["contradictions"]?.arrayValue?.first?["stances"]?.arrayValue?.first?["model"] == .string("p/b"))
        }
    }

    @Test(arguments: [
        ("", JudgeFailureReason.emptyCompletion),
        ("The models agree.", .notValidJSON),
        ("[1,2]", .schemaMismatch),
        (#"{"consensus":[],"contradictions":[],"partial_coverage":[],"unique_insights":[]}"#, .schemaMismatch),
        (#"{"consensus":[1],"contradictions":[],"partial_coverage":[],"unique_insights":[],"blind_spots":[]}"#, .schemaMismatch),
        (#"{"consensus":[],"contradictions":[{"topic":"t","stances":[{"model":"p/x","stance":"s"}]}],"partial_coverage":[],"unique_insights":[],"blind_spots":[]}"#, .schemaMismatch),
        (#"{"consensus":[],"contradictions":[],"partial_coverage":[{"models":["p/a","ghost"],"point":"p"}],"unique_insights":[],"blind_spots":[]}"#, .schemaMismatch),
        (#"{"consensus":[],"contradictions":[],"partial_coverage":[],"unique_insights":[{"model":"p/a"}],"blind_spots":[]}"#, .schemaMismatch),
    ])
    func rejectsWithTheRightReason(reply: String, reason: JudgeFailureReason) {
        guard case .failure(let failure) = JudgeAnalysis.parse(reply, panel: panel) else {
            Issue.record("accepted \(reply)")
            return
        }
        #expect(failure.reason == reason, "\(failure.message)")
    }
}

@Suite struct ToolCallAccumulatorTests {
    @Test func accumulatesFragmentedToolCalls() {
        var calls = ToolCallAccumulator()
        calls.add(ToolCallFragment(index: 0, id: "a", name: "fusion", arguments: ""))
        calls.add(ToolCallFragment(index: 1, id: "b", name: "lookup", arguments: "{"))
        calls.add(ToolCallFragment(index: 0, id: nil, name: nil, arguments: "{\"question\":"))
        calls.add(ToolCallFragment(index: 0, id: nil, name: nil, arguments: "\"q\"}"))
        calls.add(ToolCallFragment(index: 1, id: nil, name: nil, arguments: "}"))
        #expect(calls.calls.map(\.arguments) == ["{\"question\":\"q\"}", "{}"])
        #expect(calls.name(at: 1) == "lookup")
    }
}
