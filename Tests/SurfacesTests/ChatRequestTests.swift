@testable import GatewayCore
import Providers
import Surfaces
import Testing

@Suite struct ChatRequestTests {
    func parse(_ text: String) throws(APIError) -> ChatRequest {
        try ChatRequest(body: Array(text.utf8))
    }

    func error(_ text: String) -> APIError? {
        do {
            _ = try parse(text)
            return nil
        } catch {
            return error
        }
    }

    @Test func acceptsEveryDocumentedField() throws {
        let request = try parse("""
            {"model":"p/m","messages":[
               {"role":"system","content":"s"},
               {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:x"}}]},
               {"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},
               {"role":"tool","tool_call_id":"c","content":"42"}],
             "stream":true,"stream_options":{"include_usage":true},"max_tokens":10,"max_completion_tokens":20,
             "temperature":0.7,"top_p":1,"stop":["a","b"],"tools":[{"type":"function","function":{"name":"f"}}],
             "tool_choice":"required","response_format":{"type":"json_object"},"reasoning":{"effort":"low"},
             "seed":7,"user":"u","some_future_field":{"x":[1,2]}}
            """)
        #expect(request.model == "p/m")
        #expect(request.stream)
        #expect(request.includeUsage)
    }

    @Test func upstreamBodyReplacesOnlyTheModel() throws {
        let text = #"{"x_unknown":{"model":"keep"},"model":"openrouter/openai/gpt-4o","messages":[{"role":"user","content":"é"}],"n":1}"#
        let request = try parse(text)
        let body = String(decoding: request.upstreamBody(model: "openai/gpt-4o"), as: UTF8.self)
        #expect(body == #"{"x_unknown":{"model":"keep"},"model":"openai/gpt-4o","messages":[{"role":"user","content":"é"}],"n":1}"#)
    }

    /// A stream always asks the upstream for usage (every completion is accounted); the client's
    /// own stream options are kept.
    @Test func aStreamAlwaysAsksForUsage() throws {
        let plain = #"{"model":"p/m","stream":true,"messages":[{"role":"user","content":"q"}]}"#
        #expect(String(decoding: try parse(plain).upstreamBody(model: "m"), as: UTF8.self)
                == #"{"model":"m","stream_options":{"include_usage":true},"stream":true,"messages":[{"role":"user","content":"q"}]}"#)
        for options in [#"{"include_usage":false,"include_obfuscation":false}"#, "null", "{}"] {
            let text = #"{"model":"p/m","stream":true,"stream_options":\#(options),"messages":[{"role":"user","content":"q"}]}"#
            let body = try JSONValue.parse(try parse(text).upstreamBody(model: "m"))
            #expect(body["stream_options"]?["include_usage"] == .bool(true), "\(options)")
            if options.contains("obfuscation") { #expect(body["stream_options"]?["include_obfuscation"] == .bool(false)) }
        }
        // The gateway's own option never goes upstream (review 43 conformance #3).
        for (options, expected) in [(#"{"include_fusion_events":true}"#, JSONValue.object(["include_usage": .bool(true)])),
                                    (#"{"include_fusion_events":false,"include_usage":true}"#, .object(["include_usage": .bool(true)]))] {
            for stream in [true, false] {
                let text = #"{"model":"p/m","stream":\#(stream),"stream_options":\#(options),"messages":[{"role":"user","content":"q"}]}"#
                let body = try JSONValue.parse(try parse(text).upstreamBody(model: "m"))
                #expect(body["stream_options"] == (stream || options.contains("usage") ? expected : nil), "\(text): \(body)")
            }
        }
        // Asked already, or not streamed: the bytes as they were.
        for text in [#"{"model":"p/m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"q"}]}"#,
                     #"{"model":"p/m","messages":[{"role":"user","content":"q"}]}"#] {
            #expect(try parse(text).upstreamBody(model: "p/m") == Array(text.utf8))
        }
    }

    /// A `model` key spelled with escapes is the same key to the parser: the routed model and
    /// the usage request reach the upstream all the same (review 45 proxy #3: the body went as
    /// it came, naming the client's slug and asking for no usage, so a reasoning model's tokens
    /// went unbilled).
    @Test func anEscapedModelKeyIsRewrittenLikeAPlainOne() throws {
        let text = #"{"mod\u0065l":"openai/o4-mini","stream":true,"messages":[{"role":"user","content":"q"}]}"#
        let body = try JSONValue.parse(try parse(text).upstreamBody(model: "o4-mini"))
        #expect(body["model"] == .string("o4-mini") && body["stream_options"]?["include_usage"] == .bool(true), "\(body)")
        let messages = try MessagesRequest(body: Array(#"{"mod\u0065l":"anthropic/claude-x","max_tokens":5,"messages":[{"role":"user","content":"q"}]}"#.utf8))
        #expect(try JSONValue.parse(messages.upstreamBody(model: "claude-x"))["model"] == .string("claude-x"))
    }

    /// Keys equal but for case at the top level are refused: Go's `encoding/json` (Ollama's
    /// OpenAI layer) reads them as one field, the last winning, so an upstream would read a model
    /// or limit the gateway never checked (review 48 surfaces #1). Nested objects keep theirs (a
    /// tool's schema may well have `id` and `ID`).
    @Test func topLevelKeysEqualButForCaseAreRefused() throws {
        let user = #""messages":[{"role":"user","content":"q"}]"#
        for extra in [#""MODEL":"p/other""#, #""Model":"p/other""#, #""max_tokens":1,"MAX_TOKENS":2000000"#,
                      "\"max_tokens\":1,\"max_to\u{212A}ens\":2000000", // Kelvin sign, as Go folds it
                      #""stream":false,"\u017ftream":true"#] {
            let text = #"{"model":"p/m",\#(user),\#(extra)}"#
            do {
                _ = try ChatRequest(body: Array(text.utf8))
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.code == "duplicate_key" && error.status == 400, "\(text): \(error.message)")
            }
        }
        // Alone, a known field spelled in another case is refused too: the gateway writes the
        // field itself beside it upstream (found by the CI fuzzer: "Stream" beside "stream").
        for key in ["Stream", "MAX_TOKENS", "Tools"] {
            #expect(throws: APIError.self, "\(key)") { try parse(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"\#(key)":1}"#) }
        }
        _ = try parse(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"X_Vendor":1,"Custom_Field":{"A":1,"a":2}}"#)
        let schema = #"{"type":"object","properties":{"id":{"type":"string"},"ID":{"type":"string"}}}"#
        _ = try parse(#"{"model":"p/m",\#(user),"tools":[{"type":"function","function":{"name":"f","parameters":\#(schema)}}],"metadata":{"a":"1","A":"2"}}"#)
        #expect(JSONBuilder.caseFolded("Stra\u{DF}e") == "stra\u{DF}e", "ß is not SS (simple folding)")
        #expect(JSONBuilder.caseFolded("\u{3A3}\u{3C2}") == "\u{3C3}\u{3C3}", "Σ and ς fold to σ")
    }

    /// Property: the fast path for keys without upper-case ASCII letters folds as the scalar walk
    /// does (the walk written out here as the reference: ASCII A–Z lowered; any other scalar
    /// mapped up, then down, where each mapping is one scalar).
    @Test func caseFoldingMatchesTheScalarWalk() {
        func reference(_ key: String) -> String {
            var out = String.UnicodeScalarView()
            for scalar in key.unicodeScalars {
                if scalar.isASCII { out.append(scalar.properties.isUppercase ? Unicode.Scalar(scalar.value | 0x20)! : scalar); continue }
                let upper = scalar.properties.uppercaseMapping.unicodeScalars
                let base = upper.count == 1 ? upper.first! : scalar
                let lower = base.properties.lowercaseMapping.unicodeScalars
                out.append(lower.count == 1 ? lower.first! : base)
            }
            return String(out)
        }
        let pieces = ["a", "Z", "_", "@", "[", "`", "{", "0", "model", "Max_Tokens", "\u{212A}", "\u{17F}", "\u{DF}", "\u{3A3}", "é", "É", "🙂"]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<3_000 {
            let key = (0..<Int.random(in: 0...5, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }.joined()
            #expect(JSONBuilder.caseFolded(key) == reference(key), "\(key)")
        }
    }

    /// Property: every case variant of every key the gateway reads is refused beside the key.
    @Test func everyCaseVariantOfAReadKeyIsRefused() throws {
        var generator = SystemRandomNumberGenerator()
        for key in ["model", "models", "max_tokens", "max_completion_tokens", "n", "stream", "stream_options", "plugins", "tools", "tool_choice"] {
            for _ in 0..<20 {
                var variant = String(key.map { Bool.random(using: &generator) ? Character($0.uppercased()) : $0 })
                if variant == key { variant = key.uppercased() }
                let first = key == "model" ? "" : #""\#(key)":null,"#  // the model is there already
                let body = #"{"model":"p/m","messages":[{"role":"user","content":"q"}],\#(first)"\#(variant)":null}"#
                #expect(throws: APIError.self, "\(variant)") { try JSONValue.parseRequest(Array(body.utf8)) }
            }
        }
    }

    /// OpenAI's custom tools (GPT-5's free-form tools) pass: forced, and called in the history
    /// (review 49 #3: refused by the new checks).
    @Test func customToolsAndTheirCallsPass() throws {
        let request = try parse(#"{"model":"p/m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"custom","custom":{"name":"code_exec","input":"print(1)"}}]},{"role":"tool","tool_call_id":"call_1","content":"1"}],"tools":[{"type":"custom","custom":{"name":"code_exec"}}],"tool_choice":{"type":"custom","custom":{"name":"code_exec"}}}"#)
        // Re-encoded (a Fusion request's outer turns, depth ≥ 1), the call stays a custom one
        // (review 50 #3: it became a function call with no name and no input).
        let encoded = try JSONValue.parse(OpenAIRequestEncoder.body(request.modelRequest()))
        #expect(encoded["messages"]?.arrayValue?[1]["tool_calls"]?.arrayValue?.first
                == .object(["id": .string("call_1"), "type": .string("custom"),
                            "custom": .object(["name": .string("code_exec"), "input": .string("print(1)")])]))
    }

    /// OpenAI's `user` reaches an Anthropic model as its end-user id (review 48 surfaces #8).
    @Test func theUserReachesAnthropicAsItsEndUserID() throws {
        let neutral = try parse(#"{"model":"p/m","messages":[{"role":"user","content":"q"}],"user":"u-42"}"#).modelRequest()
        let sent = try JSONValue.parse(AnthropicProvider().httpRequest(
            for: neutral, endpoint: ProviderEndpoint(name: "a", baseURL: "https://api.anthropic.com/v1"), extraHeaders: []).body)
        #expect(sent["metadata"] == .object(["user_id": .string("u-42")]))
        #expect(try JSONValue.parse(OpenAIRequestEncoder.body(neutral))["user"] == .string("u-42"))
    }

    /// Chat's two output limits: the one read and held (`max_completion_tokens` first) is the
    /// only one sent, under the upstream's field (review 48 surfaces #2: both went up, and an
    /// upstream honouring `max_tokens` wrote 2,000,000 tokens against a hold of 1).
    @Test func oneOutputLimitGoesUpstreamTheOneHeld() throws {
        let text = #"{"model":"p/m","messages":[{"role":"user","content":"q"}],"max_tokens":2000000,"max_completion_tokens":1}"#
        let request = try parse(text)
        #expect(request.modelRequest().maxOutputTokens == 1)
        for field in ["max_tokens", "max_completion_tokens"] {
            let body = try JSONValue.parse(request.upstreamBody(model: "m", maxTokensField: field))
            let other = field == "max_tokens" ? "max_completion_tokens" : "max_tokens"
            #expect(body[field] == .int(1) && body[other] == nil, "\(field): \(body)")
        }
    }

    /// A body the gateway has to edit (a renamed limit, fallbacks, stream options, the fusion
    /// plugin) keeps the client's order and bytes everywhere else: a structured-output schema's
    /// properties are the order the model writes them, and a number past 64 bits keeps its
    /// digits (review 74A #1: every key was sorted, `answer` before `reasoning`).
    @Test func anEditedBodyKeepsTheClientsOrderAndBytes() throws {
        let schema = #"{"type":"json_schema","json_schema":{"name":"v","strict":true,"schema":{"type":"object","properties":{"reasoning":{"type":"string"},"answer":{"type":"string"}}}}}"#
        let text = #"{"model":"p/m","messages":[{"role":"user","content":"q"}],"max_completion_tokens":5,"response_format":\#(schema),"models":["p/x"],"stream":true,"stream_options":{"include_usage":false},"x_vendor":{"big":18446744073709551615,"f":1.10},"temperature":1.0,"plugins":[{"id":"web"},{"id":"fusion"}]}"#
        let body = String(decoding: try parse(text).upstreamBody(model: "m"), as: UTF8.self)
        #expect(body == #"{"model":"m","messages":[{"role":"user","content":"q"}],"max_tokens":5,"response_format":\#(schema),"stream":true,"stream_options":{"include_usage":true},"x_vendor":{"big":18446744073709551615,"f":1.10},"temperature":1.0,"plugins":[{"id":"web"}]}"#)
        // An escaped key goes under its name (duplicate keys are refused before this).
        let duplicated = #"{"mod\u0065l":"p/m","messages":[{"role":"user","content":"q"}],"seed":2,"models":[]}"#
        #expect(String(decoding: try parse(duplicated).upstreamBody(model: "m"), as: UTF8.self)
                == #"{"model":"m","messages":[{"role":"user","content":"q"}],"seed":2}"#)
    }

    /// OpenRouter's `usage: {include: true}` asks the gateway for usage; it goes upstream only to
    /// OpenRouter (review 75A #8: OpenAI's API refuses an argument it does not know).
    @Test func openRoutersUsageOptionGoesOnlyToOpenRouter() throws {
        let text = #"{"model":"p/m","stream":true,"usage":{"include":true},"messages":[{"role":"user","content":"q"}]}"#
        let request = try parse(text)
        #expect(request.asksForUsage && !request.includeUsage)
        #expect(try JSONValue.parse(request.upstreamBody(model: "m", toOpenRouter: false))["usage"] == nil)
        #expect(try JSONValue.parse(request.upstreamBody(model: "m", toOpenRouter: true))["usage"]?["include"] == .bool(true))
        // Another `usage` member (not OpenRouter's) is the client's own business.
        #expect(try parse(#"{"model":"p/m","usage":"x","messages":[{"role":"user","content":"q"}]}"#).upstreamBody(model: "p/m", toOpenRouter: false)
                == Array(#"{"model":"p/m","usage":"x","messages":[{"role":"user","content":"q"}]}"#.utf8))
    }

    /// An upstream that refuses `stream_options` (Mistral's API: 422) is configured not to be
    /// asked (`stream_usage: false`): the client's own options go as sent, nothing is added
    /// (review 45 proxy #1).
    @Test func anUpstreamNotAskedForUsageGetsOnlyTheClientsOptions() throws {
        let plain = #"{"model":"p/m","stream":true,"messages":[{"role":"user","content":"q"}]}"#
        #expect(String(decoding: try parse(plain).upstreamBody(model: "m", asksForUsage: false), as: UTF8.self)
                == #"{"model":"m","stream":true,"messages":[{"role":"user","content":"q"}]}"#)
        let asked = #"{"model":"p/m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"q"}]}"#
        #expect(try JSONValue.parse(try parse(asked).upstreamBody(model: "m", asksForUsage: false))["stream_options"]?["include_usage"] == .bool(true))
        var request = ModelRequest(model: "m", messages: [ModelMessage(role: .user, content: [.text("q")])])
        request.stream = true
        #expect(try JSONValue.parse(OpenAIRequestEncoder.body(request))["stream_options"] != nil)
        #expect(try JSONValue.parse(OpenAIRequestEncoder.body(request, streamUsage: false))["stream_options"] == nil)
    }

    @Test(arguments: [
        // (body, status, param)
        ("not json", 400, nil as String?),
        ("", 400, nil),
        ("[1,2]", 400, nil),
        (#"{"messages":[{"role":"user","content":"x"}]}"#, 400, "model"),
        (#"{"model":7,"messages":[{"role":"user","content":"x"}]}"#, 400, "model"),
        (#"{"model":"","messages":[{"role":"user","content":"x"}]}"#, 400, "model"),
        (#"{"model":"a/b"}"#, 400, "messages"),
        (#"{"model":"a/b","messages":"hi"}"#, 400, "messages"),
        (#"{"model":"a/b","messages":[]}"#, 400, "messages"),
        (#"{"model":"a/b","messages":["hi"]}"#, 400, "messages[0]"),
        (#"{"model":"a/b","messages":[{"content":"x"}]}"#, 400, "messages[0].role"),
        (#"{"model":"a/b","messages":[{"role":"wizard","content":"x"}]}"#, 400, "messages[0].role"),
        (#"{"model":"a/b","messages":[{"role":"user"}]}"#, 400, "messages[0].content"),
        (#"{"model":"a/b","messages":[{"role":"user","content":5}]}"#, 400, "messages[0].content"),
        (#"{"model":"a/b","messages":[{"role":"user","content":[{"text":"no type"}]}]}"#, 400, "messages[0].content[0]"),
        // Refused, not dropped on the way to a provider that needs content in every turn.
        (#"{"model":"a/b","messages":[{"role":"user","content":[]}]}"#, 400, "messages[0].content"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"q"},{"role":"assistant","content":[]}]}"#, 400, "messages[1].content"),
        (#"{"model":"a/b","messages":[{"role":"user","content":[{"type":"text","text":{"value":"q"}}]}]}"#, 400, "messages[0].content[0].text"),
        (#"{"model":"a/b","messages":[{"role":"user","content":[{"type":"text"}]}]}"#, 400, "messages[0].content[0].text"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"n":0}"#, 400, "n"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"n":129}"#, 400, "n"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"n":"2"}"#, 400, "n"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#, 400, "stream"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":1}}"#, 400, "stream_options.include_usage"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#, 400, "temperature"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"temperature":2.5}"#, 400, "temperature"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"top_p":-1}"#, 400, "top_p"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#, 400, "max_tokens"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"max_completion_tokens":1.5}"#, 400, "max_completion_tokens"),
        // Review 48 surfaces #4, #5: tool calls and tool choices as OpenAI checks them.
        (#"{"model":"a/b","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":{"x":1}}}]}]}"#,
         400, "messages[0].tool_calls[0].function.arguments"),
        (#"{"model":"a/b","messages":[{"role":"assistant","content":"x","tool_calls":"oops"}]}"#, 400, "messages[0].tool_calls"),
        (#"{"model":"a/b","messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]}]}"#,
         400, "messages[0].tool_calls[0].id"),
        (#"{"model":"a/b","messages":[{"role":"assistant","tool_calls":[{"id":"c","function":{"arguments":"{}"}}]}]}"#,
         400, "messages[0].tool_calls[0].function.name"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x","tool_calls":[]}]}"#, 400, "messages[0].tool_calls"),
        (#"{"model":"a/b","messages":[{"role":"tool","content":"42"}]}"#, 400, "messages[0].tool_call_id"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"function","name":"f"}}"#, 400, "tool_choice.function.name"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"any"}}"#, 400, "tool_choice.type"),
        // A call forced with nothing to call (review 107 #2: a plain answer on Anthropic's wire).
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"tool_choice":"required"}"#, 400, "tool_choice"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"tools":[],"tool_choice":"required"}"#, 400, "tool_choice"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}]}"#, 400, "tools[1].function.name"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"user":5}"#, 400, "user"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"custom","custom":{}}}"#, 400, "tool_choice.custom.name"),
        (#"{"model":"a/b","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"custom","custom":{"name":"g","input":{}}}]}]}"#,
         400, "messages[0].tool_calls[0].custom.input"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"stop":[1]}"#, 400, "stop"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"tools":{}}"#, 400, "tools"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{}}]}"#, 400, "tools[0].function.name"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"tool_choice":"sometimes"}"#, 400, "tool_choice"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"response_format":"json"}"#, 400, "response_format"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"reasoning":"high"}"#, 400, "reasoning"),
        // OpenRouter's reasoning fields, as Responses checks them (review 71B #1: a wrong type was "not given").
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"reasoning":{"enabled":"false"}}"#, 400, "reasoning.enabled"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"reasoning":{"enabled":0}}"#, 400, "reasoning.enabled"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"reasoning":{"exclude":"true"}}"#, 400, "reasoning.exclude"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"reasoning":{"max_tokens":"x"}}"#, 400, "reasoning.max_tokens"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"reasoning":{"max_tokens":1.5}}"#, 400, "reasoning.max_tokens"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"reasoning":{"max_tokens":1e20}}"#, 400, "reasoning.max_tokens"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"reasoning":{"max_tokens":0}}"#, 400, "reasoning.max_tokens"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"reasoning":{"max_tokens":-5}}"#, 400, "reasoning.max_tokens"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"reasoning":{"max_tokens":true}}"#, 400, "reasoning.max_tokens"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"seed":"7"}"#, 400, "seed"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"user":1}"#, 400, "user"),
        // Parsed differently by different parsers: refused wherever they are.
        (#"{"model":"allowed/m","messages":[{"role":"user","content":"x"}],"model":"forbidden/m"}"#, 400, "model"),
        (#"{"model":"allowed/m","messages":[{"role":"user","content":"x"}],"mod\u0065l":"forbidden/m"}"#, 400, "model"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x","role":"system"}]}"#, 400, "messages[0].role"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"x":{"y":[{},{"z":1,"z":2}]}}"#, 400, "x.y[1].z"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"temperature":1e999}"#, 400, "temperature"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x","foo":-1E400}]}"#, 400, "messages[0].foo"),
        (#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"n":[0, 123456789012345678901234567890e300]}"#, 400, "n[1]"),
    ])
    func rejectsBadInput(body: String, status: Int, param: String?) {
        let failure = error(body)
        #expect(failure?.status == status)
        #expect(failure?.param == param)
        #expect(failure?.type == "invalid_request_error")
    }

    @Test func anAssistantTurnThatOnlyCallsToolsMayHaveEmptyContent() throws {
        _ = try parse(#"{"model":"a/b","n":2,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[],"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"42"}]}"#)
    }

    @Test func errorBodyHasOpenAIShape() throws {
        let failure = try #require(error(#"{"model":"a/b","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#))
        let json = try JSONValue.parse(failure.body)
        #expect(json["error"]?["message"]?.stringValue?.contains("temperature") == true)
        #expect(json["error"]?["type"]?.stringValue == "invalid_request_error")
        #expect(json["error"]?["code"]?.stringValue == "invalid_type")
        #expect(json["error"]?["param"]?.stringValue == "temperature")
    }
}

@Suite struct JSONAmbiguityTests {
    @Test func requestErrorsSayWhatAndWhere() throws {
        do {
            _ = try ChatRequest(body: Array(#"{"model":"a/b","model":"c/d","messages":[{"role":"user","content":"x"}]}"#.utf8))
            Issue.record("a duplicate model was accepted")
        } catch {
            #expect(error.code == "duplicate_key")
            #expect(error.message.contains("'model' twice"))
        }
        do {
            _ = try JSONValue.parseRequest(Array(#"{"a":[1e999]}"#.utf8))
            Issue.record("an infinite number was accepted")
        } catch {
            #expect(error.code == "number_out_of_range" && error.param == "a[0]")
        }
        #expect(throws: APIError.self) { try JSONValue.parseRequest(Array("1e999".utf8)) }
        #expect(try JSONValue.parseRequest(Array(#"{"a":1e308,"b":-0.0,"c":1e-999,"d":12345678901234567890}"#.utf8))["d"] == .double(1.2345678901234567e19), "beyond Int64: a double")
    }

    @Test func upstreamDocumentsStayLenient() throws {
        #expect(try JSONValue.parse(Array(#"{"a":1,"a":2}"#.utf8))["a"] == .int(2), "the last duplicate wins")
        let chunk = try JSONValue.parse(Array(#"{"usage":{"cost":1e999,"tokens":3}}"#.utf8))
        #expect(chunk["usage"]?["cost"] == .null, "beyond Double's range: null, not infinity")
        #expect(chunk["usage"]?["tokens"] == .int(3))
    }

    @Test func nonFiniteDoublesSerializeAsNullInPlace() {
        let value = JSONValue.object(["sum": .double(.infinity), "nan": .double(.nan), "ok": .int(1)])
        #expect(String(decoding: value.serialized(), as: UTF8.self) == #"{"nan":null,"ok":1,"sum":null}"#)
    }
}

@Suite struct ConstantTimeTests {
    @Test func matchesExactlyOneOfTheKeys() {
        #expect(ConstantTime.matchesAny("abc", ["xyz", "abc"]))
        #expect(!ConstantTime.matchesAny("abcd", ["abc"]))
        #expect(!ConstantTime.matchesAny("ab", ["abc"]))
        #expect(!ConstantTime.matchesAny("", ["abc"]))
        #expect(!ConstantTime.matchesAny("abc", []))
        #expect(ConstantTime.matchesAny("ключ", ["ключ"]))
        // An empty key is no key: an empty header never matches it (review 52B #1).
        #expect(!ConstantTime.matchesAny("", [""]) && !ConstantTime.matchesAny("", ["abc", ""]))
        #expect(ConstantTime.matchIndex("", ["", "abc"]) == nil && ConstantTime.matchIndex("abc", ["", "abc"]) == 1)
    }
}

@Suite struct RetryPolicyTests {
    let policy = RetryPolicy(maxRetries: 2, baseDelayMilliseconds: 100, maxDelayMilliseconds: 5_000)

    func decide(_ status: Int?, connectFailed: Bool = false, headers: [(String, String)] = [], attempt: Int = 1,
                hasNext: Bool = false, jitter: Double = 1) -> RetryPolicy.Decision {
        policy.decide(status: status, connectFailed: connectFailed, headers: headers, attempt: attempt, hasNextModel: hasNext, jitter: jitter)
    }

    @Test func retriesTransientFailuresWithExponentialBackoff() {
        #expect(decide(503, attempt: 1) == .retry(afterMilliseconds: 100))
        #expect(decide(529, attempt: 1) == .retry(afterMilliseconds: 100), "Anthropic's overloaded")
        #expect(decide(502, attempt: 2) == .retry(afterMilliseconds: 200))
        #expect(decide(500, attempt: 2, jitter: 0) == .retry(afterMilliseconds: 100))
        #expect(decide(503, attempt: 3) == .fail, "bounded")
        #expect(decide(503, attempt: 3, hasNext: true) == .nextModel)
        #expect(decide(nil, connectFailed: true) == .retry(afterMilliseconds: 100))
        #expect(decide(nil, connectFailed: false) == .fail, "a broken connection may have done work: no blind retry")
    }

    @Test func honoursRetryAfterWithinTheCap() {
        #expect(decide(429, headers: [("Retry-After", "2")]) == .retry(afterMilliseconds: 2_000))
        #expect(decide(429, headers: [("retry-after-ms", "150")]) == .retry(afterMilliseconds: 150))
        #expect(decide(429, headers: [("Retry-After", "60")]) == .fail, "too long: the client decides")
        #expect(decide(429, headers: [("Retry-After", "60")], hasNext: true) == .nextModel)
    }

    @Test func clientErrorsNeitherRetryNorFallBack() {
        for status in [400, 413, 422] { #expect(decide(status, hasNext: true) == .fail) }
        #expect(decide(401, hasNext: true) == .nextModel)
        #expect(decide(404, hasNext: true) == .nextModel)
        #expect(decide(404) == .fail)
    }
}
