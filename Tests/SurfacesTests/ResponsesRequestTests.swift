import Fusion
import GatewayCore
import PropertyBased
import Providers
import Surfaces
import Testing

@Suite struct ResponsesRequestTests {
    func parse(_ text: String) throws(APIError) -> ResponsesRequest {
        try ResponsesRequest(body: Array(text.utf8))
    }

    func error(_ text: String) -> APIError? {
        do {
            _ = try parse(text)
            return nil
        } catch {
            return error
        }
    }

    @Test func aStringInputIsOneUserMessageAfterTheInstructions() throws {
        let request = try parse(#"{"model":"p/m","input":"Why?","instructions":"Be brief."}"#)
        let neutral = request.modelRequest()
        #expect(neutral.model == "p/m" && !neutral.stream && neutral.includeUsage)
        #expect(neutral.messages == [ModelMessage(role: .system, text: "Be brief."), ModelMessage(role: .user, text: "Why?")])
    }

    @Test func everyInputItemBecomesWhatAChatModelSees() throws {
        let request = try parse("""
            {"model":"p/m","stream":true,"input":[
              {"role":"developer","content":"dev"},
              {"type":"message","role":"user","content":[{"type":"input_text","text":"look"},
                {"type":"input_image","image_url":"data:image/png;base64,AA","detail":"low"},
                {"type":"input_file","filename":"a.pdf","file_data":"data:application/pdf;base64,AA"}]},
              {"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"hm"}]},
              {"type":"message","role":"assistant","id":"msg_1","status":"completed",
               "content":[{"type":"output_text","text":"Let me check.","annotations":[]}]},
              {"type":"function_call","id":"fc_1","call_id":"call_a","name":"lookup","arguments":"{\\"k\\":1}"},
              {"type":"function_call","call_id":"call_b","name":"lookup","arguments":"{}"},
              {"type":"function_call_output","call_id":"call_a","output":"42"},
              {"type":"function_call_output","call_id":"call_b","output":[{"type":"input_text","text":"7"}]},
              {"type":"openrouter:fusion","id":"fu_1","status":"completed","analysis":{"consensus":["x"]},
               "responses":[{"model":"p/a","content":"A"}]},
              {"role":"assistant","content":"Final."},
              {"role":"user","content":"More?"}]}
            """)
        let messages = request.modelRequest().messages
        #expect(messages.map(\.role) == [.developer, .user, .assistant, .tool, .tool, .assistant, .assistant, .user])
        #expect(messages[1].content == [.text("look"), .image(url: "data:image/png;base64,AA", detail: "low"),
                                        .other(.object(["type": .string("file"),
                                                        "file": .object(["filename": .string("a.pdf"),
                                                                         "file_data": .string("data:application/pdf;base64,AA")])]))])
        // The assistant's text and both calls are one turn, as chat requires; the reasoning is dropped.
        #expect(messages[2].text == "Let me check.")
        #expect(messages[2].toolCalls == [ToolCall(index: 0, id: "call_a", name: "lookup", arguments: #"{"k":1}"#),
                                          ToolCall(index: 1, id: "call_b", name: "lookup", arguments: "{}")])
        #expect(messages[3].toolCallID == "call_a" && messages[3].text == "42")
        #expect(messages[4].toolCallID == "call_b" && messages[4].text == "7")
        // The deliberation is rehydrated as the result the outer model saw.
        #expect(messages[5].text == #"[fusion result]"# + "\n" + #"{"analysis":{"consensus":["x"]},"responses":[{"content":"A","model":"p/a"}]}"#)
        #expect(messages[6].text == "Final.")
    }

    /// The item of a parallel turn sent back: the fusion call joins the turn of the function
    /// calls around it, and its result follows the turn's calls, whatever the items' order.
    @Test func aFusionItemWithItsCallIsRestoredAsTheCallAndItsResult() throws {
        let fusion = #"{"type":"openrouter:fusion","id":"fu_1","call_id":"call_f","arguments":"{\"question\":\"Q\"}","status":"completed","analysis":{"consensus":["x"]},"panel":{"answered":1},"responses":[{"model":"p/a","content":"A"}]}"#
        let call = #"{"type":"function_call","call_id":"call_l","name":"lookup","arguments":"{}"}"#
        let output = #"{"type":"function_call_output","call_id":"call_l","output":"42"}"#
        for order in [[call, fusion, output], [fusion, call, output]] {
            let request = try parse(#"{"model":"p/m","input":[{"role":"user","content":"q"},"# + order.joined(separator: ",") + "]}")
            let messages = request.modelRequest().messages
            #expect(messages.map(\.role) == [.user, .assistant, .tool, .tool], "\(messages)")
            let ids = messages[1].toolCalls.map(\.id)
            #expect(Set(ids) == ["call_l", "call_f"] && messages[1].toolCalls.map(\.index) == [0, 1])
            #expect(messages[1].toolCalls.first { $0.id == "call_f" }.map { ($0.name, $0.arguments) } ?? ("", "") == ("fusion", #"{"question":"Q"}"#))
            let result = try #require(messages.first { $0.toolCallID == "call_f" })
            #expect(result.text == #"{"analysis":{"consensus":["x"]},"panel":{"answered":1},"responses":[{"content":"A","model":"p/a"}]}"#)
        }
    }

    /// A fusion item's arguments that are no JSON object are restored as `{}`, as chat's records
    /// are (review 60C #3: the next turn to Claude or Gemini was a 400); an item without its call
    /// inside a turn whose calls wait for their outputs joins that turn as text (#4: a message
    /// between the calls and their outputs, which chat APIs refuse).
    @Test func fusionItemsRestoreAsEveryAPITakesThem() throws {
        let broken = #"{"type":"openrouter:fusion","call_id":"call_f","arguments":"not json at all","responses":[]}"#
        let request = try parse(#"{"model":"p/m","input":[{"role":"user","content":"q"},"# + broken + "]}")
        #expect(request.modelRequest().messages[1].toolCalls.map(\.arguments) == ["{}"])
        let call = #"{"type":"function_call","call_id":"c1","name":"lookup","arguments":"{}"}"#
        let idless = #"{"type":"openrouter:fusion","responses":[]}"#
        let output = #"{"type":"function_call_output","call_id":"c1","output":"42"}"#
        let messages = try parse(#"{"model":"p/m","input":[{"role":"user","content":"q"},"# + [call, idless, output].joined(separator: ",") + "]}")
            .modelRequest().messages
        #expect(messages.map(\.role) == [.user, .assistant, .tool], "\(messages)")
        #expect(messages[1].toolCalls.map(\.id) == ["c1"] && messages[1].text.hasPrefix("[fusion result]"))
    }

    /// A message sent between a call and its output goes after the output: chat APIs refuse a
    /// turn's calls not followed by their tool messages (review 107 #5). Outputs keep their order.
    @Test func anOutputFollowsItsCallWhatWasSaidInBetweenComesAfter() throws {
        let calls = #"{"type":"function_call","call_id":"c1","name":"a","arguments":"{}"},{"type":"function_call","call_id":"c2","name":"b","arguments":"{}"}"#
        let between = #"{"role":"user","content":"interjection"},{"role":"developer","content":"note"}"#
        let outputs = #"{"type":"function_call_output","call_id":"c2","output":"2"},{"type":"function_call_output","call_id":"c1","output":"1"}"#
        let messages = try parse(#"{"model":"p/m","input":[{"role":"user","content":"q"},"# + [calls, between, outputs].joined(separator: ",") + "]}")
            .modelRequest().messages
        #expect(messages.map(\.role) == [.user, .assistant, .tool, .tool, .user, .developer], "\(messages.map(\.role))")
        #expect(messages[2].toolCallID == "c2" && messages[3].toolCallID == "c1" && messages[4].text == "interjection")
        // In order already: unchanged.
        let plain = try parse(#"{"model":"p/m","input":[{"role":"user","content":"q"},"# + [calls, outputs, between].joined(separator: ",") + "]}")
            .modelRequest().messages
        #expect(plain.map(\.role) == [.user, .assistant, .tool, .tool, .user, .developer])
    }

    @Test func functionToolsAreFlatAndTheFusionToolIsKeptForThePlan() throws {
        let request = try parse("""
            {"model":"p/m","input":"q","tools":[
              {"type":"function","name":"lookup","description":"Look up","parameters":{"type":"object"},"strict":true},
              {"type":"openrouter:fusion","parameters":{"analysis_models":["p/a","p/b"]}},
              {"type":"openrouter:web_search"}],
             "tool_choice":{"type":"function","name":"lookup"}}
            """)
        let neutral = request.modelRequest()
        #expect(neutral.tools.first == .function(name: "lookup", description: "Look up", parameters: .object(["type": .string("object")]), strict: true))
        #expect(neutral.tools.count == 3 && neutral.toolChoice == .function("lookup"))
        guard case .fusion(let fusion) = try FusionPlan.make(request: neutral, settings: .simulated, depth: 0) else {
            Issue.record("not fusion")
            return
        }
        #expect(fusion.parameters.analysisModels == ["p/a", "p/b"] && fusion.parameterPath == "tools[1].parameters")
        #expect(fusion.callerTools.count == 2 && !fusion.forced)
        // The plan's own errors name the Responses request's fields.
        do {
            _ = try FusionPlan.make(request: try parse(#"{"model":"p/m","input":"q","tools":[{"type":"function","name":"f"},{"type":"fusion","parameters":{"temperature":9}}]}"#).modelRequest(),
                                    settings: .simulated, depth: 0)
            Issue.record("accepted")
        } catch {
            #expect(error.param == "tools[1].parameters.temperature")
        }
    }

    @Test func thePluginFormReachesThePlanAndOtherPluginsTheUpstream() throws {
        let request = try parse(#"{"model":"p/m","input":"q","plugins":[{"id":"web"},{"id":"fusion","analysis_models":["p/a"]}],"provider":{"order":["x"]}}"#)
        guard case .fusion(let fusion) = try FusionPlan.make(request: request.modelRequest(), settings: .simulated, depth: 0) else {
            Issue.record("not fusion")
            return
        }
        #expect(fusion.forced && fusion.parameters.analysisModels == ["p/a"] && fusion.parameterPath == "plugins[1]")
        #expect(fusion.base.extraFields["plugins"] == .array([.object(["id": .string("web")])]))
        #expect(fusion.base.extraFields["provider"] == .object(["order": .array([.string("x")])]))
        do {
            _ = try FusionPlan.make(request: try parse(#"{"model":"p/m","input":"q","plugins":[{"id":"fusion","model":""}]}"#).modelRequest(),
                                    settings: .simulated, depth: 0)
            Issue.record("accepted")
        } catch {
            #expect(error.param == "plugins[0].model")
        }
    }

    /// `reasoning.enabled` reaches the model: `false` turns a thinking model's reasoning off
    /// (review 44 Responses #2: it was validated, then dropped); chat's `n: 1` and
    /// `logprobs: false`, harmless, are consumed rather than sent upstream.
    @Test func reasoningEnabledAndChatsOneChoiceFieldsConvert() throws {
        let off = try parse(#"{"model":"p/m","input":"q","reasoning":{"enabled":false},"n":1,"logprobs":false}"#).modelRequest()
        #expect(off.reasoning == ModelRequest.Reasoning(enabled: false))
        #expect(off.extraFields["n"] == nil && off.extraFields["logprobs"] == nil)
        let on = try parse(#"{"model":"p/m","input":"q","reasoning":{"enabled":true}}"#).modelRequest()
        #expect(on.reasoning == ModelRequest.Reasoning(enabled: true))
    }

    @Test func samplingFormatsAndUnknownFieldsConvert() throws {
        let request = try parse("""
            {"model":"p/m","input":"q","max_output_tokens":300,"temperature":0.5,"top_p":0.9,"parallel_tool_calls":false,
             "reasoning":{"effort":"high","summary":"auto","max_tokens":100},
             "text":{"format":{"type":"json_schema","name":"answer","schema":{"type":"object"},"strict":true},"verbosity":"low"},
             "tool_choice":{"type":"allowed_tools","mode":"required","tools":[{"type":"function","name":"f"}]},
             "tools":[{"type":"function","name":"f"}],
             "metadata":{"k":"v"},"store":true,"include":["reasoning.encrypted_content"],"truncation":"auto",
             "user":"u1","seed":7,"stream_options":{"include_obfuscation":false}}
            """)
        let neutral = request.modelRequest()
        #expect(neutral.maxOutputTokens == 300 && neutral.temperature == 0.5 && neutral.topP == 0.9 && neutral.parallelToolCalls == false)
        #expect(neutral.reasoning == ModelRequest.Reasoning(effort: "high", maxTokens: 100))
        #expect(neutral.responseFormat == .object(["type": .string("json_schema"), "json_schema": .object([
            "name": .string("answer"), "schema": .object(["type": .string("object")]), "strict": .bool(true)])]))
        #expect(neutral.toolChoice == nil)
        #expect(neutral.extraFields["tool_choice"]?["allowed_tools"]?["tools"] == .array([.object([
            "type": .string("function"), "function": .object(["name": .string("f")])])]))
        #expect(neutral.extraFields.keys.sorted() == ["seed", "tool_choice", "verbosity"],
                "Responses-only fields never reach a chat upstream; unknown ones do")
        #expect(neutral.user != nil, "modelled: an Anthropic model gets it as metadata.user_id")
        let echo = request.echoedFields
        #expect(echo["store"] == .bool(false), "nothing is stored, whatever was asked")
        #expect(echo["metadata"] == .object(["k": .string("v")]) && echo["truncation"] == .string("auto"))
        #expect(echo["reasoning"] == .object(["effort": .string("high"), "summary": .string("auto")]))
        #expect(echo["parallel_tool_calls"] == .bool(false) && echo["previous_response_id"] == .null)
    }

    @Test func defaultsEchoWhatOpenAISends() throws {
        let echo = try parse(#"{"model":"p/m","input":"q"}"#).echoedFields
        #expect(echo["tools"] == .array([]) && echo["tool_choice"] == .string("auto") && echo["parallel_tool_calls"] == .bool(true))
        #expect(echo["text"] == .object(["format": .object(["type": .string("text")])]) && echo["metadata"] == .object([:]))
        #expect(echo["instructions"] == .null && echo["temperature"] == .null && echo["background"] == .bool(false))
        // A `text` without a format echoes the default one beside what it gave (review 77A #7).
        #expect(try parse(#"{"model":"p/m","input":"q","text":{"verbosity":"low"}}"#).echoedFields["text"]
                == .object(["format": .object(["type": .string("text")]), "verbosity": .string("low")]))
    }

    @Test func theFusionChoiceForcesTheToolAndFallbacksAreRead() throws {
        let request = try parse(#"{"model":"p/m","input":"q","tools":[{"type":"fusion"}],"tool_choice":{"type":"openrouter:fusion"},"models":["p/x","p/m","p/x"],"stream_options":{"openrouter_fusion_events":true}}"#)
        #expect(request.modelRequest().toolChoice == .function("fusion"))
        #expect(request.fallbackModels == ["p/x"] && request.openRouterFusionEvents)
        #expect(try parse(#"{"model":"fusion","input":"q","tool_choice":{"type":"fusion"}}"#).modelRequest().toolChoice == .function("fusion"))
        // The fusion function by name, as chat and Messages name it (review 19 F5); not without the tool.
        #expect(try parse(#"{"model":"p/m","input":"q","tools":[{"type":"openrouter:fusion"}],"tool_choice":{"type":"function","name":"fusion"}}"#)
                    .modelRequest().toolChoice == .function("fusion"))
        #expect(throws: APIError.self) { try parse(#"{"model":"p/m","input":"q","tool_choice":{"type":"function","name":"fusion"}}"#) }
    }

    @Test(arguments: [
        // (body, param)
        ("not json", nil as String?),
        ("[1]", nil),
        (#"{"input":"q"}"#, "model"),
        (#"{"model":"","input":"q"}"#, "model"),
        (#"{"model":"p/m"}"#, "input"),
        (#"{"model":"p/m","input":""}"#, "input"),
        (#"{"model":"p/m","input":[]}"#, "input"),
        (#"{"model":"p/m","input":5}"#, "input"),
        (#"{"model":"p/m","input":["hi"]}"#, "input[0]"),
        (#"{"model":"p/m","input":[{"content":"x"}]}"#, "input[0].type"),
        (#"{"model":"p/m","input":[{"type":7,"role":"user","content":"x"}]}"#, "input[0].type"),
        (#"{"model":"p/m","input":[{"role":"tool","content":"x"}]}"#, "input[0].role"),
        (#"{"model":"p/m","input":[{"role":"user"}]}"#, "input[0].content"),
        (#"{"model":"p/m","input":[{"role":"user","content":7}]}"#, "input[0].content"),
        (#"{"model":"p/m","input":[{"role":"user","content":[{"text":"x"}]}]}"#, "input[0].content[0]"),
        (#"{"model":"p/m","input":[{"role":"user","content":[{"type":"output_text","text":"x"}]}]}"#, "input[0].content[0].type"),
        (#"{"model":"p/m","input":[{"role":"assistant","content":[{"type":"input_image","image_url":"u"}]}]}"#, "input[0].content[0].type"),
        (#"{"model":"p/m","input":[{"role":"user","content":[{"type":"input_text"}]}]}"#, "input[0].content[0].text"),
        (#"{"model":"p/m","input":[{"role":"user","content":[{"type":"input_image","file_id":"file_1"}]}]}"#, "input[0].content[0].file_id"),
        (#"{"model":"p/m","input":[{"role":"user","content":[{"type":"input_image","image_url":""}]}]}"#, "input[0].content[0].image_url"),
        (#"{"model":"p/m","input":[{"role":"user","content":[{"type":"input_image","image_url":"u","detail":"max"}]}]}"#, "input[0].content[0].detail"),
        (#"{"model":"p/m","input":[{"role":"user","content":[{"type":"input_file","filename":"a"}]}]}"#, "input[0].content[0].file_data"),
        (#"{"model":"p/m","input":[{"role":"user","content":[{"type":"input_file","file_data":"a","file_url":"b"}]}]}"#, "input[0].content[0].file_url"),
        (#"{"model":"p/m","input":[{"type":"function_call","name":"f","arguments":"{}"}]}"#, "input[0].call_id"),
        (#"{"model":"p/m","input":[{"type":"function_call","call_id":"c","name":"","arguments":"{}"}]}"#, "input[0].name"),
        (#"{"model":"p/m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":{}}]}"#, "input[0].arguments"),
        (#"{"model":"p/m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"}]}"#, "input[1].call_id"),
        (#"{"model":"p/m","input":[{"type":"function_call_output","call_id":"nowhere","output":"x"}]}"#, "input[0].call_id"),
        // Every call needs exactly one output after it, as on OpenAI's API: the last item too.
        (#"{"model":"p/m","input":[{"role":"user","content":"q"},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"}]}"#, "input[1]"),
        (#"{"model":"p/m","input":[{"type":"function_call","call_id":"a","name":"f","arguments":"{}"},{"type":"function_call","call_id":"b","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"b","output":"x"},{"role":"user","content":"q"}]}"#, "input[0]"),
        (#"{"model":"p/m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"x"},{"type":"function_call_output","call_id":"c","output":"y"}]}"#, "input[2].call_id"),
        (#"{"model":"p/m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"d","output":"x"}]}"#, "input[1].call_id"),
        (#"{"model":"p/m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c"}]}"#, "input[1].output"),
        (#"{"model":"p/m","input":[{"type":"item_reference","id":"msg_1"}]}"#, "input[0].type"),
        (#"{"model":"p/m","input":[{"type":"reasoning","summary":[]}]}"#, "input"),
        (#"{"model":"p/m","input":[{"type":"web_search_call","id":"ws_1"}]}"#, "input[0].type"),
        (#"{"model":"p/m","input":"q","instructions":5}"#, "instructions"),
        (#"{"model":"p/m","input":"q","previous_response_id":"resp_1"}"#, "previous_response_id"),
        (#"{"model":"p/m","input":"q","conversation":"conv_1"}"#, "conversation"),
        (#"{"model":"p/m","input":"q","prompt":{"id":"pmpt_1"}}"#, "prompt"),
        (#"{"model":"p/m","input":"q","background":true}"#, "background"),
        (#"{"model":"p/m","input":"q","stream":"yes"}"#, "stream"),
        (#"{"model":"p/m","input":"q","store":1}"#, "store"),
        (#"{"model":"p/m","input":"q","max_output_tokens":0}"#, "max_output_tokens"),
        (#"{"model":"p/m","input":"q","max_output_tokens":1e300}"#, "max_output_tokens"),
        (#"{"model":"p/m","input":"q","temperature":2.5}"#, "temperature"),
        (#"{"model":"p/m","input":"q","top_p":"1"}"#, "top_p"),
        (#"{"model":"p/m","input":"q","top_logprobs":21}"#, "top_logprobs"),
        (#"{"model":"p/m","input":"q","top_logprobs":2}"#, "top_logprobs"),
        (#"{"model":"p/m","input":"q","n":2}"#, "n"),
        (#"{"model":"p/m","input":"q","n":"2"}"#, "n"),
        (#"{"model":"p/m","input":"q","logprobs":true}"#, "logprobs"),
        // OpenAI's hosted and custom tools: no chat form (review 49 SDK F1).
        (#"{"model":"p/m","input":"q","tools":[{"type":"web_search"}]}"#, "tools[0].type"),
        (#"{"model":"p/m","input":"q","tools":[{"type":"custom","name":"g"}]}"#, "tools[0].type"),
        (#"{"model":"p/m","input":"q","tool_choice":{"type":"file_search"}}"#, "tool_choice.type"),
        // A call forced with nothing to call (review 107 #2: a plain answer on Anthropic's wire).
        (#"{"model":"p/m","input":"q","tool_choice":"required"}"#, "tool_choice"),
        (#"{"model":"p/m","input":"q","tools":[],"tool_choice":"required"}"#, "tool_choice"),
        (#"{"model":"p/m","input":"q","tools":[{"type":"function","name":"f"},{"type":"function","name":"f"}]}"#, "tools[1].name"),
        // Chat's output limits beside `max_output_tokens` (review 48 surfaces #3: forwarded unchecked).
        (#"{"model":"p/m","input":"q","max_output_tokens":1,"max_completion_tokens":2000000}"#, "max_completion_tokens"),
        (#"{"model":"p/m","input":"q","max_tokens":-5}"#, "max_tokens"),
        (#"{"model":"p/m","input":"q","stream_options":{"include_fusion_events":"yes"}}"#, "stream_options.include_fusion_events"),
        (#"{"model":"p/m","input":"q","include":["reasoning.encrypted_content","message.output_text.logprobs"]}"#, "include[1]"),
        (#"{"model":"p/m","input":"q","truncation":"sometimes"}"#, "truncation"),
        (#"{"model":"p/m","input":"q","metadata":{"k":1}}"#, "metadata.k"),
        (#"{"model":"p/m","input":"q","metadata":[]}"#, "metadata"),
        (#"{"model":"p/m","input":"q","reasoning":"high"}"#, "reasoning"),
        (#"{"model":"p/m","input":"q","reasoning":{"effort":"extreme"}}"#, "reasoning.effort"),
        (#"{"model":"p/m","input":"q","reasoning":{"summary":"long"}}"#, "reasoning.summary"),
        (#"{"model":"p/m","input":"q","text":{"format":{"type":"xml"}}}"#, "text.format.type"),
        (#"{"model":"p/m","input":"q","text":{"format":{"type":"json_schema","schema":{}}}}"#, "text.format.name"),
        (#"{"model":"p/m","input":"q","text":{"format":{"type":"json_schema","name":"a"}}}"#, "text.format.schema"),
        (#"{"model":"p/m","input":"q","text":{"verbosity":"loud"}}"#, "text.verbosity"),
        (#"{"model":"p/m","input":"q","tools":{}}"#, "tools"),
        (#"{"model":"p/m","input":"q","tools":[{"name":"f"}]}"#, "tools[0].type"),
        (#"{"model":"p/m","input":"q","tools":[{"type":"function","function":{"name":"f"}}]}"#, "tools[0].name"),
        (#"{"model":"p/m","input":"q","tools":[{"type":"function","name":"fusion"}]}"#, "tools[0].name"),
        (#"{"model":"p/m","input":"q","tools":[{"type":"function","name":"f","parameters":"{}"}]}"#, "tools[0].parameters"),
        (#"{"model":"p/m","input":"q","tools":[{"type":"function","name":"f","strict":"yes"}]}"#, "tools[0].strict"),
        (#"{"model":"p/m","input":"q","tool_choice":"sometimes"}"#, "tool_choice"),
        (#"{"model":"p/m","input":"q","tool_choice":{"type":"function","function":{"name":"f"}}}"#, "tool_choice.name"),
        (#"{"model":"p/m","input":"q","tool_choice":{"type":"function","name":"g"},"tools":[{"type":"function","name":"f"}]}"#, "tool_choice.name"),
        (#"{"model":"p/m","input":"q","tool_choice":{"type":"fusion"}}"#, "tool_choice.type"),
        (#"{"model":"p/m","input":"q","tool_choice":{"type":"allowed_tools","mode":"any","tools":[]}}"#, "tool_choice.mode"),
        (#"{"model":"p/m","input":"q","plugins":{"id":"fusion"}}"#, "plugins"),
        (#"{"model":"p/m","input":"q","plugins":[{"name":"fusion"}]}"#, "plugins[0].id"),
        (#"{"model":"p/m","input":"q","stream_options":{"openrouter_fusion_events":"yes"}}"#, "stream_options.openrouter_fusion_events"),
        (#"{"model":"p/m","input":"q","models":["p/x",""]}"#, "models[1]"),
        // Parsed differently by different parsers: refused wherever they are.
        (#"{"model":"p/m","input":"q","model":"p/other"}"#, "model"),
        (#"{"model":"p/m","input":[{"role":"user","content":"x","role":"system"}]}"#, "input[0].role"),
        (#"{"model":"p/m","input":"q","temperature":1e999}"#, "temperature"),
        // A fusion item sent back: its call must be one a chat turn can carry.
        (#"{"model":"p/m","input":[{"type":"openrouter:fusion","call_id":7}]}"#, "input[0].call_id"),
        (#"{"model":"p/m","input":[{"type":"openrouter:fusion","call_id":""}]}"#, "input[0].call_id"),
        (#"{"model":"p/m","input":[{"type":"openrouter:fusion","call_id":"f","arguments":{}}]}"#, "input[0].arguments"),
        (#"{"model":"p/m","input":[{"type":"function_call","call_id":"f","name":"x","arguments":"{}"},{"type":"openrouter:fusion","call_id":"f"}]}"#, "input[1].call_id"),
        (#"{"model":"p/m","input":[{"type":"openrouter:fusion","call_id":"f"},{"type":"function_call_output","call_id":"f","output":"x"}]}"#, "input[1].call_id"),
    ])
    func rejectsBadInputNamingTheField(body: String, param: String?) {
        let failure = error(body)
        #expect(failure?.status == 400, "accepted: \(body)")
        #expect(failure?.param == param, "\(failure?.message ?? "")")
        #expect(failure?.type == "invalid_request_error")
    }

    /// Text an assistant wrote after its calls (as the gateway's own output has it, sent back as
    /// it came) joins the calls' turn: a second assistant message between the calls and their
    /// outputs is a conversation chat APIs refuse (review 44 Responses #3).
    @Test func assistantTextAfterItsCallsJoinsTheirTurn() throws {
        let request = try parse("""
            {"model":"p/m","input":[{"role":"user","content":"q"},
              {"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},
              {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Checking.","annotations":[]}]},
              {"type":"function_call_output","call_id":"c1","output":"42"},
              {"role":"assistant","content":"It is 42."}]}
            """)
        let messages = request.modelRequest().messages
        #expect(messages.map(\.role) == [.user, .assistant, .tool, .assistant], "\(messages)")
        #expect(messages[1].text == "Checking." && messages[1].toolCalls.map(\.id) == ["c1"])
        #expect(messages[3].text == "It is 42." && messages[3].toolCalls.isEmpty)
    }

    @Test func aCallWithoutItsOutputOrAnsweredTwiceIsRefusedNamingBothItems() throws {
        let call = #"{"type":"function_call","call_id":"call_1","name":"f","arguments":"{}"}"#
        let output = #"{"type":"function_call_output","call_id":"call_1","output":"x"}"#
        let unanswered = try #require(error(#"{"model":"p/m","input":[{"role":"user","content":"q"},"# + call + "]}"))
        #expect(unanswered.message.contains("'input[1]'") && unanswered.message.contains("call_1"), "\(unanswered.message)")
        let twice = try #require(error(#"{"model":"p/m","input":["# + [call, output, output].joined(separator: ",") + "]}"))
        #expect(twice.message.contains("'input[1]' already did"), "\(twice.message)")
        // One call, one output: accepted.
        #expect(error(#"{"model":"p/m","input":["# + [call, output].joined(separator: ",") + "]}") == nil)
    }

    @Test func statefulFieldsSayWhyTheyAreRefused() throws {
        let failure = try #require(error(#"{"model":"p/m","input":"q","previous_response_id":"resp_1"}"#))
        #expect(failure.code == "unsupported_parameter" && failure.message.contains("stateless"))
        let body = try JSONValue.parse(failure.body)
        #expect(body["error"]?["param"] == .string("previous_response_id"))
    }
}

/// Bodies assembled from valid and invalid pieces: every one is accepted or refused with a 400
/// (never a trap), and every accepted one converts to a chat request the gateway itself would
/// accept, whether or not Fusion plans it.
@Suite struct ResponsesRequestPropertyTests {
    static let items = [
        #"{"role":"user","content":"q"}"#, #"{"type":"message","role":"assistant","content":[{"type":"output_text","text":"a"}]}"#,
        #"{"role":"user","content":[{"type":"input_image","image_url":"data:x"},{"type":"input_file","file_url":"https://f"}]}"#,
        #"{"type":"function_call","call_id":"c1","name":"f","arguments":"{}"}"#, #"{"type":"function_call_output","call_id":"c1","output":""}"#,
        #"{"type":"function_call_output","call_id":"c2","output":"x"}"#, #"{"type":"reasoning","summary":[]}"#,
        #"{"type":"openrouter:fusion","status":"completed","responses":[]}"#, #"{"type":"item_reference","id":"x"}"#,
        #"{"role":"tool","content":"x"}"#, #"{"role":"user","content":[{"type":"refusal","refusal":"no"}]}"#, #"7"#, #"{}"#,
    ]
    static let models = [#""model":"p/m""#, #""model":"fusion""#, #""model":7"#, #""model":"p/m","model":"p/n""#]
    static let fields = [
        #""instructions":"be brief""#,
        #""tools":[{"type":"function","name":"f","parameters":{"type":"object"}}]"#, #""tools":[{"type":"openrouter:fusion","parameters":{"analysis_models":["p/a"]}}]"#,
        #""tools":[{"type":"function","function":{"name":"f"}}]"#, #""tool_choice":"required""#, #""tool_choice":{"type":"function","name":"f"}"#,
        #""tool_choice":{"type":"fusion"}"#, #""temperature":1.5"#, #""temperature":-1"#, #""max_output_tokens":5"#,
        #""plugins":[{"id":"fusion","preset":"budget"}]"#, #""plugins":[{"id":"web"}]"#, #""plugins":[{"id":"fusion","temperature":9}]"#,
        #""previous_response_id":"resp_1""#, #""text":{"format":{"type":"json_schema","name":"n","schema":{}}}"#,
        #""reasoning":{"effort":"high","summary":"auto"}"#, #""stream":true"#, #""metadata":{"k":"v"}"#, #""provider":{"sort":"price"}"#,
        #""stream_options":{"openrouter_fusion_events":true}"#,
    ]
    static let bodies = zip(
        Gen.element(of: models),
        Gen.element(of: fields).array(of: 0...4),
        Gen.element(of: items).array(of: 0...5),
        Gen.int(in: 0...3)
    ).map { model, fields, items, input -> String in
        var parts = [model ?? ""] + fields.compactMap { $0 }
        switch input {
        case 0: parts.append(#""input":"q""#)
        case 1: parts.append(#""input":"""#)
        default: parts.append(#""input":["# + items.compactMap { $0 }.joined(separator: ",") + "]")
        }
        return "{" + parts.joined(separator: ",") + "}"
    }

    @Test func everyBodyIsAcceptedOrA400AndConvertsToAValidChatRequest() async {
        await propertyCheck(count: 3_000, input: Self.bodies) { body in
            let request: ResponsesRequest
            do throws(APIError) {
                request = try ResponsesRequest(body: Array(body.utf8))
            } catch {
                #expect(error.status == 400 && error.type == "invalid_request_error", "\(body)")
                return
            }
            let neutral = request.modelRequest()
            #expect(!neutral.messages.isEmpty)
            #expect((try? ChatRequest(body: OpenAIRequestEncoder.body(neutral))) != nil, "\(body)")
            do throws(APIError) {
                if case .fusion(let fusion) = try FusionPlan.make(request: neutral, settings: .simulated, depth: 0) {
                    #expect(fusion.base.extraFields["plugins"]?.arrayValue?.contains { $0["id"] == .string("fusion") } != true)
                }
            } catch {
                #expect(error.status == 400 && error.param != nil, "\(body): \(error.message)")
            }
        }
    }
}
